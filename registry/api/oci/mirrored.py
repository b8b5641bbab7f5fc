"""Pulls from mirror namespaces on ``/v2/``: what the repository lacks comes from its
upstream (``registry.services.mirror_fetch``).

A manifest is answered like a stored one, with a ``Warning`` header when the upstream could
not be asked and the cached copy is served. A blob GET without ``Range`` that starts the
fetch streams the bytes to its client as they are stored; every other request for a blob
being fetched (a Range request, a second client) waits until it is stored, without holding
a thread, and is then served from storage like any blob.
"""

from __future__ import annotations

import asyncio
import time

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from registry.api.oci.base import absolute, service
from registry.errors import RemoteUnavailable
from registry.services.mirror_blobs import Fetch

WAIT_SECONDS = 3600.0  # a client gives up long before; a live fetch renews its lease


async def manifest(request: Request, name: str, reference: str) -> Response:
    served = await run_in_threadpool(service(request).mirror_fetch.manifest, name, reference,
                                     absolute(request, "/"))
    m = served.manifest
    headers = {"Content-Type": m.media_type, "Docker-Content-Digest": m.digest,
               "ETag": f'"{m.digest}"', "Content-Length": str(len(m.content))}
    if served.warning:
        headers["Warning"] = f'110 - "{served.warning}"'
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers)
    return Response(m.content, headers=headers)


async def wait_for_blob(request: Request, name: str, digest: str) -> int:
    """Until blob ``digest`` is readable from ``name``: its size."""
    fetcher = service(request).mirror_fetch
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        got = await run_in_threadpool(fetcher.step, name, digest)
        if isinstance(got, int):
            return got
        if isinstance(got, Fetch):
            await anyio.to_thread.run_sync(got.done.wait)
            got.raise_error()
            continue
        if time.monotonic() > deadline:
            raise RemoteUnavailable(f"blob {digest} is still being fetched; try again")
        await asyncio.sleep(0.25)
