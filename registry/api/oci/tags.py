"""``/v2/<name>/tags/list`` with ``n``/``last`` pagination."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import next_link, page_args, repo_name, service


async def list_tags(request: Request) -> JSONResponse:
    name = repo_name(request)
    n, last = page_args(request)
    tags = await run_in_threadpool(service(request).catalog.tags, name, n, last)
    return JSONResponse({"name": name, "tags": tags},
                        headers=next_link(f"/v2/{name}/tags/list", n, tags))
