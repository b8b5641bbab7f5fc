"""``/v2/<name>/blobs/uploads/``: POST (start, mount, monolithic), PATCH, PUT, GET, DELETE.

A mount (``?mount=&from=``, or the ``?digest=`` existence probe) links a blob only if
it is readable from ``from`` or, without ``from``, already from the target repository:
never "any stored blob", which with access control on would leak blobs across
namespaces.
"""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from registry.access.permissions import PULL
from registry.api.guard import may
from registry.api.oci.base import absolute, empty, quick_read, repo_name, service
from registry.api.ratelimit import client_ip
from registry.digests import EMPTY_SHA256, parse_digest
from registry.errors import BlobUploadUnknown, DigestInvalid, SizeInvalid
from registry.services.uploads import Chunk, parse_content_range

_SESSION_RE = re.compile(r"[0-9a-f]{32}")  # uuid4().hex, as UploadService.start makes them


def _session(request: Request) -> str:
    """The path's session id; any other shape is unknown (it never reaches storage)."""
    session = request.path_params["session"]
    if not _SESSION_RE.fullmatch(session):
        raise BlobUploadUnknown(f"invalid upload session {session[:80]!r}")
    return session


def owner(request: Request) -> str:
    """Who an upload session is counted against: the authenticated user, else the IP."""
    user = request.scope.get("assay.user")
    return f"user:{user}" if user else f"ip:{client_ip(request.scope)}"


def _source(request: Request) -> str | None:
    """The ``from`` repository of a mount, if the caller may pull from it (else the
    mount only succeeds for a blob already in the target: a push never reads across
    namespaces it cannot read)."""
    source = request.query_params.get("from") or None
    return source if source and may(request, PULL, source) else None


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise SizeInvalid(f"invalid Content-Length {value[:40]!r}")
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
        if await run_in_threadpool(svc.blobs.mount, name, mount, _source(request)):
            return _blob_created(request, name, mount)
    elif q.get("digest"):
        digest = q["digest"]
        parse_digest(digest)
        if _has_body(request) or digest == EMPTY_SHA256:
            await svc.uploads.upload_whole(name, digest, request.stream(),
                                           _content_length(request), owner(request))
            return _blob_created(request, name, digest)
        # An empty POST ?digest= is an existence probe (Ollama): link if readable from
        # `from` (or already here), else open a session. Never a zero-byte upload.
        if await run_in_threadpool(svc.blobs.mount, name, digest, _source(request)):
            return _blob_created(request, name, digest)
    session = await run_in_threadpool(svc.uploads.start, name, owner(request))
    return empty(202, _session_headers(request, name, session, 0))


async def patch_upload(request: Request) -> Response:
    name, session = repo_name(request), _session(request)
    offset = await service(request).uploads.append(name, session, request.stream(),
                                                   _chunk(request))
    return empty(202, _session_headers(request, name, session, offset))


async def finish_upload(request: Request) -> Response:
    name, session = repo_name(request), _session(request)
    digest = request.query_params.get("digest")
    if not digest:
        raise DigestInvalid("the final PUT of an upload needs ?digest=")
    parse_digest(digest)
    svc = service(request)
    if _has_body(request):
        # The digest is known: a blob the namespace holds already fits any quota.
        await svc.uploads.append(name, session, request.stream(), _chunk(request), digest)
    await run_in_threadpool(svc.uploads.commit, name, session, digest)
    return _blob_created(request, name, digest)


async def upload_status(request: Request) -> Response:
    name, session = repo_name(request), _session(request)
    offset = await quick_read(request, service(request).uploads.status, name, session)
    return empty(204, _session_headers(request, name, session, offset))


async def cancel_upload(request: Request) -> Response:
    name, session = repo_name(request), _session(request)
    await run_in_threadpool(service(request).uploads.cancel, name, session)
    return empty(204, {})
