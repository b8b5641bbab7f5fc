"""The ``assay`` CLI and settings: flags beat ASSAY_* variables, gc works on a data dir."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from registry.app import create_app
from registry.cli import main
from registry.settings import Settings
from tests.support.oci import push_blob, push_image, sha256


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ASSAY_PORT", "6111")
    monkeypatch.setenv("ASSAY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ASSAY_STORAGE", "s3")
    s = Settings()
    assert (s.port, s.data_dir, s.storage, s.host) == (6111, tmp_path, "s3", "127.0.0.1")
    assert s.sqlalchemy_url == f"sqlite:///{tmp_path.resolve()}/assay.db"
    assert Settings(port=7000).port == 7000  # explicit (CLI flag) beats the environment


def test_defaults():
    s = Settings(_env_file=None)
    assert (s.host, s.port, str(s.data_dir), s.storage) == ("127.0.0.1", 5000, "data",
                                                            "filesystem")
    assert s.max_manifest_bytes >= 4 * 1024 * 1024


def test_serve_help_lists_flags():
    out = CliRunner().invoke(main, ["serve", "--help"]).output
    for flag in ("--host", "--port", "--data-dir"):
        assert flag in out


@pytest.mark.slow  # migrates a fresh data directory and runs GC through the CLI
def test_migrate_and_gc_commands(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["migrate", "--data-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    settings = Settings(data_dir=tmp_path, fsync=False)
    with TestClient(create_app(settings)) as client:
        push_image(client, "team/app", "v1", layers=[b"kept"])
        push_blob(client, "team/app", b"garbage")
    r = runner.invoke(main, ["gc", "--data-dir", str(tmp_path), "--dry-run"])
    assert r.exit_code == 0 and "would delete 0 blob(s)" in r.output  # grace period
    # ... and says so: the blob waits out the 1h grace period after its last use.
    assert r.stdout.splitlines()[1].startswith(
        "waiting: 1 unreferenced blob(s) (7B) inside the 1h grace period after their last "
        "use; `assay gc` frees them at "), r.output
    r = runner.invoke(main, ["gc", "--data-dir", str(tmp_path), "--dry-run", "--json"])
    waiting = json.loads(r.stdout)["waiting"]
    assert (waiting["blobs"]["count"], waiting["blobs"]["bytes"], waiting["uploads"]["count"]) \
        == (1, 7, 0)
    r = runner.invoke(main, ["gc", "--data-dir", str(tmp_path), "--grace-seconds", "0"])
    assert r.exit_code == 0 and "deleted 1 blob(s), 7 bytes" in r.output, r.output
    blobs = tmp_path / "storage" / "blobs" / "sha256"
    names = {p.name for p in blobs.rglob("*") if p.is_file()}
    assert sha256(b"garbage")[7:] not in names and sha256(b"kept")[7:] in names
