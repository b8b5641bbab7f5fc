"""skopeo, its signature policy and a reproducible 3-layer OCI image layout to copy with it.

A pytest plugin (``tests/conftest.py``): the ``skopeo``, ``policy`` and ``oci_image`` fixtures
serve the auth-off and auth-on skopeo tests. A missing skopeo fails, never skips.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import shutil
import tarfile
from pathlib import Path

import pytest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
SKOPEO_TIMEOUT = 180


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def skopeo() -> str:
    exe = shutil.which("skopeo")
    if exe is None:
        pytest.fail("skopeo is not installed (apt-get install skopeo); real-client tests must "
                    "not be skipped", pytrace=False)
    return exe


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    """An explicit accept-anything signature policy, independent of /etc/containers."""
    path = tmp_path_factory.mktemp("skopeo") / "policy.json"
    path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return path


def make_layer(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    """A reproducible tar and its gzip."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return tar_bytes, gzip.compress(tar_bytes, compresslevel=1, mtime=0)


def write_blob(layout: Path, data: bytes) -> dict:
    digest = sha256_hex(data)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


@pytest.fixture(scope="module")
def oci_image(tmp_path_factory) -> dict:
    """A 3-layer OCI image layout (tag v1): small text, ~20 MB random, ~1 MB mixed."""
    rng = random.Random(20240601)
    layout = tmp_path_factory.mktemp("oci-src")
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    layer_files = [
        {"etc/assay/model.yaml": b"name: gemma3\nformat: gguf\n", "README": b"hello\n"},
        {"models/weights.bin": rng.randbytes(20 * 1024 * 1024 + 12345)},
        {"models/tokenizer.json": json.dumps({"vocab": {f"t{i}": i for i in range(30000)}})
            .encode(), "models/noise.bin": rng.randbytes(300 * 1024)},
    ]
    layers, diff_ids = [], []
    for files in layer_files:
        tar_bytes, gz = make_layer(files)
        diff_ids.append(f"sha256:{sha256_hex(tar_bytes)}")
        layers.append({"mediaType": OCI_LAYER_GZIP, **write_blob(layout, gz)})
    config = {
        "created": "2024-06-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/true"],
                   "Labels": {"org.example.model": "gemma3"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-06-01T00:00:00Z", "created_by": f"layer {i}"}
                    for i in range(len(layers))],
    }
    config_desc = {"mediaType": OCI_CONFIG,
                   **write_blob(layout, json.dumps(config, indent=1).encode())}
    # Deliberately non-canonical JSON (indent, key order): the registry must keep the bytes.
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": layers,
        "annotations": {"org.opencontainers.image.title": "assay skopeo test"},
    }, indent=3).encode()
    manifest_desc = {"mediaType": OCI_MANIFEST, **write_blob(layout, manifest)}
    (layout / "index.json").write_text(json.dumps({
        "schemaVersion": 2,
        "manifests": [{**manifest_desc,
                       "annotations": {"org.opencontainers.image.ref.name": "v1"}}],
    }))
    return {"layout": layout, "manifest": manifest, "manifest_digest": manifest_desc["digest"],
            "config": config_desc, "layers": layers}


def blob_files(layout: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}

