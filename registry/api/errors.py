"""The one place errors become HTTP responses.

OCI paths (``/v2/...``) get ``{"errors": [{"code", "message", "detail"}]}``; the code and
status come from the exception class (see ``registry.errors``). Starlette's own 404/405
for unknown routes and any unexpected exception are rendered the same way.

Hugging Face Hub paths (``/api/models/...``, ``/<repo>/resolve/...``) get the Hub's
``{"error": message}`` and its ``X-Error-Code`` (``registry.api.hf.errors``).

The web interface's pages (``registry.web``) get an HTML page saying what went wrong.

Other REST paths (``/api/...``) get RFC 9457 problem details instead, as
``application/problem+json``: ``{"type": "about:blank", "title": <HTTP status phrase>,
"status", "detail": <message>, "code": <the same code as on /v2/>}``.

Every error the registry raises also carries its message in the ``X-Error-Message``
header (its first ``ERROR_HEADER_MAX`` characters, UTF-8, percent-encoded where not
printable ASCII; the header Hugging Face's hub uses for the same purpose): the answer to
a ``HEAD`` has no body, and a refused push's first request is a blob ``HEAD``. The
``assay`` client shows it when there is no body.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.hf.errors import hub_code, hub_error, is_hub
from registry.errors import RegistryError

log = logging.getLogger("assay.api")

# Only codes from the spec's list: an unknown route is an unsupported operation.
_HTTP_CODES = {404: "UNSUPPORTED", 405: "UNSUPPORTED", 413: "SIZE_INVALID"}


PROBLEM_JSON = "application/problem+json"
WEB = "assay.web"  # scope key set by the web interface's pages: errors as HTML pages
ERROR_HEADER = "X-Error-Message"
# Bytes of the encoded value: well under the 4-8 KiB a proxy allows for all headers
# (a message may repeat a caller's input, and percent-encoding can triple it).
ERROR_HEADER_MAX = 1024
# Printable ASCII stays as it is, so the header reads well in curl -I; "%" and anything
# else (non-ASCII names, control characters) is percent-encoded.
_HEADER_SAFE = "".join(chr(c) for c in range(32, 127) if chr(c) != "%")


def _is_web(request: Request) -> bool:
    return bool(request.scope.get(WEB))


def _web_page(request: Request, status: int, message: str, headers=None):
    from registry.web.render import error_page  # templates load only when a page is shown

    return error_page(request, status, message, headers)


def _is_rest(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def problem(status: int, detail: str, code: str, headers=None) -> JSONResponse:
    """An RFC 9457 problem response; ``code`` is an extension member for programs."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "code": code}
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def oci_error(status: int, code: str, message: str, detail=None, headers=None) -> JSONResponse:
    body = {"errors": [{"code": code, "message": message, "detail": detail}]}
    return JSONResponse(body, status_code=status, headers=headers)


def error_header(message: str) -> str:
    """``message`` as an ``X-Error-Message`` value (``urllib.parse.unquote`` reverses it),
    at most ``ERROR_HEADER_MAX`` bytes: cut whole characters, never inside a ``%XX``."""
    encoded = quote(message, safe=_HEADER_SAFE)
    while len(encoded) > ERROR_HEADER_MAX:
        message = message[:max(len(message) * ERROR_HEADER_MAX // len(encoded) - 1, 0)]
        encoded = quote(message, safe=_HEADER_SAFE)
    return encoded


async def registry_error(request: Request, exc: RegistryError) -> JSONResponse:
    headers = {**exc.headers(), ERROR_HEADER: error_header(exc.message)}
    if _is_web(request):
        return _web_page(request, exc.status, exc.message, headers)
    if is_hub(request):
        return hub_error(exc.status, exc.message, headers, hub_code(exc, request))
    if _is_rest(request):
        return problem(exc.status, exc.message, exc.code, headers)
    return oci_error(exc.status, exc.code, exc.message, exc.detail, headers)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "UNSUPPORTED")
    if _is_web(request):
        return _web_page(request, exc.status_code, str(exc.detail), exc.headers)
    if is_hub(request):
        return hub_error(exc.status_code, str(exc.detail), dict(exc.headers or {}), None)
    if _is_rest(request):
        return problem(exc.status_code, str(exc.detail), code, exc.headers)
    return oci_error(exc.status_code, code, str(exc.detail), None, exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    if _is_web(request):
        return _web_page(request, 500, f"internal error: {type(exc).__name__}")
    if is_hub(request):
        return hub_error(500, f"internal error: {type(exc).__name__}", {}, None)
    if _is_rest(request):
        return problem(500, f"internal error: {type(exc).__name__}", "UNKNOWN")
    return oci_error(500, "UNKNOWN", f"internal error: {type(exc).__name__}")


HANDLERS = {RegistryError: registry_error, HTTPException: http_error, Exception: unexpected_error}
