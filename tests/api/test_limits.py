"""Configurable limits: upload size per session, open sessions per client,
upload expiry and the sweep of abandoned sessions, request rate, stalled bodies, page
size. On both stacks; each test sets the limits it needs through ``overrides``."""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

import anyio
import pytest
from sqlalchemy import select, update

from registry.app import create_app
from registry.db.tables import blobs, uploads, utcnow
from registry.maintenance.gc import collect, sweep_uploads
from tests.support.oci import error_code, push_image, sha256


@pytest.fixture
def overrides() -> dict:
    return {}


@pytest.fixture
def app(settings, overrides):
    return create_app(settings.model_copy(update=overrides), run_migrations=False)


def limits(**values):
    return pytest.mark.parametrize("overrides", [values], ids=["limits"])


def upload_keys(service) -> list[str]:
    """Every object or file the store holds under ``uploads/`` (both backends)."""
    store = service.store
    if hasattr(store, "root"):
        base = store.root / "uploads"
        return sorted(str(p.relative_to(base)) for p in base.rglob("*"))
    pages = store._s3.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=f"{store.prefix}uploads/")
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def session_rows(service) -> list:
    with service.db.read() as conn:
        return conn.execute(select(uploads.c.id, uploads.c.received, uploads.c.owner)).all()


def blob_count(service) -> int:
    with service.db.read() as conn:
        return len(conn.execute(select(blobs.c.digest)).all())


def start(client, name="lim/repo", **kw) -> str:
    r = client.post(f"/v2/{name}/blobs/uploads/", **kw)
    assert r.status_code == 202, r.text
    return r.headers["Location"]


def chunks(data: bytes, size: int = 16):
    for i in range(0, len(data), size):
        yield data[i:i + size]


# ---- upload size per session ---------------------------------------------------------

@limits(max_upload_bytes=100)
def test_chunk_past_the_limit_is_refused_up_front_and_the_session_keeps_its_offset(
        client, service):
    loc = start(client)
    first, rest = os.urandom(60), os.urandom(40)
    assert client.patch(loc, content=first).status_code == 202
    r = client.patch(loc, content=os.urandom(41), headers={"Content-Range": "60-100"})
    assert r.status_code == 413 and error_code(r) == "SIZE_INVALID"
    assert "100" in r.json()["errors"][0]["message"]
    assert client.get(loc).headers["Range"] == "0-59"  # unchanged
    # The session is still good: the rest fits exactly, and the blob is intact.
    assert client.patch(loc, content=rest, headers={"Content-Range": "60-99"}).status_code == 202
    r = client.put(loc, params={"digest": sha256(first + rest)})
    assert r.status_code == 201, r.text


@limits(max_upload_bytes=100)
def test_streamed_chunk_past_the_limit_is_cut_off_and_dropped(client, service):
    loc = start(client)
    first = os.urandom(60)
    assert client.patch(loc, content=first).status_code == 202
    # No Content-Length (chunked): caught while streaming.
    r = client.patch(loc, content=chunks(os.urandom(80)))
    assert r.status_code == 413 and error_code(r) == "SIZE_INVALID"
    assert client.get(loc).headers["Range"] == "0-59"
    r = client.put(loc, params={"digest": sha256(first)})
    assert r.status_code == 201, r.text  # no byte of the refused chunk was kept


@limits(max_upload_bytes=100)
@pytest.mark.parametrize("streamed", [False, True], ids=["declared", "streamed"])
def test_monolithic_upload_past_the_limit_leaves_nothing(client, service, streamed):
    data = os.urandom(101)
    body = chunks(data) if streamed else data
    r = client.post(f"/v2/lim/repo/blobs/uploads/?digest={sha256(data)}", content=body)
    assert r.status_code == 413 and error_code(r) == "SIZE_INVALID"
    assert session_rows(service) == [] and upload_keys(service) == []
    assert blob_count(service) == 0
    assert client.head(f"/v2/lim/repo/blobs/{sha256(data)}").status_code == 404
    ok = os.urandom(100)  # exactly the limit is fine
    r = client.post(f"/v2/lim/repo/blobs/uploads/?digest={sha256(ok)}", content=ok)
    assert r.status_code == 201


@limits(max_upload_bytes=100)
def test_final_put_past_the_limit(client, service):
    loc = start(client)
    assert client.patch(loc, content=b"x" * 90).status_code == 202
    data = b"x" * 90 + b"y" * 20
    r = client.put(loc, params={"digest": sha256(data)}, content=b"y" * 20)
    assert r.status_code == 413 and error_code(r) == "SIZE_INVALID"
    assert blob_count(service) == 0 and client.get(loc).headers["Range"] == "0-89"


