"""registry.services.verification below HTTP: namespace policies (longest ``/``-prefix
wins), and migration 0003's data step, which queues the models pushed before
verification existed (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, select, text

from registry.db import Database, migrate
from registry.db.queue import JobQueue
from registry.db.tables import jobs, manifests, tag_history
from registry.errors import ModelNotReady, RequestInvalid
from registry.services import RegistryService
from registry.settings import Settings
from registry.storage.filesystem import FilesystemBlobStore
from tests.support.stacks import DATABASES

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OLLAMA_CONFIG = "application/vnd.docker.container.image.v1+json"
OLLAMA_MODEL = "application/vnd.ollama.image.model"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(c: str) -> str:
    return "sha256:" + c * 64


def service_for(url: str, tmp_path, **settings) -> RegistryService:
    s = Settings(data_dir=tmp_path / "data", database_url=url, fsync=False, **settings)
    return RegistryService(Database(url), FilesystemBlobStore(tmp_path / "storage",
                                                              fsync=False), s)


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("verification-template") / "assay.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template, tmp_path) -> str:
    shutil.copy(sqlite_template, tmp_path / "assay.db")
    return f"sqlite:///{tmp_path / 'assay.db'}"


# ------------------------------------------------------------------------- policies


def test_default_policy_comes_from_the_settings(sqlite_url, tmp_path):
    svc = service_for(sqlite_url, tmp_path, gate=True, min_generation_tps=4.0)
    p = svc.verification.policy("team/gemma")
    assert (p.namespace, p.gate, p.min_generation_tps) == (None, True, 4.0)
    svc = service_for(sqlite_url, tmp_path, gate=False)
    assert svc.verification.policy("x").to_json() == \
        {"namespace": None, "gate": False, "min_generation_tps": None}
    assert svc.manifests.gated("x") is False
    svc.db.dispose()


def test_longest_slash_prefix_wins(sqlite_url, tmp_path):
    svc = service_for(sqlite_url, tmp_path, gate=True)
    v = svc.verification
    v.set_policy("", True, 1.0)
    v.set_policy("/team/", False, None)  # slashes around a namespace are dropped
    v.set_policy("team/sub", True, 9.0)
    v.set_policy("team/sub/deep", False, 2.0)

    def ns(name: str) -> str | None:
        return v.policy(name).namespace

    assert [p.namespace for p in v.policies()] == ["", "team", "team/sub", "team/sub/deep"]
    assert ns("team") == "team"
    assert ns("team/gemma") == "team"
    assert ns("teamx/gemma") == ""  # "team" is not a "/"-prefix of "teamx"
    assert ns("team/sub") == "team/sub"
    assert ns("team/subway") == "team"
    assert ns("team/sub/x/y") == "team/sub"
    assert ns("team/sub/deep") == "team/sub/deep"
    assert ns("team/sub/deeper") == "team/sub"
    assert ns("other") == ""
    p = v.policy("team/sub/x")
    assert (p.gate, p.min_generation_tps) == (True, 9.0)
    assert svc.manifests.gated("team/gemma") is False
    assert svc.manifests.gated("team/sub/x") is True

    assert v.delete_policy("team/") is True
    assert v.delete_policy("team") is False
    assert ns("team/gemma") == ""
    assert v.delete_policy("") is True
    assert ns("team/gemma") is None
    svc.db.dispose()


@pytest.mark.parametrize("floor", [-1.0, float("nan"), float("inf")])
def test_a_speed_floor_must_be_a_finite_number_at_least_zero(sqlite_url, tmp_path, floor):
    # inf passes ``x >= 0`` but cannot be stored and shown as JSON
    # (see tests/api/test_verification.py::test_infinite_speed_floor_is_refused).
    svc = service_for(sqlite_url, tmp_path)
    with pytest.raises(RequestInvalid):
        svc.verification.set_policy("team", True, floor)
    assert svc.verification.policies() == []
    svc.db.dispose()


def test_a_zero_floor_is_kept(sqlite_url, tmp_path):
    svc = service_for(sqlite_url, tmp_path)
    assert svc.verification.set_policy("team", True, 0.0).min_generation_tps == 0.0
    assert svc.verification.policy("team/x").min_generation_tps == 0.0
    svc.db.dispose()


# --------------------------------------------------------------- migration 0003 data


@pytest.fixture(params=DATABASES)
def old_url(request, tmp_path) -> str:
    """An empty database at revision 0002 (before verification)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database("assay_0002")
    migrate(url, "0002")
    return url


