"""Scrub: re-hashing stored blobs, reporting and quarantining damaged ones, healing by
re-push, and safety while pushes and GC run. Damage is done around the registry: on
the filesystem directly, on S3 through the S3 server's own client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from registry.db.tables import blobs, utcnow
from registry.maintenance.gc import collect
from registry.maintenance.scrub import CORRUPT, MISSING, scrub
from registry.storage import blob_key, quarantine_key
from tests.support.metrics import scrape, value
from tests.support.oci import (
    OCI_MANIFEST,
    error_code,
    image_manifest,
    push_blob,
    push_image,
    sha256,
)

NAME = "team/scrub"


class Raw:
    """Reads and rewrites stored objects without going through the registry."""

    def __init__(self, request, settings):
        self.settings = settings
        if settings.storage == "s3":
            self.s3 = request.getfixturevalue("s3_server").client()

    def _key(self, key: str) -> str:
        return self.settings.s3_prefix + key

    def read(self, key: str) -> bytes | None:
        if self.settings.storage != "s3":
            path = self.settings.blob_root / key
            return path.read_bytes() if path.exists() else None
        try:
            return self.s3.get_object(Bucket=self.settings.s3_bucket,
                                      Key=self._key(key))["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None

    def write(self, key: str, data: bytes) -> None:
        if self.settings.storage != "s3":
            (self.settings.blob_root / key).write_bytes(data)
        else:
            self.s3.put_object(Bucket=self.settings.s3_bucket, Key=self._key(key), Body=data)

    def flip_byte(self, digest: str, at: int = 0) -> None:
        data = bytearray(self.read(blob_key(digest)))
        data[at] ^= 0xFF
        self.write(blob_key(digest), bytes(data))


@pytest.fixture
def raw(request, settings) -> Raw:
    return Raw(request, settings)


def blob_row(service, digest):
    with service.db.read() as conn:
        return conn.execute(select(blobs).where(blobs.c.digest == digest)).first()


def test_clean_store_reports_nothing_and_records_scrub_times(client, service):
    push_image(client, NAME, "v1", layers=[b"layer one", b"layer two"])
    push_blob(client, NAME, b"loose")
    seen = []
    report = scrub(service, progress=lambda p: seen.append((p.blobs_done, p.bytes_done)))
    assert report.clean and report.damaged == []
    assert (report.checked, report.corrupt, report.missing, report.quarantined) == (4, 0, 0, 0)
    with service.db.read() as conn:
        rows = conn.execute(select(blobs.c.size, blobs.c.scrubbed_at)).all()
    assert report.bytes == sum(r.size for r in rows)
    assert all(r.scrubbed_at is not None for r in rows)
    assert seen[-1] == (4, report.bytes)


def test_flipped_byte_is_reported_with_what_refers_to_it(client, service, raw):
    layer = os.urandom(3000)
    digest1, _ = push_image(client, NAME, "v1", layers=[layer])
    digest2, _ = push_image(client, "other/model", "v2", layers=[layer, b"x"])
    push_blob(client, "third", layer)  # readable there, in no manifest
    raw.flip_byte(sha256(layer), at=1234)

    report = scrub(service)
    assert not report.clean
    assert (report.checked, report.corrupt, report.missing, report.quarantined) == (4, 1, 0, 0)
    [bad] = report.damaged
    assert bad.digest == sha256(layer) and bad.problem == CORRUPT and not bad.quarantined
    assert bad.detail.startswith("hashes to sha256:")
    assert bad.repositories == ["other/model", "team/scrub", "third"]
    assert [(m.repository, m.digest, m.tags) for m in bad.manifests] == [
        ("other/model", digest2, ["v2"]), (NAME, digest1, ["v1"])]
    # Without --quarantine nothing changes but the scrub time.
    assert blob_row(service, sha256(layer)).quarantined_at is None
    assert blob_row(service, sha256(layer)).scrubbed_at is not None
    assert client.head(f"/v2/{NAME}/blobs/{sha256(layer)}").status_code == 200
    # Reported again by the next run: it is still damaged.
    assert [d.digest for d in scrub(service).damaged] == [sha256(layer)]


def test_wrong_size_is_corrupt(client, service, raw):
    digest = push_blob(client, NAME, b"twelve bytes")
    raw.write(blob_key(digest), b"twelve bytes and more")
    [bad] = scrub(service).damaged
    assert bad.problem == CORRUPT and bad.detail.startswith("holds 21 bytes, 12 recorded")


def test_quarantine_then_a_repush_heals(client, service, raw):
    layer = os.urandom(5000)
    manifest_digest, manifest = push_image(client, NAME, "v1", layers=[layer])
    digest = sha256(layer)
    raw.flip_byte(digest)
    corrupt_bytes = raw.read(blob_key(digest))

    assert value(scrape(client), "assay_blobs_quarantined", default=-1) == 0
    report = scrub(service, quarantine=True)
    assert (report.corrupt, report.quarantined) == (1, 1)
    assert report.damaged[0].quarantined
    assert value(scrape(client), "assay_blobs_quarantined") == 1
    assert raw.read(blob_key(digest)) is None
    assert raw.read(quarantine_key(digest)) == corrupt_bytes
    assert blob_row(service, digest).quarantined_at is not None

    for method in ("HEAD", "GET"):
        r = client.request(method, f"/v2/{NAME}/blobs/{digest}")
        assert r.status_code == 404, method
    r = client.get(f"/v2/{NAME}/blobs/{digest}")
    assert error_code(r) == "BLOB_UNKNOWN" and "quarantined" in r.json()["errors"][0]["message"]
    # A new manifest cannot refer to it until it is pushed again.
    config = b'{"refers": "to a quarantined layer"}'
    push_blob(client, NAME, config)
    body = image_manifest(config, [layer])
    r = client.put(f"/v2/{NAME}/manifests/v2", content=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN", r.text
    # The manifest is still served; mounting the blob is refused (an upload starts).
    r = client.get(f"/v2/{NAME}/manifests/v1")
    assert r.status_code == 200 and r.content == manifest
    r = client.post(f"/v2/elsewhere/blobs/uploads/?mount={digest}&from={NAME}")
    assert r.status_code == 202
    client.delete(r.headers["Location"])
    # Already quarantined: not checked again, nothing new to report.
    assert scrub(service, quarantine=True).clean

    push_blob(client, NAME, layer)
    assert blob_row(service, digest).quarantined_at is None
    assert value(scrape(client), "assay_blobs_quarantined") == 0
    r = client.get(f"/v2/{NAME}/blobs/{digest}")
    assert r.status_code == 200 and r.content == layer
    assert client.get(f"/v2/{NAME}/manifests/{manifest_digest}").content == manifest
    assert scrub(service).clean


def test_missing_bytes_are_reported_and_quarantine_marks_them(client, service):
    digest = push_blob(client, NAME, b"soon gone")
    kept = push_blob(client, NAME, b"stays")
    service.store.delete(digest)

    report = scrub(service)
    assert (report.checked, report.corrupt, report.missing) == (2, 0, 1)
    assert report.damaged[0].digest == digest and report.damaged[0].problem == MISSING
    assert client.head(f"/v2/{NAME}/blobs/{digest}").status_code == 200  # not yet marked

    assert scrub(service, quarantine=True).quarantined == 1
    r = client.head(f"/v2/{NAME}/blobs/{digest}")
    assert r.status_code == 404
    push_blob(client, NAME, b"soon gone")
    assert client.get(f"/v2/{NAME}/blobs/{digest}").content == b"soon gone"
    assert client.get(f"/v2/{NAME}/blobs/{kept}").content == b"stays"
    assert scrub(service).clean


def test_runs_resume_least_recently_scrubbed_first(client, service):
    digests = [push_blob(client, NAME, f"blob {i}".encode()) for i in range(5)]
    first = scrub(service, limit=2)
    assert first.checked == 2
    done = {d for d in digests if blob_row(service, d).scrubbed_at is not None}
    assert len(done) == 2
    second = scrub(service, limit=3)
    assert second.checked == 3
    assert all(blob_row(service, d).scrubbed_at is not None for d in digests)
    # Everything was scrubbed just now: an age limit skips it all; the oldest comes first.
    assert scrub(service, older_than=timedelta(hours=1)).checked == 0
    oldest = sorted(done)[0]
    with service.db.write() as conn:
        conn.execute(update(blobs).where(blobs.c.digest == oldest)
                     .values(scrubbed_at=utcnow() - timedelta(days=2)))
    seen = []
    scrub(service, limit=1, progress=lambda p: seen.append(p.digest))
    assert set(seen) == {oldest}
    assert scrub(service, older_than=timedelta(days=1)).checked == 0


def test_blob_collected_mid_scrub_is_not_reported(client, service, settings):
    """GC deletes row and bytes while scrub works from its list: not missing, not corrupt."""
    first, second = push_blob(client, NAME, b"garbage a"), push_blob(client, NAME, b"garbage b")
    collected = []

    def gc_once(p):
        if not collected:
            collected.append(collect(service))

    report = scrub(service, progress=gc_once)
    assert collected[0].blobs == 2
    assert report.clean and report.missing == 0 and report.corrupt == 0
    assert blob_row(service, first) is None and blob_row(service, second) is None


@pytest.mark.parametrize("settings", ["sqlite-fs"], indirect=True)
def test_read_error_on_a_blob_collected_meanwhile_is_not_a_failure(client, service):
    first, second = push_blob(client, NAME, b"first"), push_blob(client, NAME, b"second")
    order = sorted([first, second])  # never scrubbed: visited in digest order
    path = service.store.blob_path(order[1])
    path.unlink()
    path.mkdir()  # reading it is a storage error, not a missing blob

    def collect_the_broken_one(p):
        with service.db.write() as conn:  # what GC's DELETE does to the row
            conn.execute(blobs.delete().where(blobs.c.digest == order[1]))

    report = scrub(service, progress=collect_the_broken_one)
    assert report.clean and report.checked == 1


def test_blob_repushed_mid_scrub_is_not_quarantined(client, service, raw):
    """Scrub hashed corrupt bytes, but meanwhile GC removed the blob and a push stored it
    afresh: the re-check under the row lock sees a new row and leaves it alone."""
    data = os.urandom(2000)
    digest = push_blob(client, NAME, data)
    raw.flip_byte(digest)
    repushed = []

    def gc_then_push(p):
        if p.digest == digest and not repushed:
            assert collect(service).blobs == 1
            repushed.append(push_blob(client, NAME, data))

    report = scrub(service, quarantine=True, progress=gc_then_push)
    assert repushed and report.clean and report.quarantined == 0
    assert blob_row(service, digest).quarantined_at is None
    assert client.get(f"/v2/{NAME}/blobs/{digest}").content == data
    assert scrub(service).clean


def push_retrying(http, name: str, tag: str, layer: bytes) -> tuple[str, bytes]:
    """``push_image``, again when GC took the layer between its upload and the manifest
    (MANIFEST_BLOB_UNKNOWN): the other pusher ages the same content, as a client would
    retry."""
    for _ in range(5):
        try:
            return push_image(http, name, tag, layers=[layer])
        except AssertionError as exc:
            if "MANIFEST_BLOB_UNKNOWN" not in str(exc):
                raise
    raise AssertionError(f"{name}:{tag}: GC took the layer five times in a row")


@pytest.mark.slow  # runs the assay CLI as a process / races scrubs with pushes
def test_scrub_during_pushes_and_gc_finds_nothing_and_loses_nothing(live_url, client,
                                                                     service, settings):
    """Pushers (some pushing the same content), a GC loop collecting aged garbage of that
    same content, and scrub loops, for a few seconds: no false report, every image whole."""
    settings.gc_grace_seconds = 60
    stop = threading.Event()
    errors: list[BaseException] = []
    pushed: list[tuple[str, bytes, str, bytes]] = []
    reports = []

    def guarded(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                stop.set()
        return threading.Thread(target=run)

    def pusher(n):
        def run():
            with httpx.Client(base_url=live_url, timeout=30) as http:
                for i in range(6):
                    if stop.is_set():
                        return
                    # Even rounds: content both pushers push; odd rounds: this one's only.
                    layer = (f"shared {i}".encode() * 5000 if i % 2 == 0
                             else os.urandom(40_000))
                    push_blob(http, "scratch", layer)  # garbage GC may collect meanwhile
                    with service.db.write() as conn:
                        conn.execute(update(blobs).where(blobs.c.digest == sha256(layer))
                                     .values(last_linked_at=utcnow() - timedelta(hours=2)))
                    name = f"race/p{n}"
                    pushed.append((name, layer, *push_retrying(http, name, f"t{i}", layer)))
        return run

    def gc_loop():
        while not stop.is_set():
            collect(service)

    def scrub_loop():
        while not stop.is_set():
            reports.append(scrub(service, quarantine=True))

    pushers = [guarded(pusher(n)) for n in range(2)]
    others = [guarded(gc_loop), guarded(scrub_loop)]
    for t in pushers + others:
        t.start()
    deadline = time.monotonic() + 45  # a safety net: it takes a few seconds
    for t in pushers:
        t.join(max(0.1, deadline - time.monotonic()))
    stop.set()
    for t in others:
        t.join(30)
    settings.gc_grace_seconds = 0
    assert not errors, errors
    assert not any(t.is_alive() for t in pushers + others)
    assert len(pushed) == 12 and len(reports) >= 2
    assert all(r.clean and r.quarantined == 0 for r in reports), [r.damaged for r in reports]
    final = scrub(service)
    assert final.clean and final.checked > 0
    for name, layer, digest, body in pushed:
        assert client.get(f"/v2/{name}/manifests/{digest}").content == body
        assert client.get(f"/v2/{name}/blobs/{sha256(layer)}").content == layer


def _assay(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSAY_")}
    exe = Path(sys.executable).with_name("assay")
    return subprocess.run([str(exe), "scrub", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.slow  # runs the assay CLI as a process / races scrubs with pushes
@pytest.mark.parametrize("settings", ["sqlite-fs"], indirect=True)
def test_cli_exit_status_report_and_quarantine(client, settings, raw):
    layer = os.urandom(4000)
    manifest_digest, _ = push_image(client, NAME, "v1", layers=[layer])
    digest = sha256(layer)

    ok = _assay(settings.data_dir)
    assert ok.returncode == 0, ok.stderr
    config = json.dumps({"tag": "v1"}).encode()  # push_image's default config blob
    assert ok.stdout.splitlines() == [
        f"scrubbed 2 blob(s), {4000 + len(config)} bytes: 0 corrupt, 0 missing, 0 quarantined"]

    raw.flip_byte(digest)
    found = _assay(settings.data_dir)
    assert found.returncode == 1, found.stderr
    assert f"corrupt {digest}: hashes to sha256:" in found.stdout
    assert f"  repositories: {NAME}" in found.stdout
    assert f"  manifest: {NAME}@{manifest_digest} (tags: v1)" in found.stdout

    as_json = _assay(settings.data_dir, "--json", "--quarantine")
    assert as_json.returncode == 1, as_json.stderr
    report = json.loads(as_json.stdout)
    assert (report["corrupt"], report["quarantined"]) == (1, 1)
    assert report["damaged"][0]["digest"] == digest
    assert report["damaged"][0]["repositories"] == [NAME]
    assert raw.read(blob_key(digest)) is None and raw.read(quarantine_key(digest)) is not None
    assert client.head(f"/v2/{NAME}/blobs/{digest}").status_code == 404

    # Quarantined blobs are not checked again until pushed: nothing new, exit 0.
    after = _assay(settings.data_dir, "--json")
    assert after.returncode == 0 and json.loads(after.stdout)["damaged"] == []

    bad = _assay(settings.data_dir, "--older-than", "soon")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


@pytest.mark.slow  # runs the assay CLI as a process / races scrubs with pushes
@pytest.mark.parametrize("settings", ["sqlite-fs"], indirect=True)
def test_cli_storage_failure_is_exit_2_and_the_run_resumes(client, service, settings):
    first = push_blob(client, NAME, b"aaa")
    second = push_blob(client, NAME, b"bbb")
    # Make one blob unreadable: a directory where its file should be.
    path = service.store.blob_path(second)
    path.unlink()
    path.mkdir()
    failed = _assay(settings.data_dir)
    assert failed.returncode == 2
    said, error = failed.stderr.strip().splitlines()  # the database used, then one error
    assert said == f"database: sqlite:///{settings.data_dir.resolve()}/assay.db"
    assert error.startswith("error: scrub stopped: filesystem storage:")
    path.rmdir()
    path.write_bytes(b"bbb")
    # What was checked before the failure keeps its time; the next run starts with the
    # blobs never scrubbed, the failed one among them.
    pending = {d for d in (first, second) if blob_row(service, d).scrubbed_at is None}
    assert second in pending
    order = []
    assert scrub(service, limit=1, progress=lambda p: order.append(p.digest)).clean
    assert len(set(order)) == 1 and set(order) <= pending