# ---- open sessions per client ------------------------------------------------------------

@limits(max_concurrent_uploads=2)
def test_open_sessions_per_client_are_capped(client, service):
    first = start(client)
    start(client, "lim/other")
    r = client.post("/v2/lim/repo/blobs/uploads/")
    assert r.status_code == 429 and error_code(r) == "TOOMANYREQUESTS"
    assert int(r.headers["Retry-After"]) >= 1
    # A monolithic upload needs a session too.
    r = client.post(f"/v2/lim/repo/blobs/uploads/?digest={sha256(b'z')}", content=b"z")
    assert r.status_code == 429
    assert {row.owner for row in session_rows(service)} == {"ip:testclient"}
    # Finishing (or cancelling) one frees its slot; so does expiry.
    assert client.put(first, params={"digest": sha256(b"")}).status_code == 201
    second = start(client)
    with service.db.write() as conn:
        conn.execute(update(uploads).where(uploads.c.id == second.rsplit("/", 1)[1])
                     .values(expires_at=utcnow() - timedelta(seconds=1)))
    start(client)


@limits(max_concurrent_uploads=1)
def test_sessions_are_counted_per_authenticated_user(app, client, service):
    """``assay.user`` (set by the auth middleware) wins over the client IP."""
    from starlette.testclient import TestClient

    async def as_user(scope, receive, send):
        if scope["type"] == "http":
            user = dict(scope["headers"]).get(b"x-test-user")
            if user:
                scope["assay.user"] = user.decode()
        await app(scope, receive, send)

    users = TestClient(as_user, base_url="http://registry.test")
    assert users.post("/v2/lim/a/blobs/uploads/",
                      headers={"X-Test-User": "alice"}).status_code == 202
    assert users.post("/v2/lim/a/blobs/uploads/",
                      headers={"X-Test-User": "alice"}).status_code == 429
    assert users.post("/v2/lim/a/blobs/uploads/",
                      headers={"X-Test-User": "bob"}).status_code == 202
    assert users.post("/v2/lim/a/blobs/uploads/").status_code == 202  # anonymous: the IP
    assert sorted(r.owner for r in session_rows(service)) == [
        "ip:testclient", "user:alice", "user:bob"]


# ---- expiry and the sweep ------------------------------------------------------------------

def expire_all(service) -> None:
    with service.db.write() as conn:
        conn.execute(update(uploads).values(expires_at=utcnow() - timedelta(seconds=1)))


def test_expired_session_is_unknown_everywhere(client, service):
    loc = start(client)
    assert client.patch(loc, content=b"abc").status_code == 202
    expire_all(service)
    for r in (client.get(loc), client.patch(loc, content=b"d"),
              client.put(loc, params={"digest": sha256(b"abc")}), client.delete(loc)):
        assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    assert blob_count(service) == 0


