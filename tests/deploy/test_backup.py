"""Backup and restore exactly as the README documents them: ``scripts/backup.sh`` while the
registry serves, lose everything, ``scripts/restore.sh``, start again, and every manifest,
tag and blob is back byte for byte.

Both deployments: PostgreSQL + S3 (pg_dump/pg_restore and rclone against the moto server)
and the single-machine SQLite + filesystem (SQLite's online backup and rclone on a
directory).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import httpx
import pytest

from tests.support.oci import LAYER, OCI_CONFIG, OCI_MANIFEST, descriptor, sha256
from tests.support.processes import REPO_ROOT, start_assay
from tests.support.topology import start_topology

NAME = "team/backed-up"


def push(url: str, tag: str, layers: list[bytes]) -> tuple[str, bytes]:
    """Push a small image; returns (manifest digest, manifest bytes)."""
    config = json.dumps({"tag": tag}).encode()
    for blob in (config, *layers):
        resp = httpx.post(f"{url}/v2/{NAME}/blobs/uploads/?digest={sha256(blob)}",
                          content=blob, timeout=30)
        assert resp.status_code == 201, resp.text
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": descriptor(OCI_CONFIG, config),
                       "layers": [descriptor(LAYER, blob) for blob in layers]}).encode()
    resp = httpx.put(f"{url}/v2/{NAME}/manifests/{tag}", content=body, timeout=30,
                     headers={"Content-Type": OCI_MANIFEST})
    assert resp.status_code == 201, resp.text
    return resp.headers["Docker-Content-Digest"], body


def snapshot(url: str, layers: list[bytes]) -> dict:
    """What a client can read: tags, each manifest's bytes, each layer's bytes."""
    tags = httpx.get(f"{url}/v2/{NAME}/tags/list", timeout=30).json()["tags"]
    manifests = {}
    for tag in tags:
        resp = httpx.get(f"{url}/v2/{NAME}/manifests/{tag}", timeout=30,
                         headers={"Accept": OCI_MANIFEST})
        assert resp.status_code == 200, resp.text
        manifests[tag] = resp.content
    blobs = {}
    for layer in layers:
        resp = httpx.get(f"{url}/v2/{NAME}/blobs/{sha256(layer)}", timeout=30,
                         follow_redirects=True)
        blobs[sha256(layer)] = resp.content if resp.status_code == 200 else resp.status_code
    return {"tags": sorted(tags), "manifests": manifests, "blobs": blobs}


def s3_keys(s3, bucket: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def script(name: str, arg, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(["sh", str(REPO_ROOT / "scripts" / name), str(arg)],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stdout}\n" \
                                 f"{proc.stderr}"
    return proc


def test_backup_and_restore_postgres_and_s3(postgres_server, s3_server, tmp_path):
    # A key prefix, as a shared bucket needs: given without the trailing "/" the registry
    # adds, so the scripts must find the blobs under the same keys.
    topo = start_topology(tmp_path / "topo", postgres_server, s3_server, registries=1,
                          env={"ASSAY_S3_PREFIX": "prod"})
    try:
        url = topo.registries[0].url
        layers = [os.urandom(300_000), b"shared layer", os.urandom(2_000_000)]
        push(url, "v1", layers[:2])
        push(url, "v2", layers[1:])
        before = snapshot(url, layers)

        # Online: the registry keeps serving while the backup runs.
        out = script("backup.sh", tmp_path / "backup", topo.settings_env())
        assert "5 blob(s)" in out.stdout, out.stdout  # 3 layers + 2 configs
        assert all(k.startswith("prod/") for k in s3_keys(s3_server, topo.bucket))
        push(url, "after-backup", [b"not in the backup"])

        # A backup that fails half-way (here: the bucket is wrong) leaves the previous
        # one as it was, and says why.
        dump = (tmp_path / "backup" / "assay.pgdump").read_bytes()
        failed = subprocess.run(
            ["sh", str(REPO_ROOT / "scripts" / "backup.sh"), str(tmp_path / "backup")],
            env={**os.environ, **topo.settings_env(), "ASSAY_S3_BUCKET": "no-such-bucket",
                 "RCLONE_RETRIES": "1", "RCLONE_LOW_LEVEL_RETRIES": "1"},
            capture_output=True, text=True, timeout=300)
        assert failed.returncode != 0
        assert (tmp_path / "backup" / "assay.pgdump").read_bytes() == dump
        topo.close()

        # Disaster: an empty database of the same name and an empty bucket.
        postgres_server.create_database(topo.database_url.rsplit("/", 1)[1])
        client = s3_server.client()
        for key in s3_keys(s3_server, topo.bucket):
            client.delete_object(Bucket=topo.bucket, Key=key)

        script("restore.sh", tmp_path / "backup", topo.settings_env())
        restored = topo.add_registry()
        assert snapshot(restored.url, layers) == before
        # The restored registry takes pushes as before.
        push(restored.url, "v3", [b"after the restore"])
    finally:
        topo.close()


def test_backup_and_restore_sqlite_and_filesystem(tmp_path):
    data = tmp_path / "data"
    env = {"ASSAY_DATA_DIR": str(data)}
    server = start_assay(data)
    try:
        layers = [os.urandom(500_000), b"second"]
        push(server.url, "v1", layers)
        before = snapshot(server.url, layers)
        script("backup.sh", tmp_path / "backup", env)  # while it serves
    finally:
        server.stop()

    shutil.rmtree(data)
    script("restore.sh", tmp_path / "backup", env)
    server = start_assay(data)
    try:
        assert snapshot(server.url, layers) == before
    finally:
        server.stop()


@pytest.mark.parametrize("content", [None, "junk"])
def test_restore_refuses_what_is_not_a_backup(tmp_path, content):
    src = tmp_path / "not-a-backup"
    src.mkdir()
    if content:
        (src / "blobs").mkdir()
    proc = subprocess.run(["sh", str(REPO_ROOT / "scripts" / "restore.sh"), str(src)],
                          env={**os.environ, "ASSAY_DATA_DIR": str(tmp_path / "data")},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.startswith("restore: ") and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "data").exists()  # nothing touched
