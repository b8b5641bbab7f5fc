"""Concurrent requests on shared state: one upload session, GC vs. linking a blob."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from registry.db.tables import blobs, utcnow
from registry.maintenance.gc import collect
from tests.support.oci import OCI_MANIFEST, error_code, image_manifest, push_blob, sha256

NAME = "team/race"


def slow_body(data: bytes, started: threading.Event, release: threading.Event):
    """Yield the first half, signal, wait, then the rest: a PATCH that stays in flight."""
    half = len(data) // 2
    yield data[:half]
    started.set()
    release.wait(10)
    yield data[half:]


def run(fn, results, key):
    results[key] = fn()


@pytest.mark.slow  # threads racing on one upload / on GC
def test_second_writer_gets_416_and_cannot_damage_the_upload(live_url, service):
    data, other = os.urandom(1 << 20), os.urandom(1 << 20)
    http = httpx.Client(base_url=live_url, timeout=30)
    loc = http.post(f"/v2/{NAME}/blobs/uploads/").headers["Location"]
    started, release, results = threading.Event(), threading.Event(), {}
    first = threading.Thread(target=run, args=(
        lambda: httpx.patch(loc, content=slow_body(data, started, release), timeout=30,
                            headers={"Content-Range": f"0-{len(data) - 1}"}), results, "a"))
    first.start()
    try:
        assert started.wait(10)
        # Its headers and first half are on the wire: give the server ample time to claim
        # the session for it (no probe: a probing write could take the lease itself).
        time.sleep(1.0)
        # Same offset, other bytes, while the first request is still writing: refused.
        r = http.patch(loc, content=other, headers={"Content-Range": f"0-{len(other) - 1}"})
        assert r.status_code == 416 and error_code(r) == "BLOB_UPLOAD_INVALID"
        assert "another request" in r.json()["errors"][0]["message"]
        # Nor may the upload be committed under the writer's feet.
        r = http.put(loc, params={"digest": sha256(data)})
        assert r.status_code == 416
    finally:
        release.set()
        first.join()
    assert results["a"].status_code == 202
    r = http.put(results["a"].headers["Location"], params={"digest": sha256(data)})
    assert r.status_code == 201
    assert http.get(f"/v2/{NAME}/blobs/{sha256(data)}").content == data
    assert [d for d, _ in service.store.iter_blobs()] == [sha256(data)]


def test_aborted_writer_releases_the_session(client):
    loc = client.post(f"/v2/{NAME}/blobs/uploads/").headers["Location"]
    r = client.patch(loc, content=b"abc", headers={"Content-Range": "0-9"})  # lies: 400
    assert r.status_code == 400
    r = client.patch(loc, content=b"abc", headers={"Content-Range": "0-2"})
    assert r.status_code == 202
    assert client.put(r.headers["Location"], params={"digest": sha256(b"abc")}).status_code == 201


@pytest.mark.slow  # threads racing on one upload / on GC
def test_gc_racing_mounts_and_manifests_never_leaves_a_dangling_blob(client, service,
                                                                        settings):
    """GC deletes old garbage while other requests link the very same blobs.

    Each round leaves a blob behind as garbage (linked "two hours ago"), then, while GC
    runs with a slowed-down storage delete, mounts it into another repository and
    pushes a manifest that uses it. Whoever wins, a blob that HEAD reports must be
    readable, and a manifest that was accepted must have all its blobs.
    """
    settings.gc_grace_seconds = 60
    real_delete = service.store.delete

    def slow_delete(digest):
        time.sleep(0.05)
        real_delete(digest)

    service.store.delete = slow_delete
    try:
        for i in range(6):
            layer, config = os.urandom(2048), f'{{"round": {i}}}'.encode()
            for blob in (layer, config):
                push_blob(client, "scratch", blob)
                push_blob(client, NAME, blob)
            with service.db.write() as conn:
                conn.execute(update(blobs).values(last_linked_at=utcnow() - timedelta(hours=2)))
            gc = threading.Thread(target=collect, args=(service,))
            gc.start()
            mount = client.post("/v2/mounted/blobs/uploads/",
                                params={"mount": sha256(layer), "from": "scratch"})
            body = image_manifest(config, [layer])
            put = client.put(f"/v2/{NAME}/manifests/r{i}", content=body,
                             headers={"Content-Type": OCI_MANIFEST})
            gc.join()
            assert mount.status_code in (201, 202)
            assert put.status_code in (201, 400)
            for repo in ("mounted", NAME):
                if client.head(f"/v2/{repo}/blobs/{sha256(layer)}").status_code == 200:
                    assert client.get(f"/v2/{repo}/blobs/{sha256(layer)}").content == layer
            if put.status_code == 201:
                for blob in (layer, config):
                    assert client.get(f"/v2/{NAME}/blobs/{sha256(blob)}").content == blob
            else:
                assert error_code(put) == "MANIFEST_BLOB_UNKNOWN"
    finally:
        service.store.delete = real_delete
        settings.gc_grace_seconds = 0


@pytest.mark.slow  # waits past the upload lease time
def test_slow_chunk_keeps_its_lease_past_the_lease_time(live_url, settings):
    """A client trickling a chunk (far less than a write batch per lease) still holds the
    session when the lease time has passed: the lease is renewed as data flows, so a
    second writer is refused instead of taking the upload over."""
    settings.upload_lease_seconds = 1.0
    parts = [os.urandom(1024) for _ in range(30)]

    def trickle():
        for part in parts:
            yield part
            time.sleep(0.1)

    with httpx.Client(base_url=live_url, timeout=30) as http:
        location = http.post(f"/v2/{NAME}/blobs/uploads/").headers["Location"]
        results: dict = {}
        slow = threading.Thread(target=run, args=(lambda: http.patch(
            location, content=trickle(), headers={"Content-Type": "application/octet-stream"}),
            results, "slow"))
        slow.start()
        time.sleep(2.0)  # twice the lease, well inside the 3 s the chunk takes
        other = http.patch(location, content=b"x", headers={
            "Content-Type": "application/octet-stream", "Content-Range": "0-0"})
        slow.join(30)
        assert other.status_code == 416, other.text
        assert "another request is writing" in other.json()["errors"][0]["message"]
        total = sum(map(len, parts))
        assert results["slow"].status_code == 202, results["slow"].text
        assert results["slow"].headers["Range"] == f"0-{total - 1}"
        digest = sha256(b"".join(parts))
        done = http.put(f"{results['slow'].headers['Location']}&digest={digest}"
                        if "?" in results["slow"].headers["Location"]
                        else f"{results['slow'].headers['Location']}?digest={digest}")
        assert done.status_code == 201, done.text


@pytest.mark.postgres
def test_a_manifest_push_locks_blob_rows_in_the_order_gc_does(postgres_server):
    """A push's touch_blobs and GC's batch delete take blob row locks in one order (by
    digest), so they can wait for each other but never deadlock. Built so that a plain
    UPDATE would lock in the other order: the larger digest is first in the heap and
    sequential scans are forced."""
    from sqlalchemy import create_engine, insert, select, text

    from registry.db import Database, migrate
    from registry.services.common import touch_blobs

    url = postgres_server.create_database("assay_lock_order")
    migrate(url)
    small, large = "sha256:" + "1" * 64, "sha256:" + "f" * 64
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("ALTER DATABASE assay_lock_order SET enable_indexscan = off"))
        conn.execute(text("ALTER DATABASE assay_lock_order SET enable_bitmapscan = off"))
        now = utcnow()
        for digest in (large, small):
            conn.execute(insert(blobs).values(digest=digest, size=1, created_at=now,
                                              last_linked_at=now))
    engine.dispose()
    engine, db = create_engine(url), Database(url)
    try:
        with engine.connect() as gc:
            with gc.begin():
                gc.execute(text("SET LOCAL lock_timeout = '3s'"))
                # GC mid-batch: it deleted (locked) the smaller digest's row...
                gc.execute(select(blobs.c.digest).where(blobs.c.digest == small)
                           .with_for_update())
                done = {}

                def push():
                    try:
                        with db.write() as conn:
                            done["touched"] = touch_blobs(conn, [large, small])
                    except Exception as exc:  # a deadlock is detected and reported here
                        done["error"] = exc

                pusher = threading.Thread(target=push)
                pusher.start()
                time.sleep(1.0)  # the push is now waiting for the smaller row
                assert pusher.is_alive()
                # ...and goes on to the larger one, which the waiting push must not hold.
                gc.execute(select(blobs.c.digest).where(blobs.c.digest == large)
                           .with_for_update())
            pusher.join(30)
            assert "error" not in done, done["error"]
            assert done["touched"] == {small: 1, large: 1}
    finally:
        engine.dispose()
        db.engine.dispose()
