"""The team deployment, as real processes: two ``assay serve`` replicas and two ``assay
worker`` processes on one PostgreSQL server and one S3 server (moto), all on loopback
(the workers join for the verification test).

What scaling out must not break:

- a chunked upload whose PATCHes alternate between the replicas completes with the right
  digest, and whatever one replica commits the other serves at once;
- the same blob pushed concurrently through both replicas is stored once, and no upload
  data is left behind;
- each verification job is claimed by exactly one worker, once, and both workers share
  the queue;
- a replica killed (SIGKILL) mid-upload loses nothing committed, and the client resumes
  the same upload on the other replica from the last acknowledged offset.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support.oci import LAYER, OCI_CONFIG, OCI_MANIFEST, descriptor
from tests.support.ollama_replay import MEDIA_MODEL, ollama_config, ollama_push
from tests.support.processes import assay_command
from tests.support.topology import Topology, start_topology
from tests.support.workers import wait_status

MiB = 1 << 20
# The upload write lease: a replica killed mid-PATCH holds it until it lapses.
LEASE_SECONDS = 3
ENV = {
    "ASSAY_UPLOAD_LEASE_SECONDS": str(LEASE_SECONDS),
    "ASSAY_GATE": "true",  # pulls by tag wait for verification, as in production
    "ASSAY_VERIFY_MAX_TOKENS": "8",  # the job, not the generation, is under test here
    "ASSAY_VERIFY_THREADS": "1",  # two workers on two cores
    "ASSAY_JOB_POLL_SECONDS": "0.2",
    "ASSAY_FSYNC": "false",
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def path_of(location: str) -> str:
    """The path and query of a Location header: valid on every replica."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def with_digest(location: str, digest: str) -> str:
    return location + ("&" if "?" in location else "?") + f"digest={digest}"


def start_upload(server, name: str) -> str:
    resp = httpx.post(f"{server.url}/v2/{name}/blobs/uploads/", timeout=30)
    assert resp.status_code == 202, resp.text
    return path_of(resp.headers["Location"])


