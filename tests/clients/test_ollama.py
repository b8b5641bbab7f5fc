"""The Ollama client's push and pull, replayed exactly (tests/support/ollama_replay.py), against a
real ``assay serve`` with the real Gemma 3 270M Q4_K_M GGUF (253,113,024 bytes)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.models import GEMMA_DIGEST, GEMMA_SHA256, GEMMA_SIZE
from tests.support.ollama_replay import (
    DOCKER_CONFIG_V1,
    DOCKER_MANIFEST_V2,
    GEMMA3_TEMPLATE,
    MB,
    MEDIA_LICENSE,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    OllamaProtocolError,
    Trace,
    gemma3_params_layer,
    go_values_encode,
    ollama_config,
    ollama_probe_blob,
    ollama_pull,
    ollama_push,
    ollama_upload_to,
)
from tests.support.processes import start_distribution

pytestmark = pytest.mark.clients

MODEL = "library/gemma3"
TAG = "270m"
# 253,113,024 / 16 < 100 MB, so parts are clamped to 100 MB: 100 MB, 100 MB, the rest.
EXPECTED_PARTS = [(0, 100 * MB), (100 * MB, 100 * MB), (200 * MB, GEMMA_SIZE - 200 * MB)]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_path(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def is_absolute(url: str | None) -> bool:
    parts = urlsplit(url or "")
    return bool(parts.scheme and parts.netloc)


@pytest.fixture(scope="module")
def pushed(assay_server_module, gemma_gguf):
    """Gemma pushed once, the way ``ollama push --insecure HOST/library/gemma3:270m`` does."""
    server = assay_server_module
    layers = [
        (MEDIA_MODEL, gemma_gguf),
        (MEDIA_TEMPLATE, GEMMA3_TEMPLATE),
        (MEDIA_PARAMS, gemma3_params_layer()),
    ]
    trace = Trace()
    digest = ollama_push(server.url, MODEL, TAG, layers, ollama_config(), trace=trace)
    config = json.loads(trace.manifest_bytes)["config"]
    return SimpleNamespace(server=server, trace=trace, digest=digest, config=config,
                           layers=trace.manifest["layers"], sources=layers, gguf=gemma_gguf)


def test_push_conversation(pushed):
    trace = pushed.trace
    manifest = trace.manifest
    assert manifest["mediaType"] == DOCKER_MANIFEST_V2
    assert manifest["config"]["mediaType"] == DOCKER_CONFIG_V1
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        MEDIA_MODEL, MEDIA_TEMPLATE, MEDIA_PARAMS]
    assert manifest["layers"][0]["digest"] == GEMMA_DIGEST
    assert not trace.skipped and not trace.mounted, trace.dump()

    # The GGUF went up as 3 sequential PATCHes of 100 MB, 100 MB and the rest.
    assert trace.parts[GEMMA_DIGEST] == EXPECTED_PARTS
    patches = [e for e in trace.find("PATCH") if int(e.request_headers["content-length"]) > MB]
    assert [e.request_headers["content-range"] for e in patches] == [
        f"{off}-{off + size - 1}" for off, size in EXPECTED_PARTS], trace.dump()
    for exchange in trace.find("PATCH"):
        assert exchange.status == 202, f"PATCH must answer 202:\n{exchange}"
        location = exchange.response_headers.get("location")
        assert is_absolute(location), f"PATCH 202 needs an absolute Location:\n{exchange}"
    for exchange in trace.find("POST"):
        assert exchange.status == 202, f"POST must answer 202:\n{exchange}"
        location = (exchange.response_headers.get("docker-upload-location")
                    or exchange.response_headers.get("location"))
        assert is_absolute(location), f"POST 202 needs an absolute Location:\n{exchange}"

    # Commits: PUT <location>?digest=..&etag=<md5>-<n>, answered 201 with the digest.
    commits = trace.find("PUT", "/blobs/uploads/")
    assert len(commits) == 4, trace.dump()  # 3 layers + config
    for exchange in commits:
        query = parse_qs(urlsplit(exchange.url).query)
        assert "etag" in query and "digest" in query, exchange
        assert exchange.status == 201, f"blob commit must answer 201:\n{exchange}"
        assert exchange.response_headers.get("docker-content-digest") == query["digest"][0], (
            f"blob commit must echo Docker-Content-Digest:\n{exchange}")
    gguf_commit = next(e for e in commits if GEMMA_DIGEST in parse_qs(urlsplit(e.url).query)
                       ["digest"])
    assert parse_qs(urlsplit(gguf_commit.url).query)["etag"][0].endswith("-3")

    (manifest_put,) = trace.find("PUT", f"/manifests/{TAG}")
    assert manifest_put.status == 201, manifest_put
    assert manifest_put.request_headers["content-type"] == DOCKER_MANIFEST_V2
    assert manifest_put.response_headers.get("docker-content-digest") == pushed.digest, (
        manifest_put)


def test_pull_back_byte_identical(pushed, tmp_path):
    trace = Trace()
    paths = ollama_pull(pushed.server.url, MODEL, TAG, tmp_path / "pulled", trace=trace)

    assert trace.manifest_bytes == pushed.trace.manifest_bytes, (
        "the manifest must come back byte for byte")
    expected = {layer["digest"] for layer in pushed.layers} | {pushed.config["digest"]}
    assert set(paths) == expected
    for digest, path in paths.items():
        assert f"sha256:{sha256_path(path)}" == digest
    assert paths[GEMMA_DIGEST].stat().st_size == GEMMA_SIZE
    assert sha256_path(paths[GEMMA_DIGEST]) == GEMMA_SHA256
    assert trace.parts[GEMMA_DIGEST] == EXPECTED_PARTS

    (manifest_get,) = trace.find("GET", f"/manifests/{TAG}")
    assert manifest_get.request_headers["accept"] == DOCKER_MANIFEST_V2
    assert manifest_get.response_headers.get("content-type") == DOCKER_MANIFEST_V2

    # The part downloads: Range honoured exactly (206), never an Authorization header.
    ranged = [e for e in trace.exchanges if "range" in e.request_headers
              and e.status not in (301, 302, 303, 307, 308)]
    assert len(ranged) == sum(len(parts) for parts in trace.parts.values()), trace.dump()
    for exchange in ranged:
        assert "authorization" not in exchange.request_headers, exchange
        start, end = exchange.request_headers["range"].removeprefix("bytes=").split("-")
        assert exchange.status == 206, f"Range must be answered 206:\n{exchange}"
        assert exchange.response_headers.get("content-range", "").startswith(
            f"bytes {start}-{end}/"), exchange
        assert exchange.response_headers.get("content-length") == str(int(end) - int(start) + 1)


def test_head_content_length_exact(pushed):
    blobs = [*pushed.layers, pushed.config]
    with httpx.Client() as client:
        for blob in blobs:
            resp = client.head(f"{pushed.server.url}/v2/{MODEL}/blobs/{blob['digest']}")
            assert resp.status_code == 200, resp
            assert resp.headers.get("content-length") == str(blob["size"]), resp.headers
            assert resp.headers.get("docker-content-digest") == blob["digest"], resp.headers


def test_blob_get_carries_location(pushed):
    """Without a Location on the blob GET, Ollama fails with 'no Location header'."""
    url = f"{pushed.server.url}/v2/{MODEL}/blobs/{GEMMA_DIGEST}"
    with httpx.Client() as client, client.stream("GET", url) as resp:
        assert resp.status_code in (200, 307), resp
        assert resp.headers.get("location"), f"no Location header: {dict(resp.headers)}"


def test_second_push_skips_every_blob(pushed):
    trace = Trace()
    digest = ollama_push(pushed.server.url, MODEL, TAG, pushed.sources, ollama_config(),
                         trace=trace)
    assert digest == pushed.digest
    assert len(trace.skipped) == 4, trace.dump()  # 3 layers + config: HEAD < 400 -> skip
    assert not trace.find("POST") and not trace.find("PATCH"), trace.dump()


def test_tensor_probe(pushed, tmp_path):
    base = pushed.server.url
    existing = next(layer for layer in pushed.layers if layer["mediaType"] == MEDIA_PARAMS)
    resp = ollama_probe_blob(base, MODEL, existing["digest"], existing["size"])
    assert resp.status_code == 201, (
        f"POST ?digest= of an existing blob must answer 201, got {resp.status_code} "
        f"{dict(resp.headers)} {resp.content[:300]!r}")

    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = f"sha256:{sha256_hex(data)}"
    resp = ollama_probe_blob(base, MODEL, digest, len(data))
    assert resp.status_code == 202, (
        f"POST ?digest= with an empty body for a missing blob must answer 202 (never a "
        f"zero-byte monolithic upload), got {resp.status_code} {dict(resp.headers)} "
        f"{resp.content[:300]!r}")
    location = resp.headers.get("docker-upload-location") or resp.headers.get("location")
    assert is_absolute(location), f"202 needs an absolute Location: {dict(resp.headers)}"
    head = httpx.head(f"{base}/v2/{MODEL}/blobs/{digest}")
    assert head.status_code == 404, "the probe must not have created the blob"

    # The session it opened is usable the Ollama way (PATCH parts, PUT ?digest=&etag=).
    commit = ollama_upload_to(location, "application/vnd.ollama.image.tensor", data)
    assert commit.status_code == 201, commit
    head = httpx.head(f"{base}/v2/{MODEL}/blobs/{digest}")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))


def test_mount_from_other_repository(pushed, tmp_path):
    base = pushed.server.url
    source, dest = "team/source", "team/dest"
    layers = [
        (MEDIA_MODEL, os.urandom(2 * 1024 * 1024)),
        (MEDIA_SYSTEM, b"You are a test."),
        (MEDIA_LICENSE, b"Apache-2.0\n"),
    ]
    config = ollama_config(model_family="llama", model_type="1M", file_type="F16")
    ollama_push(base, source, "v1", layers, config)

    blob_digests = [f"sha256:{sha256_hex(data)}" for _, data in layers]
    for digest in blob_digests:
        resp = httpx.head(f"{base}/v2/{dest}/blobs/{digest}")
        assert resp.status_code == 404, (
            f"a blob never pushed or mounted into {dest} must be 404 there, got "
            f"{resp.status_code}")

    trace = Trace()
    digest = ollama_push(base, dest, "v1", layers, config, mount_from=source, trace=trace)
    posts = trace.find("POST")
    assert posts and all(e.status == 201 for e in posts), trace.dump()
    assert all(go_values_encode([("from", source)]) in e.url for e in posts)
    assert sorted(trace.mounted) == sorted([*blob_digests, trace.manifest["config"]["digest"]])
    assert not trace.find("PATCH") and not trace.find("PUT", "/blobs/uploads/"), (
        "nothing may be sent after a 201 mount:\n" + trace.dump())
    assert trace.find("PUT", "/manifests/v1")[0].status == 201

    pulled = ollama_pull(base, dest, "v1", tmp_path / "dest")
    for (_, data), blob_digest in zip(layers, blob_digests, strict=True):
        assert pulled[blob_digest].read_bytes() == data
    assert digest == f"sha256:{sha256_hex((tmp_path / 'dest' / 'manifest.json').read_bytes())}"

    # The 253 MB GGUF mounts across repositories without a byte being sent.
    trace = Trace()
    ollama_push(base, "mirror/gemma3", TAG, [
        (MEDIA_MODEL, pushed.gguf),
        (MEDIA_TEMPLATE, GEMMA3_TEMPLATE),
        (MEDIA_PARAMS, gemma3_params_layer()),
    ], ollama_config(), mount_from=MODEL, trace=trace)
    assert GEMMA_DIGEST in trace.mounted, trace.dump()
    assert not trace.find("PATCH"), trace.dump()
    head = httpx.head(f"{base}/v2/mirror/gemma3/blobs/{GEMMA_DIGEST}")
    assert head.status_code == 200 and head.headers["content-length"] == str(GEMMA_SIZE)


def test_oci_manifest_served_to_docker_only_accept(pushed):
    """Ollama's Accept lists only the Docker type; stored manifests are served regardless."""
    base = pushed.server.url
    config = b"{}"
    config_digest = f"sha256:{sha256_hex(config)}"
    with httpx.Client(base_url=base) as client:
        resp = client.post(f"/v2/{MODEL}/blobs/uploads/")
        assert resp.status_code == 202, resp.text
        resp = client.put(resp.headers["location"], params={"digest": config_digest},
                          content=config)
        assert resp.status_code == 201, resp.text
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.example.test",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                       "digest": config_digest, "size": len(config)},
            "layers": [pushed.layers[1]],
        }).encode()
        resp = client.put(f"/v2/{MODEL}/manifests/oci",
                          headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                          content=manifest)
        assert resp.status_code == 201, resp.text
        resp = client.get(f"/v2/{MODEL}/manifests/oci", headers={"Accept": DOCKER_MANIFEST_V2})
        assert resp.status_code == 200, resp.text
        assert resp.content == manifest


def test_replay_reproduces_known_distribution_failure(tmp_path):
    """Control for the replay's fidelity: against CNCF Distribution 2.8 the real Ollama push
    works and the pull fails with 'no Location header' (its blob GET is a plain 200)."""
    try:
        registry = start_distribution(tmp_path / "distribution")
    except RuntimeError as exc:
        pytest.fail(f"{exc}; real-client tests must not be skipped", pytrace=False)
    try:
        layers = [(MEDIA_MODEL, os.urandom(4096)), (MEDIA_PARAMS, gemma3_params_layer())]
        ollama_push(registry.url, "a/b", "t", layers, ollama_config())
        with pytest.raises(OllamaProtocolError, match="no Location header in response"):
            ollama_pull(registry.url, "a/b", "t", tmp_path / "out")
    finally:
        registry.stop()
