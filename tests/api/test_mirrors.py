"""Mirror namespaces against a real upstream: Debian's CNCF Distribution on loopback.

The registry under test is the ASGI app on both stacks; its upstream is a real
``docker-registry`` process, so every fetch goes over a socket through the outbound policy
(opened for loopback with ``outbound_allow``, as an operator would).
"""

from __future__ import annotations

import json
import os
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from registry.app import create_app
from registry.db.tables import manifests, mirror_pending, mirror_tags, utcnow
from registry.errors import BlobUnknown
from registry.maintenance import retention
from tests.support.oci import image_manifest, sha256
from tests.support.ollama_replay import (
    GEMMA3_TEMPLATE,
    MEDIA_MODEL,
    MEDIA_TEMPLATE,
    ollama_config,
    ollama_pull,
    ollama_push,
)
from tests.support.processes import start_distribution

pytestmark = pytest.mark.clients  # needs docker-registry from Debian


@pytest.fixture
def upstream(tmp_path):
    server = start_distribution(tmp_path / "upstream", access_log=True)
    yield server
    server.stop()


@pytest.fixture
def app(settings):
    return create_app(settings.model_copy(update={"outbound_allow": "127.0.0.1"}),
                      run_migrations=False)


def _push(upstream, name: str, tag: str, layers: list[bytes] | None = None):
    """Push an image to Distribution (POST a session, then PUT the bytes: it has no
    monolithic POST); returns (digest, manifest bytes)."""
    layers = layers if layers is not None else [f"layer of {name}:{tag}".encode()]
    config = json.dumps({"tag": tag}).encode()
    with httpx.Client(base_url=upstream.url, timeout=60) as up:
        for blob in [config, *layers]:
            r = up.post(f"/v2/{name}/blobs/uploads/")
            assert r.status_code == 202, r.text
            location = r.headers["Location"]
            sep = "&" if "?" in location else "?"
            r = up.put(f"{location}{sep}digest={sha256(blob)}", content=blob)
            assert r.status_code == 201, r.text
        body = image_manifest(config, layers)
        r = up.put(f"/v2/{name}/manifests/{tag}", content=body,
                   headers={"Content-Type": json.loads(body)["mediaType"]})
        assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"], body


