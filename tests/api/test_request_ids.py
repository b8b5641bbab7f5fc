"""Request ids (registry/api/requestid.py) through the whole app on both stacks: echoed or
generated in ``X-Request-ID``, and with ``log_format=json`` one JSON access line per
request carrying the id and the status."""

from __future__ import annotations

import io
import json
import logging
import shutil

import pytest
from starlette.testclient import TestClient

from registry.api.requestid import JsonFormatter, RequestIdFilter
from registry.app import create_app
from registry.storage import open_store


@pytest.fixture
def json_logs():
    """Every ``assay`` log record as a parsed JSON line, formatted as `assay serve` does."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("assay")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@pytest.fixture
def json_client(settings):
    app = create_app(settings.model_copy(update={"log_format": "json"}), run_migrations=False)
    with TestClient(app, base_url="http://registry.test") as c:
        yield c


def test_a_sane_incoming_id_is_echoed(client):
    r = client.get("/v2/", headers={"X-Request-ID": "lb-42.abc_DEF-9"})
    assert r.headers["x-request-id"] == "lb-42.abc_DEF-9"


def test_an_id_is_generated_when_none_is_sent(client):
    a, b = client.get("/healthz"), client.get("/healthz")
    assert a.headers["x-request-id"] and a.headers["x-request-id"] != b.headers["x-request-id"]


@pytest.mark.parametrize("bad", ["a" * 129, "has space", "semi;colon", "ünïcode", ""])
def test_a_bad_incoming_id_is_replaced(client, bad):
    r = client.get("/healthz", headers={"X-Request-ID": bad.encode("utf-8")})
    rid = r.headers["x-request-id"]
    assert rid and rid != bad and len(rid) <= 128


def test_errors_carry_the_id_too(client):
    r = client.get("/v2/no/such/manifests/latest", headers={"X-Request-ID": "err-1"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "err-1"


def test_json_access_line_carries_the_request_id_and_status(json_client, json_logs):
    r = json_client.get("/v2/library/missing/tags/list", headers={"X-Request-ID": "trace-7"})
    assert r.status_code == 404
    access = [rec for rec in json_logs() if rec["logger"] == "assay.access"]
    assert len(access) == 1, access
    line = access[0]
    assert line["request_id"] == "trace-7" and line["status"] == 404
    assert line["method"] == "GET" and line["path"] == "/v2/library/missing/tags/list"
    assert line["level"] == "info" and line["time"].endswith("Z")
    assert line["bytes"] == len(r.content) and line["duration_ms"] >= 0
    assert line["client"] == "testclient" and line["user"] is None


def test_log_lines_inside_a_request_carry_its_id(json_client, json_logs, settings):
    # A failing readiness check logs a warning from inside the request: a store whose
    # root is gone, or whose bucket does not exist.
    if settings.storage == "filesystem":
        shutil.rmtree(settings.blob_root)
    else:
        missing = settings.model_copy(update={"s3_bucket": "assay-no-such-bucket",
                                              "s3_create_bucket": False})
        json_client.app.state.registry.store = open_store(missing)
    json_client.get("/readyz", headers={"X-Request-ID": "probe-1"})
    lines = json_logs()
    warning = next(rec for rec in lines if rec["logger"] == "assay.health")
    assert warning["request_id"] == "probe-1" and warning["level"] == "warning"
    assert any(rec["logger"] == "assay.access" and rec["status"] == 503
               and rec["request_id"] == "probe-1" for rec in lines)


def test_no_access_lines_in_text_format(client, json_logs):
    client.get("/healthz")
    assert not [rec for rec in json_logs() if rec["logger"] == "assay.access"]
