"""Garbage collection: what it deletes, what it keeps, and safety during pushes."""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from registry.db.tables import blobs, uploads, utcnow
from registry.maintenance.gc import collect
from tests.support.oci import push_blob, push_image, sha256

NAME = "team/gc"


def stored_digests(service) -> set[str]:
    return {d for d, _ in service.store.iter_blobs()}


def test_gc_deletes_unreferenced_keeps_referenced(client, service):
    digest, body = push_image(client, NAME, "v1", layers=[b"kept layer"])
    loose = push_blob(client, NAME, b"loose blob")
    report = collect(service)
    assert report.blobs == 1 and report.bytes == len(b"loose blob")
    assert loose not in stored_digests(service)
    assert client.head(f"/v2/{NAME}/blobs/{loose}").status_code == 404
    assert client.get(f"/v2/{NAME}/blobs/{sha256(b'kept layer')}").content == b"kept layer"
    assert client.get(f"/v2/{NAME}/manifests/v1").content == body


def test_gc_after_manifest_delete_frees_its_blobs(client, service):
    digest, _ = push_image(client, NAME, "v1", layers=[b"only here"])
    shared_digest, _ = push_image(client, "other", "v1", layers=[b"only here"])
    client.delete(f"/v2/{NAME}/manifests/{digest}")
    assert collect(service).blobs == 0  # still used by "other"
    client.delete(f"/v2/other/manifests/{shared_digest}")
    assert collect(service).blobs >= 1
    assert sha256(b"only here") not in stored_digests(service)


def test_grace_period_protects_fresh_blobs(client, service, settings):
    loose = push_blob(client, NAME, b"just pushed")
    settings.gc_grace_seconds = 3600
    try:
        assert collect(service).blobs == 0
        assert loose in stored_digests(service)
        assert collect(service, dry_run=True).blobs == 0
    finally:
        settings.gc_grace_seconds = 0
    assert collect(service, dry_run=True).blobs == 1
    assert loose in stored_digests(service)  # dry run deletes nothing


def test_gc_never_touches_live_uploads(client, service, settings):
    r = client.post(f"/v2/{NAME}/blobs/uploads/")
    loc = r.headers["Location"]
    client.patch(loc, content=b"half", headers={"Content-Range": "0-3"})
    collect(service)
    r = client.patch(loc, content=b" done", headers={"Content-Range": "4-8"})
    assert r.status_code == 202
    r = client.put(loc, params={"digest": sha256(b"half done")})
    assert r.status_code == 201


def test_gc_removes_expired_uploads(client, service):
    r = client.post(f"/v2/{NAME}/blobs/uploads/")
    loc = r.headers["Location"]
    client.patch(loc, content=b"abandoned", headers={"Content-Range": "0-8"})
    with service.db.write() as conn:
        conn.execute(update(uploads).values(expires_at=utcnow() - timedelta(seconds=1)))
    report = collect(service)
    assert report.uploads == 1
    assert list(service.store.iter_uploads()) == []
    assert client.get(loc).status_code == 404


def test_gc_removes_orphaned_bytes(client, service):
    digest = push_blob(client, NAME, b"orphan")
    with service.db.write() as conn:
        conn.execute(blobs.delete().where(blobs.c.digest == digest))
    assert collect(service).orphans == 1
    assert digest not in stored_digests(service)


@pytest.mark.slow  # threads racing GC against pushes
def test_gc_concurrent_with_pushes(client, service, settings):
    """Pushes racing GC over the very blobs GC is deleting: every pushed image stays whole.

    Each round first leaves its layer behind as garbage (pushed to a scratch repository,
    never referenced, linked "two hours ago"), then pushes an image that uses the same
    content while GC loops. Whichever wins the blob's row lock, the image must be whole.
    """
    settings.gc_grace_seconds = 60
    stop = threading.Event()
    errors: list[BaseException] = []

    def gc_loop():
        while not stop.is_set():
            try:
                collect(service)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    t = threading.Thread(target=gc_loop)
    t.start()
    pushed = []
    try:
        for i in range(12):
            layer = os.urandom(64 * 1024)
            push_blob(client, "scratch", layer)
            with service.db.write() as conn:
                conn.execute(update(blobs).where(blobs.c.digest == sha256(layer))
                             .values(last_linked_at=utcnow() - timedelta(hours=2)))
            name = f"race/r{i % 3}"
            pushed.append((name, layer, *push_image(client, name, f"t{i}", layers=[layer])))
    finally:
        stop.set()
        t.join()
        settings.gc_grace_seconds = 0
    assert not errors, errors
    collect(service)
    for name, layer, digest, body in pushed:
        assert client.get(f"/v2/{name}/manifests/{digest}").content == body
        assert client.get(f"/v2/{name}/blobs/{sha256(layer)}").content == layer


def test_unused_links_go_so_usage_and_reads_follow_the_manifests(client, service, settings):
    """A layer shared with another namespace stays stored, but the namespace whose last
    manifest using it was deleted no longer reads it or pays for it in its quota."""
    shared = b"layer both namespaces use"
    digest, _ = push_image(client, "team/app", "v1", layers=[shared])
    push_image(client, "other/app", "v1", layers=[shared])
    usage = client.get("/api/v1/namespaces/team").json()["usage_bytes"]
    assert usage >= len(shared)

    settings.gc_grace_seconds = 3600  # young links are kept, used or not
    client.delete(f"/v2/team/app/manifests/{digest}")
    assert collect(service).links == 0
    assert client.get(f"/v2/team/app/blobs/{sha256(shared)}").status_code == 200

    settings.gc_grace_seconds = 0
    assert collect(service, dry_run=True).links >= 1
    report = collect(service)
    assert report.links >= 2  # the layer and the config
    assert client.get("/api/v1/namespaces/team").json()["usage_bytes"] == 0
    assert client.get(f"/v2/team/app/blobs/{sha256(shared)}").status_code == 404
    # Still stored and readable where a manifest uses it.
    assert client.get(f"/v2/other/app/blobs/{sha256(shared)}").content == shared
    assert sha256(shared) in stored_digests(service)
    # Pushing it again to team makes it readable (and counted) there again.
    push_image(client, "team/app", "v2", layers=[shared])
    assert client.get(f"/v2/team/app/blobs/{sha256(shared)}").content == shared


def test_waiting_windows_read_in_whole_seconds():
    from datetime import UTC, datetime

    from registry.maintenance.gc import Pending, duration

    now = datetime(2026, 12, 5, 13, 0, 0, tzinfo=UTC)
    same_second = Pending()
    for micro in (100, 900_000):
        same_second.add(1, datetime(2026, 12, 5, 14, 0, 0, micro, tzinfo=UTC))
    assert same_second.window(now) == "at 2026-12-05 14:00:00 UTC (in 1h)"
    spread = Pending()
    spread.add(1, now - timedelta(minutes=5))  # collectable already
    spread.add(1, now + timedelta(hours=26, minutes=3, seconds=4))
    assert spread.window(now) == "from now to 2026-12-06 15:03:04 UTC (in 1d2h)"
    assert Pending().window(now) == "now" and duration(timedelta(0)) == "0s"
    assert duration(timedelta(minutes=90, seconds=7)) == "1h30m"