def test_sweep_removes_expired_sessions_and_their_data(client, service):
    kept, gone = start(client), start(client)
    for loc in (kept, gone):
        assert client.patch(loc, content=os.urandom(1000)).status_code == 202
    gone_id = gone.rsplit("/", 1)[1]
    assert any(gone_id in k for k in upload_keys(service))
    with service.db.write() as conn:
        conn.execute(update(uploads).where(uploads.c.id == gone_id)
                     .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert sweep_uploads(service) == 1
    assert not any(gone_id in k for k in upload_keys(service))
    assert [r.id for r in session_rows(service)] == [kept.rsplit("/", 1)[1]]
    assert client.get(kept).headers["Range"] == "0-999"  # a live session is untouched


def test_sweep_spares_a_session_being_written(client, service):
    loc = start(client)
    session = loc.rsplit("/", 1)[1]
    with service.db.write() as conn:
        conn.execute(update(uploads).values(expires_at=utcnow() - timedelta(seconds=1),
                                            writer="w", lease_until=utcnow()
                                            + timedelta(seconds=60)))
    assert sweep_uploads(service) == 0
    assert [r.id for r in session_rows(service)] == [session]


def test_assay_gc_removes_abandoned_sessions(client, service):
    loc = start(client)
    assert client.patch(loc, content=b"abandoned").status_code == 202
    expire_all(service)
    assert collect(service).uploads == 1
    assert upload_keys(service) == [] and session_rows(service) == []


@limits(upload_sweep_seconds=0.2)
def test_the_registry_sweeps_by_itself(client, service):
    loc = start(client)
    assert client.patch(loc, content=b"abandoned").status_code == 202
    assert upload_keys(service)
    expire_all(service)
    deadline = time.monotonic() + 10
    while (upload_keys(service) or session_rows(service)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert upload_keys(service) == [] and session_rows(service) == []


# ---- request rate -----------------------------------------------------------------------

@limits(rate_limit_per_second=0.5, rate_limit_burst=2)
def test_rate_limit_answers_429_with_retry_after(client):
    assert [client.get("/v2/").status_code for _ in range(2)] == [200, 200]
    r = client.get("/v2/")
    assert r.status_code == 429 and error_code(r) == "TOOMANYREQUESTS"
    assert r.headers["Retry-After"] == "2"
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    r = client.get("/api/v1/repositories")
    assert r.status_code == 429 and r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["code"] == "TOOMANYREQUESTS" and r.headers["Retry-After"]


def test_rate_limit_is_off_by_default(client):
    assert {client.get("/v2/").status_code for _ in range(300)} == {200}


# ---- stalled request bodies -----------------------------------------------------------------

def _raw_request(url: str, head: str, body: bytes, stall: float) -> tuple[bytes, float]:
    """Send ``head`` and ``body`` and then nothing; returns (response, seconds waited)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(head.encode() + body)
        began, data = time.monotonic(), b""
        s.settimeout(stall)
        try:
            while b"\r\n\r\n" not in data:
                part = s.recv(65536)
                if not part:
                    break
                data += part
            data += s.recv(65536)
        except (TimeoutError, ConnectionError):
            pass
        return data, time.monotonic() - began


@pytest.mark.slow  # waits out the stall timeout
@limits(request_idle_timeout_seconds=0.5)
def test_a_stalled_chunk_is_aborted_and_dropped(client, service, live_url):
    loc = start(client)
    path = loc.removeprefix("http://registry.test")
    assert client.patch(loc, content=b"a" * 10).status_code == 202
    head = (f"PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            "Content-Range: 10-1009\r\nContent-Type: application/octet-stream\r\n\r\n")
    response, waited = _raw_request(live_url, head, b"b" * 100, stall=10)
    assert waited < 8
    assert response.startswith(b"HTTP/1.1 400"), response
    assert b"BLOB_UPLOAD_INVALID" in response and b"0.5 s" in response
    assert client.get(loc).headers["Range"] == "0-9"  # the partial chunk is gone
    assert client.put(loc, params={"digest": sha256(b"a" * 10)}).status_code == 201


@pytest.mark.slow  # waits out the stall timeout
@limits(request_idle_timeout_seconds=0.5)
def test_a_stalled_monolithic_upload_leaves_nothing(client, service, live_url):
    data = os.urandom(1000)
    head = (f"POST /v2/lim/repo/blobs/uploads/?digest={sha256(data)} HTTP/1.1\r\n"
            "Host: x\r\nContent-Length: 1000\r\n\r\n")
    response, _ = _raw_request(live_url, head, data[:300], stall=10)
    assert response.startswith(b"HTTP/1.1 400"), response
    assert session_rows(service) == [] and upload_keys(service) == []
    assert blob_count(service) == 0


@limits(request_idle_timeout_seconds=0.2)
def test_idle_timeout_at_the_asgi_level(app, client):
    """A receive that never returns is cut off before the handler waits forever."""
    path = start(client).removeprefix("http://registry.test")
    sent = []

    async def run(receive):
        scope = {"type": "http", "method": "PATCH", "path": path, "raw_path": b"",
                 "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"x"), (b"content-length", b"10")],
                 "client": ("127.0.0.1", 1), "server": ("x", 80), "scheme": "http",
                 "http_version": "1.1", "app": app}

        async def send(message):
            sent.append(message)

        with anyio.fail_after(10):
            await app.middleware_stack(scope, receive, send)

    async def stalling():
        await anyio.sleep_forever()

    anyio.run(run, stalling)
    assert sent[0]["status"] == 400 and b"BLOB_UPLOAD_INVALID" in sent[1]["body"]
    assert client.get(f"http://registry.test{path}").headers["Range"] == "0-0"


# ---- page size ----------------------------------------------------------------------------------

@limits(max_page_size=2)
def test_max_page_size_caps_catalog_and_tags(client):
    for tag in ("a", "b", "c"):
        push_image(client, "lim/pages", tag)
    r = client.get("/v2/lim/pages/tags/list?n=50")
    assert r.json()["tags"] == ["a", "b"] and 'n=2&last=b' in r.headers["Link"]
