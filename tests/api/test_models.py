"""Models at push: recognition, model cards read from weight headers, the REST API, and
logical vs. stored sizes. Runs on both stacks (SQLite + filesystem, PostgreSQL + S3)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from safetensors.numpy import save

from tests.support.gguf_files import TINY_PARAMETERS, gguf_bytes
from tests.support.model_artifacts import (
    FILEPATH,
    MODELPACK,
    MODELPACK_CONFIG,
    OLLAMA_CONFIG,
    OLLAMA_MODEL,
    push_manifest,
    push_ollama,
    tar_member,
)
from tests.support.models import GEMMA_DIGEST
from tests.support.oci import DOCKER_MANIFEST, push_blob, push_image, sha256
from tests.support.rest import describe
from tests.support.stacks import POSTGRES_S3


def test_ollama_model_card_served_by_rest(client):
    model = gguf_bytes()
    digest = push_ollama(client, "library/tiny", "latest", model)
    body = describe(client, "library/tiny", "latest")
    # A model is queued for verification the moment it is pushed (no workers run here;
    # the gate is off in the API suite, so the tag serves it anyway).
    job = body.pop("job")
    assert job["status"] == "queued" and job["attempts"] == 0 and job["ahead"] == 0
    assert body.pop("workers") == {"present": 0, "busy": 0, "last_seen_at": None}
    assert (body.pop("status"), body.pop("reason"), body.pop("verification"),
            body.pop("override"), body.pop("served"), body.pop("status_changed_at") is not None
            ) == ("queued", None, None, None, digest, True)
    config_size = len(json.dumps({"model_format": "gguf", "model_family": "llama",
                                  "system": ""}).encode())
    assert body == {
        "repository": "library/tiny", "tag": "latest", "digest": digest,
        "mediaType": DOCKER_MANIFEST, "artifactType": OLLAMA_CONFIG,
        "size": {"logical": len(model) + config_size, "unique": len(model) + config_size},
        "model": {"format": "gguf", "architecture": "llama",
                  "parameter_count": TINY_PARAMETERS, "parameter_label": "2K",
                  "quantization": "F32", "context_length": 2048, "embedding_length": 64,
                  "chat_template": True, "tokenizer_model": "gpt2", "dtypes": ["F32"],
                  "quantization_bits": None, "quantization_group_size": None, "error": None},
    }
    by_digest = describe(client, "library/tiny", digest)
    assert "tag" not in by_digest and "served" not in by_digest
    assert {k: v for k, v in by_digest.items() if k in body} == \
        {k: v for k, v in body.items() if k != "tag"}
    assert by_digest["status"] == "queued"


def test_truncated_gguf_still_pushes_and_the_card_says_why(client):
    push_ollama(client, "library/broken", "latest", gguf_bytes()[:-100])
    model = describe(client, "library/broken", "latest")["model"]
    assert model["format"] == "gguf" and model["architecture"] is None
    assert model["error"].startswith("truncated: tensor 'output_norm.weight' ends at byte")


def test_container_image_is_not_a_model(client):
    digest, _ = push_image(client, "team/app", "v1", layers=[b"a layer", b"another"])
    body = describe(client, "team/app", "v1")
    assert body["model"] is None and body["digest"] == digest
    assert body["size"]["logical"] == len(b"a layer") + len(b"another") + len(b'{"tag": "v1"}')


def test_missing_weights_blob_gives_an_error_card_not_a_500(client, service):
    model = gguf_bytes(arch="gone")
    push_ollama(client, "team/gone", "v0", model)
    service.store.delete(sha256(model))  # recorded in SQL, bytes lost behind its back
    push_ollama(client, "team/gone", "v1", model, b"new system prompt", skip=model)
    error = describe(client, "team/gone", "v1")["model"]["error"]
    assert error.startswith("could not read the weights:")


def test_modelpack_safetensors_read_through_tar_layers(client):
    weights = save({"model.embed_tokens.weight": np.zeros((16, 8), np.float16),
                    "model.norm.weight": np.zeros(8, np.float16)})
    config = json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 8,
                         "max_position_embeddings": 128}).encode()
    push_manifest(client, "team/mlx", "v1", (MODELPACK_CONFIG, b"{}"), [
        ("application/vnd.cncf.model.weight.v1.tar", tar_member("model.safetensors", weights),
         {FILEPATH: "model.safetensors"}),
        ("application/vnd.cncf.model.weight.config.v1.raw", config, {FILEPATH: "config.json"}),
        ("application/vnd.cncf.model.weight.config.v1.raw", b'{"chat_template": "x"}',
         {FILEPATH: "tokenizer_config.json"}),
    ], artifactType=MODELPACK)
    model = describe(client, "team/mlx", "v1")["model"]
    assert model == {**model, "format": "safetensors", "architecture": "LlamaForCausalLM",
                     "parameter_count": 136, "quantization": "F16", "context_length": 128,
                     "embedding_length": 8, "chat_template": True, "error": None}


def test_compressed_weights_get_an_error_card(client):
    push_manifest(client, "team/zst", "v1", (MODELPACK_CONFIG, b"{}"), [
        ("application/vnd.cncf.model.weight.v1.tar+zstd", b"\x28\xb5\x2f\xfd...",
         {FILEPATH: "model.gguf"})], artifactType=MODELPACK)
    model = describe(client, "team/zst", "v1")["model"]
    assert "tar+zstd" in model["error"]


def test_storage_summary_counts_shared_layers_once(client):
    model = gguf_bytes()
    a = push_ollama(client, "team/assistant", "v1", model, b"You are terse.")
    b = push_ollama(client, "team/poet", "v1", model, b"You write haiku.")
    sizes = {r: describe(client, r, "v1")["size"] for r in ("team/assistant", "team/poet")}
    blobs_a = {sha256(model): len(model)}
    r = client.get("/api/v1/storage")
    assert r.status_code == 200
    summary = r.json()
    own = {name: size["logical"] - len(model) for name, size in sizes.items()}
    assert sizes["team/assistant"]["unique"] == own["team/assistant"]  # the GGUF is shared
    assert sizes["team/poet"]["unique"] == own["team/poet"]
    assert summary == {
        "logical_bytes": 2 * len(model) + sum(own.values()),
        "stored_bytes": len(model) + sum(own.values()),
        "blobs": 5, "manifests": 2,
    }
    assert a != b and blobs_a


def test_same_manifest_in_another_repository_reuses_the_card(client):
    model = gguf_bytes()
    first = push_ollama(client, "team/one", "v1", model)
    second = push_ollama(client, "team/two", "v1", model)
    assert first == second
    assert describe(client, "team/one", "v1")["model"] == describe(client, "team/two",
                                                                   "v1")["model"]
    # Two manifests referring to the same blobs: nothing is unique to either.
    assert describe(client, "team/two", "v1")["size"]["unique"] == 0


def test_rest_errors_are_problem_json_and_oci_errors_stay(client):
    push_image(client, "team/app", "v1")
    cases = [
        ("/api/v1/repositories/nope/tags/v1", 404, "NAME_UNKNOWN"),
        ("/api/v1/repositories/team/app/tags/v9", 404, "MANIFEST_UNKNOWN"),
        (f"/api/v1/repositories/team/app/manifests/{sha256(b'x')}", 404, "MANIFEST_UNKNOWN"),
        ("/api/v1/repositories/team/app/manifests/v1", 400, "DIGEST_INVALID"),
        ("/api/v1/nothing-here", 404, "UNSUPPORTED"),
    ]
    for path, status, code in cases:
        r = client.get(path)
        assert r.status_code == status, path
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert set(problem) == {"type", "title", "status", "detail", "code"}
        assert (problem["type"], problem["status"], problem["code"]) == \
            ("about:blank", status, code)
        assert problem["title"] in ("Not Found", "Bad Request") and problem["detail"]
    r = client.get("/v2/nope/manifests/v1")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN"


@pytest.mark.parametrize("settings", [POSTGRES_S3], indirect=True)
def test_headers_are_read_with_small_ranged_reads(client, service, monkeypatch):
    # ~8 MB of weights behind a small header: only the header may be fetched from S3.
    big = {"blk.0.w": np.zeros((64, 32768), dtype=np.float32)}
    model = gguf_bytes(tensors=big)
    fetched = []
    original = service.store.open

    def spying_open(digest, offset=0, length=None, chunk_size=1 << 20):
        fetched.append((digest, offset, length))
        return original(digest, offset, length, chunk_size)

    monkeypatch.setattr(service.store, "open", spying_open)
    push_ollama(client, "team/big", "v1", model)
    assert describe(client, "team/big", "v1")["model"]["parameter_count"] == \
        TINY_PARAMETERS + 64 * 32768
    reads = [(offset, length) for digest, offset, length in fetched if digest == sha256(model)]
    assert reads and all(length is not None for _, length in reads)
    assert sum(length for _, length in reads) <= 256 * 1024 < len(model) // 30


@pytest.mark.parametrize("settings", ["sqlite-fs"], indirect=True)  # 253 MB: once is enough
def test_real_gemma_through_the_api(client, gemma_gguf):
    model = gemma_gguf.read_bytes()
    assert push_blob(client, "library/gemma3", model) == GEMMA_DIGEST
    config = json.dumps({"model_format": "gguf"}).encode()
    push_blob(client, "library/gemma3", config)
    doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
           "config": {"mediaType": OLLAMA_CONFIG, "digest": sha256(config),
                      "size": len(config)},
           "layers": [{"mediaType": OLLAMA_MODEL, "digest": GEMMA_DIGEST,
                       "size": len(model)}]}
    start = time.perf_counter()
    r = client.put("/v2/library/gemma3/manifests/270m", content=json.dumps(doc).encode(),
                   headers={"Content-Type": DOCKER_MANIFEST})
    elapsed = time.perf_counter() - start
    assert r.status_code == 201, r.text
    assert elapsed < 2.0, f"the manifest PUT took {elapsed:.2f} s"
    body = describe(client, "library/gemma3", "270m")
    assert body["model"] == {
        "format": "gguf", "architecture": "gemma3", "parameter_count": 268_098_176,
        "parameter_label": "268.10M", "quantization": "Q4_K_M", "context_length": 32768,
        "embedding_length": 640, "chat_template": False, "tokenizer_model": "llama",
        "dtypes": ["F32", "Q4_K", "Q5_0", "Q6_K", "Q8_0"], "quantization_bits": None,
        "quantization_group_size": None, "error": None}
    assert body["size"]["logical"] == len(model) + len(config)
