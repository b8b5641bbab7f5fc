"""The ``oras`` Python client (PyPI ``oras``) against a real ``assay serve``: an artifact with
a custom ``artifactType`` and config media type, pulled back byte for byte, then referrers
(``subject``) and the referrers API with ``?artifactType=`` filtering."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import httpx
import pytest

from tests.support.oras_client import oras_client

pytestmark = pytest.mark.clients

try:
    import oras.client
    import oras.oci
except ImportError:  # pragma: no cover - reported as a failure below, never a skip
    oras = None

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MODEL_ARTIFACT = "application/vnd.acme.model.v1"
MODEL_CONFIG = "application/vnd.acme.model.config.v1+json"
WEIGHTS_MEDIA = "application/vnd.acme.model.weights.v1"
SIGNATURE_ARTIFACT = "application/vnd.acme.signature.v1"
SBOM_CONFIG = "application/vnd.acme.sbom.config.v1+json"
REPO = "acme/model"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def subject_of(base: str, repo: str, reference: str) -> oras.oci.Subject:
    """The descriptor of a stored manifest, taken from the registry's own answers."""
    resp = httpx.get(f"{base}/v2/{repo}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200, resp.text
    digest = f"sha256:{sha256_hex(resp.content)}"
    assert resp.headers["docker-content-digest"] == digest
    head = httpx.head(f"{base}/v2/{repo}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
    assert head.headers.get("content-length") == str(len(resp.content)), head.headers
    return oras.oci.Subject(mediaType=resp.headers["content-type"], digest=digest,
                            size=len(resp.content))


@pytest.fixture
def artifact_files(tmp_path) -> dict[str, Path]:
    src = tmp_path / "src"
    src.mkdir()
    files = {
        "weights.bin": os.urandom(3 * 1024 * 1024 + 7),
        "README.md": b"# acme model\n\nA test artifact.\n",
        "config.json": json.dumps({"architecture": "gemma3", "quantization": "Q4_K_M"}).encode(),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = src / name
        paths[name].write_bytes(data)
    return paths


def push_model(server, artifact_files) -> tuple[object, oras.oci.Subject]:
    client = oras_client(server.host_port, MODEL_ARTIFACT)
    target = f"{server.host_port}/{REPO}:v1"
    response = client.push(
        target=target,
        files=[f"{artifact_files['weights.bin']}:{WEIGHTS_MEDIA}",
               str(artifact_files["README.md"])],
        manifest_config=f"{artifact_files['config.json']}:{MODEL_CONFIG}",
        manifest_annotations={"org.opencontainers.image.version": "1.0"},
        disable_path_validation=True,
        quiet=True,
    )
    assert response.status_code == 201, response.text
    return client, subject_of(server.url, REPO, "v1")


def test_push_pull_artifact(assay_server, artifact_files, tmp_path):
    client, subject = push_model(assay_server, artifact_files)
    assert client.last_response.headers.get("Docker-Content-Digest") == subject.digest

    resp = httpx.get(f"{assay_server.url}/v2/{REPO}/manifests/v1",
                     headers={"Accept": OCI_MANIFEST})
    manifest = resp.json()
    assert resp.headers["content-type"] == OCI_MANIFEST
    assert manifest["artifactType"] == MODEL_ARTIFACT
    assert manifest["config"]["mediaType"] == MODEL_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        WEIGHTS_MEDIA, "application/vnd.oci.image.layer.v1.tar"]
    assert manifest["annotations"] == {"org.opencontainers.image.version": "1.0"}

    # oras serialised the manifest with requests' json=; the registry keeps those bytes.
    sent = json.dumps(client.last_manifest).encode()
    assert resp.content == sent

    out = tmp_path / "out"
    pulled = oras_client(assay_server.host_port).pull(
        target=f"{assay_server.host_port}/{REPO}:v1", outdir=str(out))
    assert sorted(Path(p).name for p in pulled) == ["README.md", "weights.bin"]
    for name in ("README.md", "weights.bin"):
        assert (out / name).read_bytes() == artifact_files[name].read_bytes()

    config = httpx.get(f"{assay_server.url}/v2/{REPO}/blobs/{manifest['config']['digest']}",
                       follow_redirects=True)
    assert config.content == artifact_files["config.json"].read_bytes()

    assert oras_client(assay_server.host_port).get_tags(
        f"{assay_server.host_port}/{REPO}") == ["v1"]


def test_referrers(assay_server, artifact_files, tmp_path):
    base, host = assay_server.url, assay_server.host_port
    _, subject = push_model(assay_server, artifact_files)

    signature = tmp_path / "signature.json"
    signature.write_text(json.dumps({"signed": subject.digest, "by": "acme"}))
    signer = oras_client(host, SIGNATURE_ARTIFACT)
    response = signer.push(
        target=f"{host}/{REPO}:sig",
        files=[f"{signature}:application/vnd.acme.signature.payload.v1+json"],
        manifest_annotations={"org.opencontainers.image.created": "2024-06-01T00:00:00Z"},
        subject=subject,
        disable_path_validation=True,
        quiet=True,
    )
    assert response.status_code == 201, response.text
    assert response.headers.get("OCI-Subject") == subject.digest, (
        f"a manifest PUT with a subject must answer OCI-Subject: {dict(response.headers)}")
    signature_digest = response.headers["Docker-Content-Digest"]

    # A referrer without artifactType: the referrers API reports its config media type.
    sbom = tmp_path / "sbom.spdx.json"
    sbom.write_text(json.dumps({"spdxVersion": "SPDX-2.3", "name": "acme-model"}))
    sbom_config = tmp_path / "sbom-config.json"
    sbom_config.write_text("{}")
    response = oras_client(host).push(
        target=f"{host}/{REPO}:sbom",
        files=[f"{sbom}:application/spdx+json"],
        manifest_config=f"{sbom_config}:{SBOM_CONFIG}",
        subject=subject,
        disable_path_validation=True,
        quiet=True,
    )
    assert response.status_code == 201, response.text
    sbom_digest = response.headers["Docker-Content-Digest"]

    resp = httpx.get(f"{base}/v2/{REPO}/referrers/{subject.digest}")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith(OCI_INDEX)
    index = resp.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    by_digest = {d["digest"]: d for d in index["manifests"]}
    assert set(by_digest) == {signature_digest, sbom_digest}, index
    sig = by_digest[signature_digest]
    assert sig["artifactType"] == SIGNATURE_ARTIFACT
    assert sig["mediaType"] == OCI_MANIFEST
    assert sig["annotations"] == {"org.opencontainers.image.created": "2024-06-01T00:00:00Z"}
    sig_manifest = httpx.get(f"{base}/v2/{REPO}/manifests/{signature_digest}",
                             headers={"Accept": OCI_MANIFEST})
    assert sig["size"] == len(sig_manifest.content)
    assert by_digest[sbom_digest]["artifactType"] == SBOM_CONFIG

    resp = httpx.get(f"{base}/v2/{REPO}/referrers/{subject.digest}",
                     params={"artifactType": SIGNATURE_ARTIFACT})
    assert resp.status_code == 200, resp.text
    assert resp.headers.get("OCI-Filters-Applied") == "artifactType", dict(resp.headers)
    assert [d["digest"] for d in resp.json()["manifests"]] == [signature_digest]

    resp = httpx.get(f"{base}/v2/{REPO}/referrers/{subject.digest}",
                     params={"artifactType": "application/vnd.acme.nothing"})
    assert resp.status_code == 200 and resp.json()["manifests"] == []

    # No referrers (even for an unknown digest): 200 with an empty index.
    unknown = f"sha256:{sha256_hex(b'nothing refers to this')}"
    resp = httpx.get(f"{base}/v2/{REPO}/referrers/{unknown}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["manifests"] == []