def ollama_manifest(model: bytes = b"GGUF weights") -> bytes:
    def desc(media_type: str, data: bytes) -> dict:
        return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
                "size": len(data)}

    return json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                       "config": desc(OLLAMA_CONFIG, b"{}"),
                       "layers": [desc(OLLAMA_MODEL, model)]}).encode()


@pytest.mark.slow  # every migration from revision 0002 up
def test_migration_queues_models_pushed_before_verification(old_url, tmp_path):
    model = ollama_manifest()
    image = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                   "digest": digest("c"), "size": 2},
                        "layers": []}).encode()
    engine = create_engine(old_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO repositories (id, name, created_at) "
                          "VALUES (1, 'team/old', :t)"), {"t": now})
        rows = [(10, digest("a"), DOCKER_MANIFEST, model), (11, digest("b"), OCI_MANIFEST,
                                                             image)]
        for mid, d, media, content in rows:
            conn.execute(text(
                "INSERT INTO manifests (id, repository_id, digest, media_type, content, size, "
                "created_at) VALUES (:id, 1, :d, :m, :c, :s, :t)"),
                {"id": mid, "d": d, "m": media, "c": content, "s": len(content), "t": now})
        conn.execute(text(
            "INSERT INTO models (manifest_id, kind, format, card, logical_size, created_at) "
            "VALUES (10, 'ollama', 'gguf', '{}', 14, :t)"), {"t": now})
        for tag, mid in (("v1", 10), ("app", 11)):
            conn.execute(text("INSERT INTO tags (repository_id, name, manifest_id, updated_at)"
                              " VALUES (1, :n, :m, :t)"), {"n": tag, "m": mid, "t": now})
    engine.dispose()

    migrate(old_url)

    db = Database(old_url)
    try:
        with db.read() as conn:
            status = dict(conn.execute(select(manifests.c.id, manifests.c.status)).all())
            changed = conn.execute(select(manifests.c.status_changed_at)
                                   .where(manifests.c.id == 10)).scalar_one()
            queued = conn.execute(select(jobs)).all()
            history = set(conn.execute(select(tag_history.c.tag, tag_history.c.manifest_id)))
        assert status == {10: "queued", 11: None}
        assert changed is not None
        assert len(queued) == 1
        job = queued[0]
        assert (job.kind, job.status, job.dedupe_key, job.attempts, job.max_attempts) == \
            ("verify", "queued", "verify:10", 0, 5)
        assert json.loads(job.payload) == {"manifest_id": 10}
        assert history == {("v1", 10), ("app", 11)}

        # The queue reads the migrated row like its own.
        live = JobQueue(db).find("verify:10")
        assert live is not None and live.payload == {"manifest_id": 10}
        assert live.run_after.tzinfo is not None

        # Gated until verified; the image never is.
        svc = service_for(old_url, tmp_path, gate=True)
        with pytest.raises(ModelNotReady, match="queued"):
            svc.manifests.get("team/old", "v1")
        assert svc.manifests.get("team/old", "app").digest == digest("b")

        # A push of the same manifest again does not queue a second job.
        with db.write() as conn:
            again = svc.queue.enqueue(conn, "verify", {"manifest_id": 10},
                                      dedupe_key="verify:10")
        assert again == job.id

        # The worker's side works on the migrated model.
        target = svc.verification.target(10)
        assert target is not None and target.digest == digest("a")
        assert target.model.weight_format == "gguf"
        svc.verification.start(10)
        svc.verification.record(target, {"passed": True, "backend": "llama.cpp",
                                         "generation_tps": 5.0},
                                job_id=job.id, worker="w", started_at=datetime.now(UTC))
        assert svc.manifests.get("team/old", "v1").digest == digest("a")
        svc.db.dispose()
    finally:
        db.dispose()