def _mirror(client, upstream, ns="mirror", **extra):
    body = {"kind": "oci", "url": upstream.url, **extra}
    r = client.put(f"/api/v1/mirrors/{ns}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _upstream_blob_path(upstream, digest: str) -> Path:
    hexd = digest.split(":", 1)[1]
    return (upstream.log_path.parent / "data" / "docker" / "registry" / "v2" / "blobs" /
            "sha256" / hexd[:2] / hexd / "data")


def _blob_gets(upstream, digest: str) -> int:
    return sum(1 for line in upstream.log().splitlines()
               if "GET /v2/" in line and f"/blobs/{digest}" in line)


def test_pull_through_stores_once_and_serves_from_cache(client, service, upstream):
    layer = b"weights " * 4096
    digest, body = _push(upstream, "team/thing", "v1", layers=[layer])
    shown = _mirror(client, upstream, refresh_seconds=3600)
    assert shown["kind"] == "oci" and shown["password_set"] is False

    r = client.get("/v2/mirror/team/thing/manifests/v1")
    assert r.status_code == 200 and r.content == body
    assert r.headers["Docker-Content-Digest"] == digest
    doc = json.loads(body)
    for d in [doc["config"], *doc["layers"]]:
        got = client.get(f"/v2/mirror/team/thing/blobs/{d['digest']}")
        assert got.status_code == 200 and sha256(got.content) == d["digest"]
    # Every blob is here: the manifest is an ordinary stored, tagged manifest now.
    stored = service.manifests.get("mirror/team/thing", "v1")
    assert stored.digest == digest and stored.content == body
    assert service.blobs.size("mirror/team/thing", sha256(layer)) == len(layer)
    # Served from the cache: no second upstream fetch, not even a HEAD (fresh for an hour).
    before = upstream.log().count("/v2/team/thing/")
    assert client.get(f"/v2/mirror/team/thing/blobs/{sha256(layer)}").content == layer
    assert client.get("/v2/mirror/team/thing/manifests/v1").content == body
    assert upstream.log().count("/v2/team/thing/") == before


def test_pushes_into_a_mirror_are_refused_and_deletes_allowed(client, upstream):
    _mirror(client, upstream)
    r = client.post("/v2/mirror/x/blobs/uploads/")
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
    assert "mirror" in r.json()["errors"][0]["message"]
    r = client.put("/v2/mirror/x/manifests/v1", content=b"{}",
                   headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 403
    # Another namespace is untouched by the mirror.
    assert client.post("/v2/other/x/blobs/uploads/").status_code == 202


def test_an_unreachable_upstream_leaves_the_cache_served_with_a_warning(client, upstream):
    digest, body = _push(upstream, "team/thing", "v1")
    _mirror(client, upstream, refresh_seconds=0)  # every pull by tag asks the upstream
    assert client.get("/v2/mirror/team/thing/manifests/v1").content == body
    for d in json.loads(body)["layers"] + [json.loads(body)["config"]]:
        client.get(f"/v2/mirror/team/thing/blobs/{d['digest']}")
    upstream.stop()
    r = client.get("/v2/mirror/team/thing/manifests/v1")
    assert r.status_code == 200 and r.content == body
    assert r.headers["Warning"].startswith("110 ")
    # By digest nothing is asked upstream at all: no warning.
    r = client.get(f"/v2/mirror/team/thing/manifests/{digest}")
    assert r.status_code == 200 and "Warning" not in r.headers
    # What was never fetched cannot be served: a clear error, not a 500.
    r = client.get("/v2/mirror/team/other/manifests/v1")
    assert r.status_code == 502, r.text
    assert "upstream" in r.json()["errors"][0]["message"]


def test_a_tampered_upstream_blob_is_refused_and_nothing_is_stored(client, service, live_url,
                                                                  upstream):
    layer = bytes(range(256)) * 8192  # 2 MiB: several chunks
    _, body = _push(upstream, "team/thing", "v1", layers=[layer])
    _mirror(client, upstream)
    path = _upstream_blob_path(upstream, sha256(layer))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with httpx.Client(base_url=live_url, timeout=30) as c:
        assert c.get("/v2/mirror/team/thing/manifests/v1").status_code == 200
        with pytest.raises(httpx.HTTPError):
            r = c.get(f"/v2/mirror/team/thing/blobs/{sha256(layer)}")
            # The answer is cut before its end: the client never gets the whole body.
            assert len(r.content) < len(layer)
            raise httpx.RemoteProtocolError("short body")
    assert service.store.stat(sha256(layer)) is None
    with pytest.raises(BlobUnknown):
        service.blobs.size("mirror/team/thing", sha256(layer))


def test_concurrent_first_pulls_of_a_blob_fetch_it_once(client, live_url, upstream):
    layer = bytes(range(256)) * 16384  # 4 MiB
    _push(upstream, "team/big", "v1", layers=[layer])
    _mirror(client, upstream)
    assert client.get("/v2/mirror/team/big/manifests/v1").status_code == 200
    digest = sha256(layer)
    results: list = []

    def pull():
        with httpx.Client(base_url=live_url, timeout=60) as c:
            r = c.get(f"/v2/mirror/team/big/blobs/{digest}")
            results.append((r.status_code, sha256(r.content)))

    threads = [threading.Thread(target=pull) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert results == [(200, digest)] * 10
    assert _blob_gets(upstream, digest) == 1, upstream.log()[-3000:]


def test_mirror_api_validates_and_never_returns_the_password(client, upstream):
    r = client.put("/api/v1/mirrors/mirror", json={"kind": "oci", "url": upstream.url,
                                                   "username": "bot", "password": "s3cret!"})
    assert r.status_code == 200 and r.json()["password_set"] is True
    assert "s3cret!" not in r.text
    assert "s3cret!" not in client.get("/api/v1/mirrors").text
    # Omitting the password keeps it; the stored value is sealed.
    r = client.put("/api/v1/mirrors/mirror", json={"kind": "oci", "url": upstream.url,
                                                   "username": "bot", "refresh_seconds": 60})
    assert r.json()["password_set"] is True and r.json()["refresh_seconds"] == 60
    svc = client.app.state.registry
    assert svc.mirrors.credentials("mirror") == ("bot", "s3cret!")
    for bad in ({"kind": "svn", "url": upstream.url}, {"kind": "oci", "url": "ftp://x"},
                {"kind": "oci", "url": "http://u:p@host"}, {"kind": "oci"},
                {"kind": "oci", "url": upstream.url, "refresh_seconds": -1}):
        r = client.put("/api/v1/mirrors/m2", json=bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert client.put("/api/v1/mirrors/a/b", json={"kind": "oci", "url": upstream.url}
                      ).status_code in (400, 404)
    assert client.get("/api/v1/mirrors/m2").status_code == 404
    assert client.delete("/api/v1/mirrors/mirror").json() == {"deleted": "mirror"}
    assert client.get("/api/v1/mirrors").json() == {"mirrors": []}


def test_the_ollama_client_pulls_through_a_mirror_of_an_ollama_push(client, service, live_url,
                                                                    upstream, tmp_path):
    """The Ollama replay pushes to Distribution; the replay then pulls through the mirror
    (HEAD for the size, a GET for the Location, parts by Range) and gets identical files.
    An ollama mirror names models as Ollama does: ``mirror/tiny`` is the upstream's
    ``library/tiny`` (the client takes exactly one namespace: ``HOST/mirror/tiny:v1``)."""
    weights = os.urandom(3 * 1024 * 1024)
    layers = [(MEDIA_MODEL, weights), (MEDIA_TEMPLATE, GEMMA3_TEMPLATE)]
    digest = ollama_push(upstream.url, "library/tiny", "v1", layers, ollama_config())
    _mirror(client, upstream, kind="ollama")
    files = ollama_pull(live_url, "mirror/tiny", "v1", tmp_path / "out")
    assert files[sha256(weights)].read_bytes() == weights
    # Stored once, as an ordinary model manifest waiting for its verification.
    stored = service.manifests.get("mirror/tiny", digest)
    assert stored.digest == digest
    r = client.get("/api/v1/repositories/mirror/tiny/tags/v1")
    assert r.status_code == 200 and r.json()["status"] in ("queued", "verifying"), r.text
    assert _blob_gets(upstream, sha256(weights)) == 1


def test_an_upstream_stopped_mid_transfer_fails_the_pull_and_stores_nothing(
        client, service, live_url, upstream, tmp_path):
    layer = os.urandom(48 * 1024 * 1024)
    digest = sha256(layer)
    _push(upstream, "team/big", "v1", layers=[layer])
    _mirror(client, upstream)
    port = upstream.port
    with httpx.Client(base_url=live_url, timeout=60) as c:
        assert c.get("/v2/mirror/team/big/manifests/v1").status_code == 200
        received = 0
        with pytest.raises(httpx.HTTPError), \
                c.stream("GET", f"/v2/mirror/team/big/blobs/{digest}") as r:
            assert r.status_code == 200
            for chunk in r.iter_bytes():
                received += len(chunk)
                if upstream.proc.poll() is None and received >= 1 << 20:
                    upstream.proc.kill()  # the upstream dies with most bytes unsent
                    upstream.proc.wait(10)
        assert received < len(layer)
    assert service.store.stat(digest) is None
    with pytest.raises(BlobUnknown):
        service.blobs.size("mirror/team/big", digest)
    # Back up (same storage, same port): the next pull succeeds and stores it once.
    again = start_distribution(upstream.log_path.parent, port=port)
    try:
        r = client.get(f"/v2/mirror/team/big/blobs/{digest}")
        assert r.status_code == 200 and sha256(r.content) == digest
        assert service.blobs.size("mirror/team/big", digest) == len(layer)
    finally:
        again.stop()


def test_retention_drops_what_nobody_pulled_for_keep_days_and_a_pull_fetches_it_again(
        client, service, upstream):
    old_digest, _ = _push(upstream, "team/thing", "old")
    new_digest, _ = _push(upstream, "team/thing", "new")
    _mirror(client, upstream, keep_days=30)
    for tag in ("old", "new"):
        doc = client.get(f"/v2/mirror/team/thing/manifests/{tag}").json()
        for d in [doc["config"], *doc["layers"]]:
            assert client.get(f"/v2/mirror/team/thing/blobs/{d['digest']}").status_code == 200
    long_ago = utcnow() - timedelta(days=40)
    with service.db.write() as conn:
        conn.execute(update(mirror_tags).where(mirror_tags.c.tag == "old")
                     .values(pulled_at=long_ago))
        conn.execute(update(manifests).where(manifests.c.digest == old_digest)
                     .values(created_at=long_ago))
    planned = retention.plan(service)
    assert [(d.kind, d.reference) for d in planned] == [("tag", "old"),
                                                        ("manifest", old_digest)], planned
    assert "not pulled through the mirror for 30 days" in planned[0].reason
    retention.execute(service, planned)
    assert service.manifests.get("mirror/team/thing", "new").digest == new_digest
    # Gone from the cache, not from the upstream: the next pull fetches it again.
    r = client.get("/v2/mirror/team/thing/manifests/old")
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == old_digest


def test_mirror_storage_counts_against_the_namespace_quota(client, service, upstream):
    small, big = b"s" * 1000, b"b" * 200_000
    _push(upstream, "team/small", "v1", layers=[small])
    _push(upstream, "team/big", "v1", layers=[big])
    _mirror(client, upstream)
    r = client.put("/api/v1/namespaces/mirror", json={"quota_bytes": 100_000})
    assert r.status_code == 200, r.text
    assert client.get("/v2/mirror/team/small/manifests/v1").status_code == 200
    assert client.get(f"/v2/mirror/team/small/blobs/{sha256(small)}").content == small
    assert client.get("/v2/mirror/team/big/manifests/v1").status_code == 200
    r = client.get(f"/v2/mirror/team/big/blobs/{sha256(big)}")
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED", r.text
    assert "quota" in r.json()["errors"][0]["message"]
    assert service.store.stat(sha256(big)) is None


def test_hub_uploads_into_a_mirror_are_refused(client, upstream):
    _mirror(client, upstream)
    r = client.post("/api/repos/create", json={"name": "x", "organization": "mirror",
                                               "type": "model"})
    assert r.status_code == 403 and "a mirror of" in r.headers.get("X-Error-Message", ""), \
        (r.status_code, r.headers, r.text)
    line = json.dumps({"key": "header", "value": {"summary": "s", "description": ""}})
    r = client.post("/api/models/mirror/x/commit/main", content=line.encode() + b"\n",
                    headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 403, r.text
    # Elsewhere the Hub API works as before.
    r = client.post("/api/repos/create", json={"name": "x", "organization": "team",
                                               "type": "model"})
    assert r.status_code == 200, r.text


def test_a_tampered_upstream_manifest_is_a_bad_gateway_and_not_kept(client, service,
                                                                    upstream):
    """The upstream's stored manifest rewritten on its disk: what it sends no longer has the
    digest it announces, so the mirror answers 502 naming the upstream and keeps nothing."""
    digest, body = _push(upstream, "team/bad", "v1")
    _upstream_blob_path(upstream, digest).write_bytes(b'{"schemaVersion": 2, "layers": 7}')
    _mirror(client, upstream)
    for ref in ("v1", digest):
        r = client.get(f"/v2/mirror/team/bad/manifests/{ref}")
        assert r.status_code == 502 and upstream.url in r.text, r.text
    with service.db.read() as conn:
        assert conn.execute(select(mirror_pending)).first() is None


def test_a_hub_client_reads_an_ollama_mirror_it_has_not_cached(client, upstream):
    """The Hub API on a miss fetches the tag and all its blobs first, then serves files."""
    weights = b"w" * 300_000
    ollama_push(upstream.url, "library/tiny", "v1",
                [(MEDIA_MODEL, weights), (MEDIA_TEMPLATE, GEMMA3_TEMPLATE)], ollama_config())
    _mirror(client, upstream, kind="ollama")
    r = client.get("/api/models/mirror/tiny/revision/v1")
    assert r.status_code == 200, r.text
    files = [s["rfilename"] for s in r.json()["siblings"]]
    assert "tiny.gguf" in files and "template" in files, files
    r = client.get("/mirror/tiny/resolve/v1/tiny.gguf")
    assert r.status_code == 200 and r.content == weights
