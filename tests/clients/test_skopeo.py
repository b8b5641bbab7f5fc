"""skopeo (Debian, 1.9) copies a multi-layer OCI image into a real ``assay serve`` and back out,
byte for byte; also as Docker v2 schema 2, plus ``inspect --raw`` and ``list-tags``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.skopeo import OCI_MANIFEST, SKOPEO_TIMEOUT, blob_files, sha256_hex

pytestmark = pytest.mark.clients

DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REPO = "team/image"


def run_skopeo(skopeo: str, policy: Path, *args: str) -> bytes:
    cmd = [skopeo, "--policy", str(policy), "--command-timeout", f"{SKOPEO_TIMEOUT}s", *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=SKOPEO_TIMEOUT + 30)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)}\nexited {proc.returncode}\nstdout: "
                    f"{proc.stdout.decode(errors='replace')[-3000:]}\nstderr: "
                    f"{proc.stderr.decode(errors='replace')[-3000:]}", pytrace=False)
    return proc.stdout


def test_oci_round_trip(skopeo, policy, oci_image, assay_server, tmp_path):
    host = assay_server.host_port
    src = oci_image["layout"]
    run_skopeo(skopeo, policy, "copy", "--preserve-digests", "--dest-tls-verify=false",
               f"oci:{src}:v1", f"docker://{host}/{REPO}:v1")

    # The registry serves the manifest byte for byte, with its type and digest.
    url = f"{assay_server.url}/v2/{REPO}/manifests/v1"
    resp = httpx.get(url, headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200, resp.text
    assert resp.content == oci_image["manifest"]
    assert resp.headers["content-type"] == OCI_MANIFEST
    assert resp.headers["docker-content-digest"] == oci_image["manifest_digest"]
    head = httpx.head(url, headers={"Accept": OCI_MANIFEST})
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(oci_image["manifest"]))
    assert head.headers["docker-content-digest"] == oci_image["manifest_digest"]

    # Second tag: every blob already there, nothing re-uploaded.
    run_skopeo(skopeo, policy, "copy", "--preserve-digests", "--dest-tls-verify=false",
               f"oci:{src}:v1", f"docker://{host}/{REPO}:stable")

    out = tmp_path / "oci-out"
    run_skopeo(skopeo, policy, "copy", "--preserve-digests", "--src-tls-verify=false",
               f"docker://{host}/{REPO}:v1", f"oci:{out}:v1")
    index = json.loads((out / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["digest"] == oci_image["manifest_digest"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    assert blob_files(out) == blob_files(src), "manifest, config and every layer byte-identical"

    raw = run_skopeo(skopeo, policy, "inspect", "--raw", "--tls-verify=false",
                     f"docker://{host}/{REPO}:v1")
    assert raw.rstrip(b"\n") == oci_image["manifest"]

    info = json.loads(run_skopeo(skopeo, policy, "inspect", "--tls-verify=false",
                                 f"docker://{host}/{REPO}:stable"))
    assert info["Digest"] == oci_image["manifest_digest"]
    assert info["Layers"] == [layer["digest"] for layer in oci_image["layers"]]
    assert info["Labels"] == {"org.example.model": "gemma3"}

    tags = json.loads(run_skopeo(skopeo, policy, "list-tags", "--tls-verify=false",
                                 f"docker://{host}/{REPO}"))
    assert sorted(tags["Tags"]) == ["stable", "v1"]
    assert tags["Repository"] == f"{host}/{REPO}"


def test_docker_v2s2_round_trip(skopeo, policy, oci_image, assay_server, tmp_path):
    host = assay_server.host_port
    src = oci_image["layout"]
    # First the OCI image into one repository, then the v2s2 conversion into another:
    # skopeo may mount the shared layers across repositories (?mount=&from=).
    run_skopeo(skopeo, policy, "copy", "--preserve-digests", "--dest-tls-verify=false",
               f"oci:{src}:v1", f"docker://{host}/{REPO}:v1")
    target = f"{REPO}-docker"
    run_skopeo(skopeo, policy, "copy", "--format", "v2s2", "--dest-tls-verify=false",
               f"oci:{src}:v1", f"docker://{host}/{target}:v1")

    resp = httpx.get(f"{assay_server.url}/v2/{target}/manifests/v1",
                     headers={"Accept": DOCKER_MANIFEST_V2})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == DOCKER_MANIFEST_V2
    manifest = resp.json()
    assert manifest["mediaType"] == DOCKER_MANIFEST_V2
    assert manifest["config"]["mediaType"] == DOCKER_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [DOCKER_LAYER_GZIP] * 3
    assert [layer["digest"] for layer in manifest["layers"]] == [
        layer["digest"] for layer in oci_image["layers"]]
    assert resp.headers["docker-content-digest"] == f"sha256:{sha256_hex(resp.content)}"
    head = httpx.head(f"{assay_server.url}/v2/{target}/manifests/v1",
                      headers={"Accept": DOCKER_MANIFEST_V2})
    assert head.headers.get("content-type") == DOCKER_MANIFEST_V2
    assert head.headers.get("content-length") == str(len(resp.content))

    raw = run_skopeo(skopeo, policy, "inspect", "--raw", "--tls-verify=false",
                     f"docker://{host}/{target}:v1")
    assert raw.rstrip(b"\n") == resp.content

    out = tmp_path / "dir-out"
    run_skopeo(skopeo, policy, "copy", "--src-tls-verify=false",
               f"docker://{host}/{target}:v1", f"dir:{out}")
    assert (out / "manifest.json").read_bytes() == resp.content
    src_blobs = blob_files(src)
    for layer in manifest["layers"]:
        hex_digest = layer["digest"].removeprefix("sha256:")
        assert (out / hex_digest).read_bytes() == src_blobs[hex_digest]
    config_hex = manifest["config"]["digest"].removeprefix("sha256:")
    assert sha256_hex((out / config_hex).read_bytes()) == config_hex
