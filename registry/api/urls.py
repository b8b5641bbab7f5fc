"""Absolute URLs as the client sees this registry (no other imports: used by the OCI
handlers and by ``registry.api.guard`` alike, without an import cycle)."""

from __future__ import annotations

from starlette.requests import Request


def absolute(request: Request, path: str) -> str:
    """An absolute URL for ``path`` (clients such as Ollama require absolute Locations)."""
    base = request.app.state.settings.public_url
    if base:
        return base.rstrip("/") + path
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return f"{request.url.scheme}://{host}{path}"
