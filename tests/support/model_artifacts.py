"""Model artifacts pushed through the OCI API in process: Ollama (GGUF layer + system prompt)
and CNCF ModelPack (safetensors in a tar layer), with the media types and annotations they use.

Every helper asserts the registry accepted the push and returns the manifest digest.
"""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
from safetensors.numpy import save

from tests.support.oci import DOCKER_MANIFEST, OCI_MANIFEST, push_blob, sha256

OLLAMA_CONFIG = "application/vnd.docker.container.image.v1+json"
OLLAMA_MODEL = "application/vnd.ollama.image.model"
OLLAMA_SYSTEM = "application/vnd.ollama.image.system"
MODELPACK = "application/vnd.cncf.model.manifest.v1+json"
MODELPACK_CONFIG = "application/vnd.cncf.model.config.v1+json"
FILEPATH = "org.cncf.model.filepath"


def push_manifest(client, name: str, tag: str, config: tuple[str, bytes],
                  layers: list[tuple[str, bytes, dict | None]], media_type=OCI_MANIFEST,
                  skip: bytes | None = None, **extra) -> str:
    """Push the blobs (all but ``skip``) and a manifest of ``(media type, bytes,
    annotations)`` layers."""
    for blob in [config[1], *(data for _, data, _ in layers)]:
        if blob != skip:
            push_blob(client, name, blob)

    def desc(media: str, data: bytes, annotations: dict | None = None) -> dict:
        d = {"mediaType": media, "digest": sha256(data), "size": len(data)}
        return {**d, "annotations": annotations} if annotations else d

    doc = {"schemaVersion": 2, "mediaType": media_type, "config": desc(*config),
           "layers": [desc(*layer) for layer in layers], **extra}
    r = client.put(f"/v2/{name}/manifests/{tag}", content=json.dumps(doc).encode(),
                   headers={"Content-Type": media_type})
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


def push_ollama(client, name: str, tag: str, model: bytes, system: bytes | None = None,
                skip: bytes | None = None) -> str:
    config = json.dumps({"model_format": "gguf", "model_family": "llama",
                         "system": (system or b"").decode()}).encode()
    layers = [(OLLAMA_MODEL, model, None)]
    if system is not None:
        layers.append((OLLAMA_SYSTEM, system, None))
    return push_manifest(client, name, tag, (OLLAMA_CONFIG, config), layers, DOCKER_MANIFEST,
                         skip)


def tar_member(name: str, data: bytes) -> bytes:
    """A tar archive holding one file, ``name``, with ``data`` (a ModelPack weight layer)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()



def push_safetensors(client, name: str, tag: str) -> str:
    weights = save({"model.embed_tokens.weight": np.zeros((16, 8), np.float16),
                    "model.norm.weight": np.zeros(8, np.float16)})
    config = json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 8,
                         "max_position_embeddings": 128}).encode()
    return push_manifest(client, name, tag, (MODELPACK_CONFIG, b"{}"), [
        ("application/vnd.cncf.model.weight.v1.tar", tar_member("model.safetensors", weights),
         {FILEPATH: "model.safetensors"}),
        ("application/vnd.cncf.model.weight.config.v1.raw", config, {FILEPATH: "config.json"}),
    ], artifactType=MODELPACK)

