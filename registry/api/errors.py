"""The one place errors become HTTP responses.

OCI paths (``/v2/...``) get ``{"errors": [{"code", "message", "detail"}]}``; the code and
status come from the exception class (see ``registry.errors``). Starlette's own 404/405
for unknown routes and any unexpected exception are rendered the same way.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.errors import RegistryError

log = logging.getLogger("assay.api")

# Only codes from the spec's list: an unknown route is an unsupported operation.
_HTTP_CODES = {404: "UNSUPPORTED", 405: "UNSUPPORTED", 413: "SIZE_INVALID"}


def oci_error(status: int, code: str, message: str, detail=None, headers=None) -> JSONResponse:
    body = {"errors": [{"code": code, "message": message, "detail": detail}]}
    return JSONResponse(body, status_code=status, headers=headers)


async def registry_error(request: Request, exc: RegistryError) -> JSONResponse:
    return oci_error(exc.status, exc.code, exc.message, exc.detail, exc.headers())


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "UNSUPPORTED")
    return oci_error(exc.status_code, code, str(exc.detail), None, exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return oci_error(500, "UNKNOWN", f"internal error: {type(exc).__name__}")


HANDLERS = {RegistryError: registry_error, HTTPException: http_error, Exception: unexpected_error}
