"""Small OCI client helpers for the API tests (requests built by hand, on purpose)."""

from __future__ import annotations

import hashlib
import json

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(client, name: str, data: bytes) -> str:
    digest = sha256(data)
    r = client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", content=data,
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return digest


def descriptor(media_type: str, data: bytes) -> dict:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


def image_manifest(config: bytes, layers: list[bytes], *, media_type=OCI_MANIFEST,
                   config_type=OCI_CONFIG, **extra) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "config": descriptor(config_type, config),
           "layers": [descriptor(LAYER, layer) for layer in layers], **extra}
    return json.dumps(doc, indent=1).encode()


def push_image(client, name: str, tag: str, layers: list[bytes] | None = None,
               config: bytes | None = None, **extra) -> tuple[str, bytes]:
    """Push config + layers + manifest; returns (manifest digest, manifest bytes)."""
    layers = layers if layers is not None else [f"layer of {name}:{tag}".encode()]
    config = config if config is not None else json.dumps({"tag": tag}).encode()
    for blob in [config, *layers]:
        push_blob(client, name, blob)
    body = image_manifest(config, layers, **extra)
    r = client.put(f"/v2/{name}/manifests/{tag}", content=body,
                   headers={"Content-Type": json.loads(body)["mediaType"]})
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"], body


def error_code(response) -> str:
    return response.json()["errors"][0]["code"]
