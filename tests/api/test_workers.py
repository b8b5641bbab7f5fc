"""Waiting explains itself: worker presence (the ``workers`` table, kept by each worker
process), a queued model's place in the queue, both in the model's REST detail and in
``GET /api/v1/workers``, and what ``assay status`` (``--wait``) prints from them."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import jsonschema
import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from registry.cli import main
from registry.db.tables import utcnow, workers
from tests.support.rest import describe
from tests.support.verification import FakeWorker, push_model, report
from worker.presence import Presence

NO_WORKER = ("no verification worker has ever been seen; start one with `assay worker`, or "
             "run `assay serve` with --workers 1 or more")


def _schema_check(client, answer: dict, schema: str) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    root = {"components": doc["components"], "$ref": f"#/components/schemas/{schema}"}
    jsonschema.Draft202012Validator(root).validate(answer)


def _age(service, worker_id: str, seconds: float) -> None:
    with service.db.write() as conn:
        conn.execute(update(workers).where(workers.c.id == worker_id)
                     .values(last_seen_at=utcnow() - timedelta(seconds=seconds)))


def _cli(*args: str, code: int = 0):
    """``assay ARGS`` (stdout and stderr apart), which must exit with ``code`` (``main``
    returns it, as the console script's ``sys.exit(main())`` takes it)."""
    result = CliRunner().invoke(main, list(args))
    assert (result.exit_code or result.return_value or 0) == code, \
        (args, result.output, result.exception)
    return result


# ------------------------------------------------------------------ REST: queue and presence

def test_a_queued_model_knows_its_place_and_that_no_worker_is_there(client, service):
    digests = [push_model(client, "team/m", f"v{i}", f"v{i}") for i in range(3)]
    places = [describe(client, "team/m", f"v{i}") for i in range(3)]
    assert [p["job"]["ahead"] for p in places] == [0, 1, 2]
    assert places[2]["workers"] == {"present": 0, "busy": 0, "last_seen_at": None}
    _schema_check(client, places[2], "ManifestDetail")

    # A worker takes the first: it is running (no place), the others move up.
    service.workers.announce("w1@host:1:aa", "host", 1)
    run = FakeWorker(service, "team/m", digests[0])
    service.workers.seen("w1@host:1:aa", run.job.id)
    first, third = describe(client, "team/m", "v0"), describe(client, "team/m", "v2")
    assert "ahead" not in first["job"] and first["job"]["status"] == "running"
    assert third["job"]["ahead"] == 1
    assert third["workers"]["present"] == 1 and third["workers"]["busy"] == 1
    _schema_check(client, third, "ManifestDetail")

    # Once it has a verdict nothing waits: no place, no presence.
    run.finish(report())
    done = describe(client, "team/m", "v0")
    assert done["status"] == "ready" and "workers" not in done and "ahead" not in done["job"]


def test_jobs_of_other_kinds_and_later_retries_are_not_ahead(client, service):
    from registry.db.queue import JobKind

    push_model(client, "team/m", "a", "a")
    with service.db.write() as conn:  # a delivery job: workers do not claim it
        service.queue.enqueue(conn, JobKind.DELIVER, {"delivery": 1})
        later = utcnow() + timedelta(hours=1)  # a verification backing off until later
        service.queue.enqueue(conn, JobKind.VERIFY, {"manifest_id": -1}, run_after=later)
    push_model(client, "team/m", "b", "b")
    assert describe(client, "team/m", "b")["job"]["ahead"] == 1  # only a's job


def test_workers_listing_says_busy_idle_stopped_and_lost(client, service):
    svc = service.workers
    for i, name in enumerate(("busy", "idle", "lost", "stopped")):
        svc.announce(f"{name}@h:{i}:00", "h", i)
    svc.seen("busy@h:0:00", 7)
    _age(service, "lost@h:2:00", service.settings.job_lease_seconds + 1)
    svc.stopped("stopped@h:3:00")
    body = client.get("/api/v1/workers").json()
    _schema_check(client, body, "WorkerList")
    states = {w["id"]: (w["state"], w["job"]) for w in body["workers"]}
    assert states == {"busy@h:0:00": ("busy", 7), "idle@h:1:00": ("idle", None),
                      "lost@h:2:00": ("lost", None), "stopped@h:3:00": ("stopped", None)}
    assert body["workers"][-1]["id"] == "lost@h:2:00"  # newest sighting first
    assert (body["presence"]["present"], body["presence"]["busy"]) == (2, 1)
    stopped = next(w for w in body["workers"] if w["state"] == "stopped")
    assert stopped["stopped_at"] is not None and stopped["hostname"] == "h"


def test_rows_unseen_for_a_week_are_pruned_when_a_worker_starts(service):
    svc = service.workers
    svc.announce("old@h:1:00", "h", 1)
    _age(service, "old@h:1:00", 8 * 86400)
    svc.announce("new@h:2:00", "h", 2)
    assert [w["id"] for w in svc.listing()] == ["new@h:2:00"]


# ------------------------------------------------------------------ the worker's side

def test_presence_writes_at_most_every_interval_and_at_once_on_a_new_job(service):
    svc = service.workers
    beat = Presence(svc, "p@h:1:00")

    def seen():
        with service.db.read() as conn:
            return conn.execute(select(workers.c.last_seen_at, workers.c.job_id,
                                       workers.c.pid).where(workers.c.id == "p@h:1:00")).one()

    beat.beat(None)  # the first beat announces the process
    first = seen()
    assert first.job_id is None and first.pid > 0
    beat.beat(None)  # within the interval: no write
    assert seen() == first
    beat.beat(42)  # a job: at once
    assert seen().job_id == 42
    with service.db.write() as conn:  # the row went (pruned, database replaced): re-announced
        conn.execute(workers.delete())
    beat._last = float("-inf")
    beat.beat(43)
    assert seen().job_id == 43
    beat.stopped()
    assert svc.listing()[0]["state"] == "stopped"


def test_a_worker_process_loop_keeps_its_row_and_marks_it_stopped(client, service,
                                                                  settings):
    """The real claim loop (``worker.pool.Worker.run``) on the test's database."""
    from worker.pool import Worker

    w = Worker(settings, name="presence-test")
    thread = threading.Thread(target=w.run, daemon=True)
    try:
        thread.start()
        for _ in range(100):
            rows = {r["id"]: r for r in service.workers.listing()}
            if w.worker_id in rows:
                break
            threading.Event().wait(0.05)
        row = rows[w.worker_id]
        assert row["state"] == "idle" and row["pid"] > 0 and row["hostname"]
    finally:
        w.stop.set()
        thread.join(30)
        w.close()
    assert not thread.is_alive()
    row = {r["id"]: r for r in service.workers.listing()}[w.worker_id]
    assert row["state"] == "stopped"


# ------------------------------------------------------------------ assay status

def test_status_shows_the_queue_and_warns_when_no_worker_was_ever_seen(client, live_url):
    host = live_url.removeprefix("http://")
    for i in range(3):
        push_model(client, "team/m", f"v{i}", f"v{i}")
    out = _cli("status", f"{host}/team/m:v2").stdout
    assert "  queued: 2 jobs ahead" in out
    assert f"  warning: {NO_WORKER}" in out
    assert "  queued: next in line" in _cli("status", f"{host}/team/m:v0").stdout
    state = json.loads(_cli("status", "--json", f"{host}/team/m:v2").stdout)
    assert state["job"]["ahead"] == 2 and state["workers"]["present"] == 0


def test_status_wait_warns_at_once_instead_of_spinning(client, live_url):
    host = live_url.removeprefix("http://")
    push_model(client, "team/m", "v1")
    result = _cli("status", "--wait", "--timeout", "1", f"{host}/team/m:v1", code=2)
    assert result.stderr.startswith(f"warning: {NO_WORKER}\n"), result.stderr
    assert result.stderr.count("warning:") == 1  # once, not on every poll
    assert "error: timed out waiting for" in result.stderr


@pytest.mark.parametrize("seconds, said", [(2 * 3600 + 60, "for 2 h"), (300, "for 5 min"),
                                           (3 * 86400, "for 3 days")])
def test_status_says_how_long_ago_a_worker_was_seen(client, service, live_url, seconds,
                                                    said):
    host = live_url.removeprefix("http://")
    push_model(client, "team/m", "v1")
    service.workers.announce("gone@h:1:00", "h", 1)
    _age(service, "gone@h:1:00", seconds)
    out = _cli("status", f"{host}/team/m:v1").stdout
    assert f"  warning: no verification worker has been seen {said}; start one" in out


def test_status_says_nothing_of_workers_while_one_is_there(client, service, live_url):
    host = live_url.removeprefix("http://")
    push_model(client, "team/m", "v1")
    service.workers.announce("here@h:1:00", "h", 1)
    result = _cli("status", "--wait", "--timeout", "0", f"{host}/team/m:v1", code=2)
    assert "warning" not in result.output and "  queued: next in line" in result.stdout
