"""Rendering: the Jinja2 templates, the static assets under their content hash, the
filters pages share, and the security headers every page carries.

Templates autoescape everything (model cards, tags and failure logs are untrusted
text). Pages may hold private data, so they are never cached; assets are immutable
under ``/-/static/<hash>/<file>`` (the hash is of the file's bytes, so a new release
never meets a stale copy).
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from registry.web import session

STATIC = "static"
SECURITY_HEADERS = {
    # Scripts and styles only from this registry: nothing a model card says can run.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self'; script-src 'self'; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
IMMUTABLE = "public, max-age=31536000, immutable"
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}


# ---- assets ------------------------------------------------------------------------------

@cache
def assets() -> dict[str, tuple[str, bytes]]:
    """Every static file: name -> (hash, bytes), read once per process."""
    out = {}
    root = resources.files("registry.web") / STATIC
    for entry in root.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            data = entry.read_bytes()
            out[entry.name] = (hashlib.sha256(data).hexdigest()[:16], data)
    return out


def asset_url(name: str) -> str:
    digest, _ = assets()[name]
    return f"/-/static/{digest}/{name}"


async def static(request: Request) -> Response:
    """An asset by hash and name; an old hash is a 404 (the page that named it is stale)."""
    name, digest = request.path_params["file"], request.path_params["hash"]
    found = assets().get(name)
    if found is None or found[0] != digest:
        return Response("not found", status_code=404, media_type="text/plain")
    suffix = name[name.rfind("."):]
    return Response(found[1], media_type=_TYPES.get(suffix, "application/octet-stream"),
                    headers={"Cache-Control": IMMUTABLE, "ETag": f'"{digest}"',
                             "X-Content-Type-Options": "nosniff"})


# ---- filters -----------------------------------------------------------------------------

def size(value) -> str:
    """Bytes as people read them (decimal, as the CLI prints: 50.0 MB)."""
    if value is None:
        return "–"
    value = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def mib(value) -> str:
    return "–" if value is None else f"{value / 1024 / 1024:.0f} MiB"


def number(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:,.{digits}f}"


def when(value) -> str:
    """A timestamp (datetime or ISO 8601 text) in UTC, to the minute."""
    if value is None or value == "":
        return "–"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def short(digest: str | None, n: int = 12) -> str:
    if not digest:
        return "–"
    return digest.split(":", 1)[-1][:n]


def query(request: Request, **changes) -> str:
    """This page's query string with ``changes`` (None removes a key): links that keep
    the filters while changing the sort or the page."""
    items = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    items += [(k, v) for k, v in changes.items() if v is not None]
    return "?" + urlencode(items) if items else "?"


@cache
def environment() -> Environment:
    env = Environment(loader=PackageLoader("registry.web", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(size=size, mib=mib, number=number, when=when, short=short)
    env.globals.update(asset=asset_url, query=query)
    return env


# ---- pages -------------------------------------------------------------------------------

def render(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
    """A page: ``template`` with ``context`` plus who is signed in, whether access
    control is on, and the CSRF token for its forms."""
    me = session.me(request)
    html = environment().get_template(template).render(
        request=request, me=me, auth=bool(request.app.state.settings.auth),
        csrf=session.csrf_value(request), csrf_field=session.CSRF_FIELD, **context)
    response = HTMLResponse(html, status_code=status, headers=dict(SECURITY_HEADERS))
    session.set_cookies(request, response)
    return response


def error_page(request: Request, status: int, message: str, headers=None) -> HTMLResponse:
    """An error as a page (``registry.api.errors`` calls this for the interface's routes)."""
    response = render(request, "error.html", status=status, status_code=status,
                      message=message)
    for key, value in (headers or {}).items():
        if key.lower() != "www-authenticate":  # a browser would pop up a password box
            response.headers[key] = value
    return response
