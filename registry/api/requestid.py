"""Request ids and structured (JSON) logs.

``RequestIdMiddleware`` gives every HTTP request an id: the client's ``X-Request-ID`` if
it is a sane token (1-128 characters of ``[A-Za-z0-9._-]``, so a proxy's id carries
through), else a fresh one; the response carries it back in ``X-Request-ID``. While the
request runs the id is in ``request_id`` (a contextvar), which ``RequestIdFilter`` copies
onto every log record (worker threads started with ``anyio.to_thread`` inherit it).

With ``log_format = "json"`` (``ASSAY_LOG_FORMAT=json``) ``configure_logging`` makes
every log line one JSON object (``time``, ``level``, ``logger``, ``message``,
``request_id`` in a request, and any ``extra`` fields) and the middleware writes one
access line per request to the ``assay.access`` logger: method, path, status,
duration_ms, bytes (response body bytes sent), client, user (when signed in).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
from datetime import UTC, datetime

HEADER = "x-request-id"
_SANE = re.compile(r"[A-Za-z0-9._-]{1,128}")

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "assay_request_id", default=None)

access_log = logging.getLogger("assay.access")

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "request_id", "taskName"}


def sane(value: str | None) -> bool:
    return value is not None and _SANE.fullmatch(value) is not None


def new_id() -> str:
    return os.urandom(16).hex()  # as unique as uuid4, without building a UUID object


class RequestIdFilter(logging.Filter):
    """Set ``record.request_id`` (None outside a request) unless the record has one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra`` fields are kept as keys."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid is not None:
            out["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(level: str, log_format: str) -> None:
    """Root logging for ``assay serve``: text lines as before, or one JSON object a line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


class RequestIdMiddleware:
    """ASGI middleware: the request id (see the module docstring) and, with
    ``access_log``, one access log line per HTTP request."""

    def __init__(self, app, settings):
        self.app = app
        self.access_log = getattr(settings, "log_format", "text") == "json"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if sane(incoming) else new_id()
        scope["assay.request_id"] = rid
        token = request_id.set(rid)
        start = time.perf_counter()
        status, sent = 500, 0

        async def send_with_id(message):
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ())
                           if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", rid.encode("latin-1")))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.access_log:
                self._log(scope, status, sent, start, rid)
            request_id.reset(token)

    @staticmethod
    def _log(scope, status: int, sent: int, start: float, rid: str) -> None:
        client = scope.get("client")
        method, path = scope["method"], scope.get("path", "")
        duration_ms = round((time.perf_counter() - start) * 1000, 3)
        access_log.info("%s %s %d", method, path, status, extra={
            "request_id": rid, "method": method, "path": path, "status": status,
            "duration_ms": duration_ms, "bytes": sent,
            "client": client[0] if client else None, "user": scope.get("assay.user")})
