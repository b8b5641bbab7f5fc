"""registry/api/requestid.py on its own: which incoming ids are kept, the JSON formatter,
and the middleware on a bare ASGI app."""

from __future__ import annotations

import json
import logging

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from registry.api.requestid import (
    JsonFormatter,
    RequestIdFilter,
    RequestIdMiddleware,
    request_id,
    sane,
)
from registry.settings import Settings


def test_sane_ids():
    assert sane("abc-DEF_1.2") and sane("x" * 128)
    for bad in (None, "", "x" * 129, "a b", "a/b", "a\nb", "ü"):
        assert not sane(bad), bad


def _record(msg="hello %s", args=("world",), **extra):
    record = logging.LogRecord("assay.test", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_json_formatter_outside_a_request():
    line = json.loads(JsonFormatter().format(_record(status=201)))
    assert line["message"] == "hello world" and line["level"] == "warning"
    assert line["logger"] == "assay.test" and line["status"] == 201
    assert "request_id" not in line


def test_filter_and_formatter_inside_a_request():
    token = request_id.set("rid-1")
    try:
        record = _record()
        assert RequestIdFilter().filter(record) and record.request_id == "rid-1"
    finally:
        request_id.reset(token)
    assert json.loads(JsonFormatter().format(record))["request_id"] == "rid-1"


def test_middleware_sets_the_contextvar_and_the_header():
    seen = []

    async def endpoint(request):
        seen.append(request_id.get())
        return PlainTextResponse("hi")

    app = Starlette(routes=[Route("/", endpoint)],
                    middleware=[Middleware(RequestIdMiddleware, settings=Settings())])
    with TestClient(app) as c:
        kept = c.get("/", headers={"X-Request-ID": "from-proxy"})
        replaced = c.get("/", headers={"X-Request-ID": "no good"})
    assert kept.headers["x-request-id"] == "from-proxy" == seen[0]
    assert replaced.headers["x-request-id"] == seen[1] != "no good"
    assert request_id.get() is None
