"""Helpers shared by the OCI handlers, and the ``GET /v2/`` version check."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.api.urls import absolute  # noqa: F401 - re-exported for the handlers
from registry.digests import check_name, check_tag, is_digest, parse_digest
from registry.errors import PaginationInvalid
from registry.services import RegistryService
from registry.services.mirrors import Mirror

T = TypeVar("T")
API_VERSION = ("docker-distribution-api-version", "registry/2.0")


def service(request: Request) -> RegistryService:
    return request.app.state.registry


async def quick_read(request: Request, fn: Callable[..., T], *args) -> T:
    """Run a short read-only service call: inline where the database allows it
    (``Database.inline_reads``), else in a worker thread. Never for writes."""
    if request.app.state.registry.db.inline_reads:
        return fn(*args)
    return await run_in_threadpool(fn, *args)


async def mirror_of(request: Request, name: str) -> Mirror | None:
    """The mirror namespace repository ``name`` is in, if any. Every pull asks, so the
    per-process cache answers; when it is stale the database read goes where
    ``quick_read`` sends reads (never a blocking query on the event loop)."""
    mirrors = service(request).mirrors
    known, mirror = mirrors.peek(name)
    if known:
        return mirror
    return await quick_read(request, mirrors.of, name)


def repo_name(request: Request) -> str:
    """The path's repository name, checked (NAME_INVALID); on ``/v2/`` the path's
    manifest reference is checked too (a tag: MANIFEST_INVALID, a digest:
    DIGEST_INVALID), so no route ever looks up or stores a malformed one."""
    name = check_name(request.path_params["name"])
    reference = request.path_params.get("reference")
    if reference is not None and request.url.path.startswith("/v2/"):
        if is_digest(reference):
            parse_digest(reference)
        else:
            check_tag(reference)
    return name


def page_args(request: Request) -> tuple[int, str | None]:
    """``n`` and ``last``. ``n`` is clamped to the ``max_page_size`` setting (the page
    size when absent), so a page cut short by the cap still carries a ``Link`` to the
    rest."""
    cap = request.app.state.settings.max_page_size
    n = request.query_params.get("n")
    if n is None:
        return cap, request.query_params.get("last") or None
    if not (n.isascii() and n.isdigit()):
        raise PaginationInvalid(f"n must be a non-negative integer, not {n[:40]!r}")
    return min(int(n), cap), request.query_params.get("last") or None


def next_link(path: str, n: int | None, items: list[str]) -> dict[str, str]:
    """A ``Link: <...>; rel="next"`` header when a full page was returned."""
    if n and len(items) == n:
        return {"Link": f'<{path}?n={n}&last={items[-1]}>; rel="next"'}
    return {}


def empty(status: int, headers: dict[str, str]) -> Response:
    headers.setdefault("Content-Length", "0")
    return Response(status_code=status, headers=headers)


async def version_check(request: Request) -> Response:
    return JSONResponse({})


class ApiVersionMiddleware:
    """Adds ``Docker-Distribution-API-Version`` to every response (clients probe for it)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_header(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (API_VERSION[0].encode(), API_VERSION[1].encode())]
            await send(message)

        await self.app(scope, receive, send_with_header)


async def read_limited(request: Request, limit: int,
                       too_large: Callable[[int | None], Exception]) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes: by the declared
    Content-Length before reading (``too_large(declared)``), or as soon as the stream
    passes the limit (``too_large(None)``)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared))
    parts, total = [], 0
    async for part in request.stream():
        total += len(part)
        if total > limit:
            raise too_large(None)
        parts.append(part)
    return b"".join(parts)
