"""``/v2/<name>/blobs/uploads/``: POST (start, mount, monolithic), PATCH, PUT, GET, DELETE."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from registry.api.oci.base import absolute, empty, quick_read, repo_name, service
from registry.digests import EMPTY_SHA256, parse_digest
from registry.errors import DigestInvalid, SizeInvalid
from registry.services.uploads import Chunk, parse_content_range


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise SizeInvalid(f"invalid Content-Length {value!r}")
    return int(value)


def _has_body(request: Request) -> bool:
    length = _content_length(request)
    return bool(length) or (length is None and "transfer-encoding" in request.headers)


def _chunk(request: Request) -> Chunk:
    chunk = Chunk(length=_content_length(request))
    content_range = request.headers.get("content-range")
    if content_range:
        chunk.start, chunk.end = parse_content_range(content_range)
    return chunk


def _session_headers(request: Request, name: str, session: str, offset: int) -> dict:
    location = absolute(request, f"/v2/{name}/blobs/uploads/{session}")
    return {"Location": location, "Docker-Upload-UUID": session,
            "Range": f"0-{max(offset - 1, 0)}"}


def _blob_created(request: Request, name: str, digest: str) -> Response:
    return empty(201, {"Location": absolute(request, f"/v2/{name}/blobs/{digest}"),
                       "Docker-Content-Digest": digest})


async def start_upload(request: Request) -> Response:
    name = repo_name(request)
    svc = service(request)
    q = request.query_params
    mount = q.get("mount")
    if mount:
        if await run_in_threadpool(svc.blobs.mount, name, mount, q.get("from") or None):
            return _blob_created(request, name, mount)
    elif q.get("digest"):
        digest = q["digest"]
        parse_digest(digest)
        if _has_body(request) or digest == EMPTY_SHA256:
            await svc.uploads.upload_whole(name, digest, request.stream(),
                                           _content_length(request))
            return _blob_created(request, name, digest)
        # An empty POST ?digest= is an existence probe (Ollama): link if stored anywhere,
        # else open a session. It is never a zero-byte monolithic upload.
        if await run_in_threadpool(svc.blobs.mount, name, digest, None):
            return _blob_created(request, name, digest)
    session = await run_in_threadpool(svc.uploads.start, name)
    return empty(202, _session_headers(request, name, session, 0))


async def patch_upload(request: Request) -> Response:
    name, session = repo_name(request), request.path_params["session"]
    offset = await service(request).uploads.append(name, session, request.stream(),
                                                   _chunk(request))
    return empty(202, _session_headers(request, name, session, offset))


async def finish_upload(request: Request) -> Response:
    name, session = repo_name(request), request.path_params["session"]
    digest = request.query_params.get("digest")
    if not digest:
        raise DigestInvalid("the final PUT of an upload needs ?digest=")
    parse_digest(digest)
    svc = service(request)
    if _has_body(request):
        await svc.uploads.append(name, session, request.stream(), _chunk(request))
    await run_in_threadpool(svc.uploads.commit, name, session, digest)
    return _blob_created(request, name, digest)


async def upload_status(request: Request) -> Response:
    name, session = repo_name(request), request.path_params["session"]
    offset = await quick_read(request, service(request).uploads.status, name, session)
    return empty(204, _session_headers(request, name, session, offset))


async def cancel_upload(request: Request) -> Response:
    name, session = repo_name(request), request.path_params["session"]
    await run_in_threadpool(service(request).uploads.cancel, name, session)
    return empty(204, {})
