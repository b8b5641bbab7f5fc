"""``GET /healthz`` and ``GET /readyz`` (registry/api/health.py) on both stacks, with real
failures: a database that cannot be opened or reached, a store whose root is gone or
whose bucket does not exist."""

from __future__ import annotations

import shutil

from sqlalchemy.engine import make_url

from registry.db import Database
from registry.settings import Settings
from registry.storage import open_store
from tests.support.processes import free_port


def test_healthz_answers_without_io(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert r.headers["cache-control"] == "no-store"


def test_readyz_when_database_and_storage_answer(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok"}}


def test_probes_are_public_with_auth_on(settings):
    from starlette.testclient import TestClient

    from registry.app import create_app

    app = create_app(settings.model_copy(update={"auth": True}), run_migrations=False)
    with TestClient(app, base_url="http://registry.test") as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200


def test_readyz_503_when_the_database_is_unreachable(client, service, settings):
    if service.db.is_sqlite:
        # The database file replaced by a directory: SQLite cannot open it.
        service.db.dispose()
        db_file = settings.data_dir / "assay.db"
        for suffix in ("", "-wal", "-shm"):
            db_file.with_name(db_file.name + suffix).unlink(missing_ok=True)
        db_file.mkdir()
    else:
        # The same database on a port nobody listens on.
        closed = make_url(service.db.url).set(port=free_port()).render_as_string(
            hide_password=False)
        service.db.dispose()
        service.db = Database(closed)
    r = client.get("/readyz")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["storage"] == "ok"
    reason = body["checks"]["database"]
    assert reason != "ok" and "\n" not in reason and "OperationalError" in reason
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_readyz_503_when_storage_is_unreachable(client, service, settings):
    if settings.storage == "filesystem":
        shutil.rmtree(settings.blob_root)
        expected = "is not a directory"
    else:
        missing = settings.model_copy(update={"s3_bucket": "assay-no-such-bucket",
                                              "s3_create_bucket": False})
        service.store = open_store(missing)
        expected = "head_bucket"
    r = client.get("/readyz")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    reason = body["checks"]["storage"]
    assert expected in reason and "\n" not in reason
    assert client.get("/healthz").status_code == 200


def test_filesystem_store_ping_refuses_a_missing_or_file_root(tmp_path):
    store = open_store(Settings(data_dir=tmp_path))
    store.ping()
    shutil.rmtree(tmp_path / "storage" / "uploads")
    (tmp_path / "storage" / "uploads").write_text("not a directory")
    try:
        store.ping()
    except Exception as exc:  # noqa: BLE001
        assert "uploads" in str(exc)
    else:
        raise AssertionError("ping accepted a file where the uploads directory should be")
