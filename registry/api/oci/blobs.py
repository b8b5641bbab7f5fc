"""``/v2/<name>/blobs/<digest>``: HEAD, GET (with Range), DELETE."""

from __future__ import annotations

import re
from collections.abc import Iterator

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from registry.api.guard import blob_location
from registry.api.oci import mirrored
from registry.api.oci.base import empty, mirror_of, quick_read, repo_name, service
from registry.errors import BlobUnknown, RangeNotSatisfiable
from registry.services.mirror_blobs import Fetch

_DIGITS = re.compile(r"[0-9]+")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single ``bytes=`` range as inclusive ``(start, end)``; None to serve it all.

    Multi-range and malformed headers are ignored (RFC 9110 allows serving 200);
    a syntactically valid range that does not overlap the blob raises 416.
    """
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[6:].strip().partition("-")
    if not sep or not _DIGITS.fullmatch(first + "0") or not _DIGITS.fullmatch(last + "0"):
        return None
    if first == "":
        if last == "" or int(last) == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(size - int(last), 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        raise RangeNotSatisfiable(size)
    return start, min(end, size - 1)


class BlobResponse(Response):
    """Streams blob chunks read in worker threads; closes the reader if the client leaves."""

    def __init__(self, chunks: Iterator[bytes], status_code: int, headers: dict[str, str]):
        super().__init__(status_code=status_code, headers=headers)
        self.chunks = chunks

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        try:
            while (chunk := await anyio.to_thread.run_sync(next, self.chunks, None)) is not None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            close = getattr(self.chunks, "close", None)
            if close is not None:
                await anyio.to_thread.run_sync(close)


async def get_blob(request: Request) -> Response:
    name, digest = repo_name(request), request.path_params["digest"]
    svc = service(request)
    headers = {
        "Docker-Content-Digest": digest,
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Cache-Control": "max-age=31536000",
        "ETag": f'"{digest}"',
    }
    try:
        size = await quick_read(request, svc.blobs.size, name, digest)
    except BlobUnknown:
        if await mirror_of(request, name) is None:
            raise
        return await _mirrored_blob(request, name, digest, headers)
    return await _stored_blob(request, name, digest, size, headers)


async def _stored_blob(request: Request, name: str, digest: str, size: int,
                       headers: dict[str, str]) -> Response:
    svc = service(request)
    redirect = svc.blobs.redirect_url(digest)
    if redirect and request.method == "GET":
        return empty(307, {**headers, "Location": redirect})
    # Ollama's client refuses a blob answer without Location and then fetches parts
    # from it with Range: point it back here.
    # With auth on the URL is signed: those part requests carry no Authorization.
    headers["Location"] = blob_location(request, name, digest)
    if request.method == "HEAD":
        return empty(200, {**headers, "Content-Length": str(size)})
    rng = parse_range(request.headers.get("range"), size)
    if rng is None:
        chunks = await run_in_threadpool(svc.blobs.open, digest, 0, size)
        return BlobResponse(chunks, 200, {**headers, "Content-Length": str(size)})
    start, end = rng
    chunks = await run_in_threadpool(svc.blobs.open, digest, start, end - start + 1)
    return BlobResponse(chunks, 206, {**headers, "Content-Length": str(end - start + 1),
                                      "Content-Range": f"bytes {start}-{end}/{size}"})


async def _mirrored_blob(request: Request, name: str, digest: str,
                         headers: dict[str, str]) -> Response:
    """A blob a mirror repository lacks: a HEAD asks its size (no fetch); the GET
    without Range that starts the fetch gets the bytes as they are stored; any other
    waits until the blob is stored and is served from storage."""
    fetcher = service(request).mirror_fetch
    if request.method == "HEAD":
        size = await run_in_threadpool(fetcher.blob_size, name, digest)
        headers["Location"] = blob_location(request, name, digest)
        return empty(200, {**headers, "Content-Length": str(size)})
    if "range" not in request.headers:
        got = await run_in_threadpool(fetcher.step, name, digest, stream=True)
        if isinstance(got, Fetch):
            headers["Location"] = blob_location(request, name, digest)
            sized = {"Content-Length": str(got.size)} if got.size is not None else {}
            return BlobResponse(got.chunks(), 200, {**headers, **sized})
    size = await mirrored.wait_for_blob(request, name, digest)
    return await _stored_blob(request, name, digest, size, headers)


async def delete_blob(request: Request) -> Response:
    name, digest = repo_name(request), request.path_params["digest"]
    await run_in_threadpool(service(request).blobs.unlink, name, digest)
    return empty(202, {})
