"""``/v2/_catalog`` with ``n``/``last`` pagination."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.guard import readable
from registry.api.oci.base import next_link, page_args, service


async def catalog(request: Request) -> JSONResponse:
    n, last = page_args(request)
    repos = await run_in_threadpool(service(request).catalog.repositories, n, last,
                                    readable(request))
    return JSONResponse({"repositories": repos}, headers=next_link("/v2/_catalog", n, repos))
