"""``/api/v1/storage``: what deduplication saves.

The answer is ``StorageSummary``: logical bytes (every manifest's blobs, once per
manifest) against stored bytes (every stored blob, once).
"""

from __future__ import annotations

from dataclasses import asdict

from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import service
from registry.api.rest.common import operation
from registry.api.rest.schemas import Answer


class StorageSummary(Answer):
    logical_bytes: int = Field(description="Every manifest's blobs, once per manifest.")
    stored_bytes: int = Field(description="Every stored blob, once.")
    blobs: int
    manifests: int


@operation("storageSummary", "storage", "Logical vs. stored bytes (what deduplication saves)",
           StorageSummary)
async def summary(request: Request) -> JSONResponse:
    # Aggregates over every blob: never inline on the event loop.
    result = await run_in_threadpool(service(request).models.storage_summary)
    return JSONResponse(asdict(result))