def patch(server, location: str, chunk: bytes, offset: int) -> httpx.Response:
    return httpx.patch(f"{server.url}{location}", content=chunk, timeout=60, headers={
        "Content-Type": "application/octet-stream",
        "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})


def finish(server, location: str, digest: str) -> httpx.Response:
    return httpx.put(f"{server.url}{with_digest(location, digest)}", timeout=60)


def push_manifest(server, name: str, tag: str, config: bytes, layers: list[bytes]) -> str:
    body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [descriptor(LAYER, layer) for layer in layers]}
    data = json.dumps(body).encode()
    resp = httpx.put(f"{server.url}/v2/{name}/manifests/{tag}", content=data, timeout=30,
                     headers={"Content-Type": OCI_MANIFEST})
    assert resp.status_code == 201, resp.text
    return resp.headers["Docker-Content-Digest"]


def push_blob(server, name: str, data: bytes) -> str:
    digest = sha256(data)
    resp = httpx.post(f"{server.url}/v2/{name}/blobs/uploads/?digest={digest}", content=data,
                      timeout=60, headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 201, resp.text
    return digest


def get_blob(server, name: str, digest: str) -> bytes:
    resp = httpx.get(f"{server.url}/v2/{name}/blobs/{digest}", timeout=60,
                     follow_redirects=True)
    assert resp.status_code == 200, f"GET {digest} on {server.url}: {resp.status_code}"
    return resp.content


def sql(topo: Topology, query: str, **params) -> list:
    engine = create_engine(topo.database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(query), params))
    finally:
        engine.dispose()


def s3_keys(topo: Topology, prefix: str) -> list[str]:
    pages = topo.s3.client().get_paginator("list_objects_v2").paginate(
        Bucket=topo.bucket, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


@pytest.fixture(scope="module")
def topo(postgres_server, s3_server, tmp_path_factory, request):
    """Two replicas and two workers on one PostgreSQL database and one bucket."""
    t = start_topology(tmp_path_factory.mktemp("topology"), postgres_server, s3_server,
                       registries=2, env=ENV)  # the worker test starts the workers
    try:
        yield t
    finally:
        t.close()


# ------------------------------------------------------------------------- uploads


def test_chunked_upload_alternating_between_replicas(topo):
    a, b = topo.registries[:2]
    name = "team/alternating"
    data = os.urandom(5 * MiB + 321)
    cuts = [0, 1 * MiB, 1 * MiB + 7, 3 * MiB, 4 * MiB + 1, len(data)]
    location = start_upload(a, name)
    for i, (start, end) in enumerate(zip(cuts, cuts[1:], strict=False)):
        server = (b, a)[i % 2]  # b first: the session was opened on a
        resp = patch(server, location, data[start:end], start)
        assert resp.status_code == 202, f"PATCH {i} on {server.url}: {resp.text}"
        assert resp.headers["Range"] == f"0-{end - 1}"
        location = path_of(resp.headers["Location"])
    # Either replica reports where the upload stands.
    status = httpx.get(f"{a.url}{location}", timeout=30)
    assert status.status_code == 204 and status.headers["Range"] == f"0-{len(data) - 1}"

    digest = sha256(data)
    resp = finish(b, location, digest)
    assert resp.status_code == 201, resp.text
    assert resp.headers["Docker-Content-Digest"] == digest
    for server in (a, b):
        assert get_blob(server, name, digest) == data

    # A manifest committed on one replica is served by the other at once.
    config = b'{"replicas": "alternating"}'
    push_blob(a, name, config)
    manifest = push_manifest(a, name, "v1", config, [data])
    resp = httpx.get(f"{b.url}/v2/{name}/manifests/v1", timeout=30,
                     headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200 and resp.headers["Docker-Content-Digest"] == manifest
    assert httpx.get(f"{b.url}/v2/{name}/tags/list", timeout=30).json()["tags"] == ["v1"]


def test_same_blob_through_both_replicas_concurrently_is_stored_once(topo):
    a, b = topo.registries[:2]
    data = os.urandom(6 * MiB + 5)
    digest = sha256(data)
    half = len(data) // 2
    clients = 6
    names = [f"team/same-{i % 3}" for i in range(clients)]
    # Everyone uploads both halves, then all commit at the same moment.
    ready = threading.Barrier(clients, timeout=60)
    results: list = [None] * clients

    def push(i: int) -> None:
        try:
            first, second = (a, b) if i % 2 else (b, a)
            location = start_upload(first, names[i])
            resp = patch(first, location, data[:half], 0)
            assert resp.status_code == 202, resp.text
            location = path_of(resp.headers["Location"])
            resp = patch(second, location, data[half:], half)
            assert resp.status_code == 202, resp.text
            location = path_of(resp.headers["Location"])
            ready.wait()
            resp = finish(second, location, digest)
            results[i] = (resp.status_code, resp.headers.get("Docker-Content-Digest"),
                          resp.text)
        except BaseException as exc:  # reported below, in the test's thread
            results[i] = exc

    threads = [threading.Thread(target=push, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i, result in enumerate(results):
        assert not isinstance(result, BaseException), f"client {i}: {result!r}"
        assert result[:2] == (201, digest), f"client {i}: {result}"

    hex_ = digest.split(":")[1]
    assert [k for k in s3_keys(topo, "blobs/") if k.endswith(hex_)] == \
        [f"blobs/sha256/{hex_[:2]}/{hex_}"]
    assert sql(topo, "SELECT count(*) FROM blobs WHERE digest = :d", d=digest)[0][0] == 1
    linked = sql(topo, "SELECT r.name FROM repository_blobs rb JOIN repositories r "
                       "ON r.id = rb.repository_id WHERE rb.digest = :d", d=digest)
    assert sorted(r[0] for r in linked) == sorted(set(names))
    # Every session was committed: no session row and no upload data remain.
    assert sql(topo, "SELECT count(*) FROM uploads")[0][0] == 0
    assert s3_keys(topo, "uploads/") == []
    for name in set(names):
        for server in (a, b):
            assert hashlib.sha256(get_blob(server, name, digest)).hexdigest() == hex_


# ------------------------------------------------------------------------- workers


def test_each_job_is_claimed_by_exactly_one_worker(topo, gemma_gguf):
    """Models pushed through both replicas are each verified once, by one worker; the
    two workers share the queue. The models are queued before the workers start, so
    both find work waiting whatever the speed of a push against a verification."""
    a, b = topo.registries[:2]
    count = 4
    pushed = {}
    for i in range(count):
        server = (a, b)[i % 2]
        name = f"team/verified-{i}"
        config = ollama_config(model_type=f"268.10M-{i}")  # a distinct manifest per model
        pushed[name] = ollama_push(server.url, name, "latest", [(MEDIA_MODEL, gemma_gguf)],
                                   config)
    assert sql(topo, "SELECT count(*) FROM jobs WHERE kind = 'verify' AND status = 'queued'"
               )[0][0] == count
    for _ in range(2):
        topo.add_worker()
    for name in pushed:
        state = wait_status(b, name, "latest", ("ready",), timeout=300)
        assert state["digest"] == pushed[name]

    jobs = sql(topo, "SELECT status, attempts, locked_by, payload FROM jobs "
                     "WHERE kind = 'verify'")
    assert len(jobs) == count, jobs
    assert all(j.status == "done" and j.attempts == 1 for j in jobs), jobs
    # locked_by is "<prefix>@<host>:<pid>:<random>": one id per worker process.
    workers = {j.locked_by.rsplit(":", 1)[0] for j in jobs}
    assert len(workers) == 2, f"one worker took every job: {workers}"
    verdicts = sql(topo, "SELECT m.digest, count(*) FROM verifications v JOIN manifests m "
                         "ON m.id = v.manifest_id GROUP BY m.digest")
    assert {d: n for d, n in verdicts} == {d: 1 for d in pushed.values()}


# ------------------------------------------------------------------- replica failure


def test_replica_killed_mid_upload_client_resumes_on_the_other(topo):
    survivor = topo.registries[0]
    victim = topo.add_registry()
    name = "team/resumed"

    # Committed through the victim before it dies: must survive it.
    config, layer = b'{"before": "kill"}', os.urandom(256 * 1024)
    push_blob(victim, name, config)
    push_blob(victim, name, layer)
    before = push_manifest(victim, name, "before", config, [layer])

    data = os.urandom(4 * MiB + 99)
    first = 1 * MiB
    location = start_upload(victim, name)
    resp = patch(victim, location, data[:first], 0)
    assert resp.status_code == 202, resp.text
    location = path_of(resp.headers["Location"])

    # The second chunk is cut off mid-body by a SIGKILL of the replica receiving it.
    streaming = threading.Event()

    def body():
        yield data[first:first + 512 * 1024]
        streaming.set()
        for _ in range(600):  # never finishes on its own
            time.sleep(0.05)
            yield b"\0" * 1024

    failure: list = []

    def send() -> None:
        try:
            httpx.patch(f"{victim.url}{location}", content=body(), timeout=60, headers={
                "Content-Type": "application/octet-stream"})
        except httpx.HTTPError as exc:
            failure.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    assert streaming.wait(30)
    # Let the bytes reach the replica (it holds the write lease while they stream).
    time.sleep(0.5)
    victim.kill()
    sender.join(60)
    assert failure, "the PATCH to the killed replica should have failed"

    # The client asks the survivor where the upload stands: the acknowledged chunk only.
    status = httpx.get(f"{survivor.url}{location}", timeout=30)
    assert status.status_code == 204, status.text
    assert status.headers["Range"] == f"0-{first - 1}"

    # The dead replica's lease blocks writes until it lapses (416 names the offset);
    # a client retries, as it does for any 416, and then resumes where it stood.
    offset, until = first, time.monotonic() + LEASE_SECONDS + 30
    while True:
        resp = patch(survivor, location, data[offset:], offset)
        if resp.status_code != 416 or time.monotonic() > until:
            break
        assert resp.headers["Range"] == f"0-{first - 1}"
        time.sleep(0.5)
    assert resp.status_code == 202, resp.text
    assert resp.headers["Range"] == f"0-{len(data) - 1}"
    resp = finish(survivor, path_of(resp.headers["Location"]), sha256(data))
    assert resp.status_code == 201, resp.text
    assert get_blob(survivor, name, sha256(data)) == data

    # Nothing committed before the kill was lost.
    resp = httpx.get(f"{survivor.url}/v2/{name}/manifests/before", timeout=30,
                     headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200 and resp.headers["Docker-Content-Digest"] == before
    assert get_blob(survivor, name, sha256(layer)) == layer
    assert get_blob(topo.registries[1], name, sha256(data)) == data


# ------------------------------------------------------------------------- online GC


def test_gc_process_during_pushes_through_both_replicas(topo):
    """``assay gc --grace-seconds 0`` runs over and over, as its own process, while two
    clients push images through the two replicas and delete some again. Every manifest
    the registry accepted keeps all of its blobs; what deleted manifests alone used goes."""
    a, b = topo.registries[:2]
    name = "team/gc-online"
    env = {**os.environ, **topo.settings_env()}
    stop, runs = threading.Event(), []

    def collect_forever() -> None:
        while not stop.is_set():
            proc = subprocess.run([*assay_command(), "gc", "--grace-seconds", "0",
                                   "--data-dir", str(topo.root / "gc")],
                                  env=env, capture_output=True, text=True, timeout=120)
            runs.append(proc)

    kept: dict[str, list[bytes]] = {}
    deleted: list[bytes] = []
    errors: list = []

    def pusher(server, tag_prefix: str) -> None:
        try:
            i = -1
            # At least 6 images, and on until gc has finished 3 runs meanwhile.
            while (i := i + 1) < 6 or (len(runs) < 3 and i < 200):
                config = f'{{"{tag_prefix}": {i}}}'.encode()
                layers = [b"shared by every image", os.urandom(64 * 1024)]
                digest = None
                for _attempt in range(5):  # GC may take a blob before the manifest is in
                    for blob in (config, *layers):
                        push_blob(server, name, blob)
                    body = json.dumps({
                        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": descriptor(OCI_CONFIG, config),
                        "layers": [descriptor(LAYER, x) for x in layers]}).encode()
                    resp = httpx.put(f"{server.url}/v2/{name}/manifests/{tag_prefix}-{i}",
                                     content=body, timeout=30,
                                     headers={"Content-Type": OCI_MANIFEST})
                    if resp.status_code == 201:
                        digest = resp.headers["Docker-Content-Digest"]
                        break
                    assert resp.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN", \
                        resp.text
                assert digest, "the manifest never got in"
                if i % 2:
                    resp = httpx.delete(f"{server.url}/v2/{name}/manifests/{digest}",
                                        timeout=30)
                    assert resp.status_code == 202, resp.text
                    deleted.append(layers[1])
                else:
                    kept[f"{tag_prefix}-{i}"] = [config, *layers]
        except BaseException as exc:
            errors.append(exc)

    collector = threading.Thread(target=collect_forever)
    collector.start()
    try:
        pushers = [threading.Thread(target=pusher, args=(server, prefix))
                   for server, prefix in ((a, "a"), (b, "b"))]
        for t in pushers:
            t.start()
        for t in pushers:
            t.join(180)
    finally:
        stop.set()
        collector.join(180)
    assert not errors, errors
    assert runs and all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert len(runs) >= 3, "gc should have run during the pushes"

    # One more collection after the pushes: everything deleted manifests alone used goes.
    final = subprocess.run([*assay_command(), "gc", "--grace-seconds", "0", "--data-dir",
                            str(topo.root / "gc")], env=env, capture_output=True, text=True,
                           timeout=120)
    assert final.returncode == 0, final.stderr
    for tag, blobs in kept.items():
        for server in (a, b):
            resp = httpx.get(f"{server.url}/v2/{name}/manifests/{tag}", timeout=30,
                             headers={"Accept": OCI_MANIFEST})
            assert resp.status_code == 200, f"{tag}: {resp.text}"
        for blob in blobs:
            assert get_blob(a, name, sha256(blob)) == blob
    stored = set(s3_keys(topo, "blobs/"))
    for layer in deleted:
        hex_ = sha256(layer).split(":")[1]
        assert f"blobs/sha256/{hex_[:2]}/{hex_}" not in stored
