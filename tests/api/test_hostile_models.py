"""Hostile GGUF layers pushed through the API: the push gets a clean answer fast,
the card says what is wrong, and the registry keeps serving. Runs on both stacks.

The files come from ``tests.support.gguf_files.HOSTILE_HEADERS`` (lengths and counts of
2**60, nested arrays, truncation, ...). A corrupt header is not the pusher's protocol
error: the manifest is valid OCI, so it is stored (201) with a model card whose ``error``
says why the weights could not be read, and verification fails the model later.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.support.gguf_files import HOSTILE_HEADERS, gguf_bytes, hostile_file
from tests.support.oci import DOCKER_MANIFEST, push_blob, push_image, sha256

OLLAMA_CONFIG = "application/vnd.docker.container.image.v1+json"
OLLAMA_MODEL = "application/vnd.ollama.image.model"


def push_gguf(client, name: str, tag: str, model: bytes):
    """Push ``model`` as an Ollama model layer; returns the manifest PUT's response."""
    config = json.dumps({"model_format": "gguf", "model_family": "llama"}).encode()
    for blob in (config, model):
        push_blob(client, name, blob)
    doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
           "config": {"mediaType": OLLAMA_CONFIG, "digest": sha256(config),
                      "size": len(config)},
           "layers": [{"mediaType": OLLAMA_MODEL, "digest": sha256(model),
                       "size": len(model)}]}
    return client.put(f"/v2/{name}/manifests/{tag}", content=json.dumps(doc).encode(),
                      headers={"Content-Type": DOCKER_MANIFEST})


def model_of(client, name: str, tag: str) -> dict:
    r = client.get(f"/api/v1/repositories/{name}/tags/{tag}")
    assert r.status_code == 200, r.text
    return r.json()["model"]


@pytest.mark.slow  # fourteen absurd headers, each pushed and served
@pytest.mark.parametrize("kind", sorted(HOSTILE_HEADERS))
def test_absurd_gguf_header_pushes_cleanly_and_the_registry_keeps_serving(client, kind):
    model = hostile_file(kind, 64 * 1024)
    start = time.monotonic()
    r = push_gguf(client, "hostile/model", "latest", model)
    elapsed = time.monotonic() - start
    assert r.status_code == 201, r.text
    assert elapsed < 10, f"the push took {elapsed:.1f} s"
    card = model_of(client, "hostile/model", "latest")
    assert card["format"] == "gguf"
    assert card["error"] and "\n" not in card["error"], card
    assert card["parameter_count"] is None
    # The registry still serves: the stored manifest, its blob, and other pushes.
    assert client.get("/v2/").status_code == 200
    got = client.get("/v2/hostile/model/manifests/latest",
                     headers={"Accept": DOCKER_MANIFEST})
    assert got.status_code == 200
    blob = client.get(f"/v2/hostile/model/blobs/{sha256(model)}")
    assert blob.status_code == 200 and blob.content == model
    push_image(client, "other/image", "v1")
    good = push_gguf(client, "good/model", "latest", gguf_bytes())
    assert good.status_code == 201
    assert model_of(client, "good/model", "latest")["error"] is None


def test_hostile_chat_template_is_stored_never_rendered(client):
    # Rendered, this would loop ~forever and build a string of terabytes; the registry
    # only notes that a template exists.
    template = "{% for i in range(10**12) %}{{ i * 'x' }}{% endfor %}" + "{% if 1 %}" * 5000
    start = time.monotonic()
    r = push_gguf(client, "hostile/template", "latest", gguf_bytes(chat_template=template))
    assert r.status_code == 201, r.text
    assert time.monotonic() - start < 10
    card = model_of(client, "hostile/template", "latest")
    assert card["error"] is None and card["chat_template"] is True
