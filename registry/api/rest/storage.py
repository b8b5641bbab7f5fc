"""``/api/v1/storage``: what deduplication saves.

Body: ``{"logical_bytes": <every manifest's blobs, once per manifest>,
"stored_bytes": <every stored blob, once>, "blobs": <count>, "manifests": <count>}``.
"""

from __future__ import annotations

from dataclasses import asdict

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import service


async def summary(request: Request) -> JSONResponse:
    # Aggregates over every blob: never inline on the event loop.
    result = await run_in_threadpool(service(request).models.storage_summary)
    return JSONResponse(asdict(result))
