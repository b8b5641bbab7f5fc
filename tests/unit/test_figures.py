"""The reads behind /metrics and /readyz, on SQLite and on a real PostgreSQL:
``JobQueue.counts`` (jobs by kind and status), ``read_figures`` (the scrape's figures) and
``Database.ping``."""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from registry.db import Database, migrate
from registry.db.queue import JobQueue
from registry.db.tables import jobs
from registry.services.figures import Figures, read_figures
from tests.support.stacks import DATABASES


@pytest.fixture(params=DATABASES)
def db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'assay.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database("assay_figures")
    migrate(url)
    database = Database(url)
    with database.write() as conn:
        conn.execute(delete(jobs))
    yield database
    database.dispose()


def test_counts_by_kind_and_status_without_zeros(db):
    queue = JobQueue(db)
    assert queue.counts() == {}
    with db.write() as conn:
        for i in range(3):
            queue.enqueue(conn, "verify", {"i": i})
        queue.enqueue(conn, "deliver", {})
    job = queue.claim("w1", kinds=["deliver"])
    assert queue.complete(job.id, "w1")
    assert queue.counts() == {("verify", "queued"): 3, ("deliver", "done"): 1}


def test_read_figures_of_an_empty_registry(db):
    assert read_figures(db, JobQueue(db)) == Figures(
        jobs={}, manifest_statuses={}, verifications=[], quarantined_blobs=0)


def test_ping_answers_and_fails_when_the_database_is_gone(db, tmp_path):
    db.ping()
    if db.is_sqlite:
        gone = Database(f"sqlite:///{tmp_path / 'dir.db'}")
        (tmp_path / "dir.db").mkdir()
        with pytest.raises(Exception, match="unable to open"):
            gone.ping()
        gone.dispose()
