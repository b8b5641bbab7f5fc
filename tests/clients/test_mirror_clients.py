"""Real clients pulling through mirror namespaces of a real ``assay serve``, with local
upstreams only: a second ``assay serve`` as a Hugging Face Hub (read with
``huggingface_hub`` in its own process), and Debian's CNCF Distribution holding a model
pushed like ``ollama push`` (pulled with ``assay pull``). Each upstream is stopped once the
model is cached: the mirror keeps serving it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.hf_clients import run_client
from tests.support.mlx_models import make_mlx_model
from tests.support.models import sha256_file
from tests.support.ollama_replay import (
    GEMMA3_TEMPLATE,
    MEDIA_MODEL,
    MEDIA_TEMPLATE,
    ollama_config,
    ollama_push,
)
from tests.support.processes import start_assay, start_distribution
from tests.support.workers import GATE_ON, wait_status, wait_until

pytestmark = pytest.mark.clients

TINY_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")

SNAPSHOT = f"""
import os
from huggingface_hub import HfApi, snapshot_download
info = HfApi().model_info("hfm/tiny")
path = snapshot_download("hfm/tiny")
emit(sha=info.sha, files=sorted(s.rfilename for s in info.siblings),
     hashes={{name: sha256(os.path.join(path, name)) for name in {TINY_FILES!r}}})
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_mlx_model(tmp_path_factory.mktemp("mirror-model") / "tiny",
                          model_args={"intermediate_size": 2048})


@pytest.fixture
def mirror(tmp_path):
    server = start_assay(tmp_path / "mirror", env={"ASSAY_OUTBOUND_ALLOW": "127.0.0.1"})
    yield server
    server.stop()


def _add_mirror(server, ns: str, kind: str, url: str) -> None:
    r = httpx.put(f"{server.url}/api/v1/mirrors/{ns}", json={"kind": kind, "url": url})
    assert r.status_code == 200, r.text


def test_huggingface_hub_reads_a_hub_upstream_through_the_mirror_and_offline(
        mirror, tiny, cli, tmp_path):
    upstream = start_assay(tmp_path / "upstream")
    try:
        cli("push", tiny, f"{upstream.host_port}/team/tiny:main", "-q")
        _add_mirror(mirror, "hfm", "hf", f"{upstream.url}/team")
        first = run_client(mirror.url, tmp_path / "home1", SNAPSHOT).check()
    finally:
        upstream.stop()
    source = {name: sha256_file(tiny / name) for name in TINY_FILES}
    assert first["hashes"] == source
    assert set(TINY_FILES) <= set(first["files"])
    # The upstream is gone: a client with an empty cache still gets every file, and OCI
    # clients read the same revision as a ModelPack manifest.
    again = run_client(mirror.url, tmp_path / "home2", SNAPSHOT).check()
    assert again == first
    out = tmp_path / "pulled"
    cli("pull", f"{mirror.host_port}/hfm/tiny:main", "-o", out, "-q")
    assert {name: sha256_file(out / name) for name in TINY_FILES} == source


def test_assay_pull_through_a_mirror_of_distribution_then_offline(mirror, cli, tmp_path):
    upstream = start_distribution(tmp_path / "distribution")
    weights = bytes(range(256)) * 4096
    layers = [(MEDIA_MODEL, weights), (MEDIA_TEMPLATE, GEMMA3_TEMPLATE)]
    try:
        digest = ollama_push(upstream.url, "library/tiny", "v1", layers, ollama_config())
        _add_mirror(mirror, "om", "ollama", f"{upstream.url}/library")
        first = tmp_path / "first"
        cli("pull", f"{mirror.host_port}/om/tiny:v1", "-o", first, "-q")
    finally:
        upstream.stop()
    second = tmp_path / "second"
    cli("pull", f"{mirror.host_port}/om/tiny:v1", "-o", second, "-q")
    for out in (first, second):
        ggufs = list(out.glob("*.gguf"))
        assert len(ggufs) == 1 and ggufs[0].read_bytes() == weights, list(out.iterdir())
    r = httpx.get(f"{mirror.url}/api/v1/repositories/om/tiny/tags/v1")
    assert r.status_code == 200 and r.json()["digest"] == digest, r.text
    r = httpx.get(f"{mirror.url}/v2/om/tiny/manifests/v1")
    assert r.headers["Docker-Content-Digest"] == digest
    assert "Warning" not in r.headers  # fresh for an hour: the upstream was not asked


def test_verify_first_holds_a_first_pull_and_serve_first_flags_a_failure(tmp_path):
    """With a worker and the gate on: a verify-first mirror answers a first pull with "being
    fetched", its fill job fetches the model and verification fails it, so it is never
    served; a serve-first mirror of the same upstream serves it at once and keeps serving
    it once verification failed, flagged in the REST view."""
    upstream = start_distribution(tmp_path / "distribution")
    server = start_assay(tmp_path / "mirror", env={
        "ASSAY_OUTBOUND_ALLOW": "127.0.0.1", "ASSAY_WORKERS": "1", **GATE_ON})
    try:
        weights = b"not a GGUF file " * 4096
        ollama_push(upstream.url, "library/broken", "v1", [(MEDIA_MODEL, weights)],
                    ollama_config())
        r = httpx.put(f"{server.url}/api/v1/mirrors/vf", json={
            "kind": "ollama", "url": f"{upstream.url}/library", "verify_first": True})
        assert r.status_code == 200, r.text
        _add_mirror(server, "sf", "ollama", f"{upstream.url}/library")

        first = httpx.get(f"{server.url}/v2/vf/broken/manifests/v1")
        assert first.status_code == 404, first.text
        assert "being fetched" in first.json()["errors"][0]["message"]
        # The fill job fetches it (no client pulls its blobs), then it is verified.
        wait_until(lambda: httpx.get(f"{server.url}/api/v1/repositories/vf/broken/tags/v1"
                                     ).status_code == 200, 60, "the fill job to store it",
                   interval=0.2)
        wait_status(server, "vf/broken", "v1", ("failed",), timeout=120)
        again = httpx.get(f"{server.url}/v2/vf/broken/manifests/v1")
        assert again.status_code == 404 and "failed verification" in again.text

        served = httpx.get(f"{server.url}/v2/sf/broken/manifests/v1")
        assert served.status_code == 200, served.text
        for d in [served.json()["config"], *served.json()["layers"]]:
            assert httpx.get(f"{server.url}/v2/sf/broken/blobs/{d['digest']}",
                             timeout=60).status_code == 200
        wait_status(server, "sf/broken", "v1", ("failed",), timeout=120)
        still = httpx.get(f"{server.url}/v2/sf/broken/manifests/v1")
        assert still.status_code == 200 and still.content == served.content
    finally:
        server.stop()
        upstream.stop()
