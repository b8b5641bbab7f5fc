"""registry.db.queue.JobQueue on SQLite and on a real PostgreSQL: enqueue in the caller's
transaction, dedupe, claim order, leases and heartbeats, stalled-job recovery, retries
with backoff, release, and several OS processes claiming from one queue."""

from __future__ import annotations

import multiprocessing
import shutil
import threading
import time
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, text

from registry.db import Database, migrate
from registry.db.queue import Job, JobQueue, new_worker_id
from registry.db.tables import jobs
from tests.support.stacks import DATABASES

LEASE = 30.0


class Clock:
    """A settable UTC clock: JobQueue(clock=...) lets a test move time, not sleep."""

    def __init__(self):
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("queue-template") / "assay.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="module")
def postgres_queue_url(postgres_server):
    url = postgres_server.create_database("assay_queue")
    migrate(url)
    return url


@pytest.fixture(params=DATABASES)
def db(request, tmp_path):
    if request.param == "sqlite":
        shutil.copy(request.getfixturevalue("sqlite_template"), tmp_path / "assay.db")
        database = Database(f"sqlite:///{tmp_path / 'assay.db'}")
    else:
        database = Database(request.getfixturevalue("postgres_queue_url"))
        with database.write() as conn:
            conn.execute(delete(jobs))
    yield database
    database.dispose()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def queue(db, clock):
    return JobQueue(db, lease_seconds=LEASE, backoff_base=5, backoff_max=60, clock=clock)


def put(queue: JobQueue, kind="verify", payload=None, **kw) -> int:
    with queue.db.write() as conn:
        return queue.enqueue(conn, kind, payload or {}, **kw)


def test_enqueue_claim_complete(queue, clock):
    job_id = put(queue, payload={"manifest_id": 7}, dedupe_key="verify:7")
    job = queue.claim("w1")
    assert isinstance(job, Job)
    assert (job.id, job.kind, job.payload) == (job_id, "verify", {"manifest_id": 7})
    assert (job.status, job.locked_by, job.attempts) == ("running", "w1", 1)
    assert job.heartbeat_at == job.locked_at == clock.now
    assert queue.claim("w2") is None
    assert queue.complete(job_id, "w1", {"verdict": "passed"})
    done = queue.get(job_id)
    assert (done.status, done.result, done.finished_at) == ("done", {"verdict": "passed"},
                                                           clock.now)
    assert queue.stats() == {"queued": 0, "running": 0, "done": 1, "failed": 0}
    assert not queue.complete(job_id, "w1", {})  # already done


def test_dedupe_is_idempotent_until_the_job_finishes(queue):
    first = put(queue, payload={"n": 1}, dedupe_key="verify:1")
    assert put(queue, payload={"n": 2}, dedupe_key="verify:1") == first
    assert queue.stats()["queued"] == 1
    assert queue.find("verify:1").payload == {"n": 1}
    queue.claim("w1")
    assert put(queue, dedupe_key="verify:1") == first  # running is live too
    assert queue.complete(first, "w1")
    assert queue.find("verify:1") is None
    again = put(queue, payload={"n": 3}, dedupe_key="verify:1")
    assert again != first
    assert queue.latest("verify:1").id == again
    # Jobs without a key never collide.
    assert put(queue) != put(queue)


@pytest.mark.slow  # waits on a writer blocked behind an open transaction
@pytest.mark.parametrize("first_commits", [True, False])
def test_concurrent_enqueues_of_one_key(queue, first_commits):
    """A second enqueue of a key waits for the first transaction: it gets the first job's
    id if that commits, or adds its own job if that rolls back (never an error)."""
    second: list[int] = []

    def enqueue_second():
        second.append(put(queue, payload={"by": "second"}, dedupe_key="verify:5"))

    outcome = nullcontext() if first_commits else pytest.raises(RuntimeError)
    with outcome, queue.db.write() as conn:
        queue.enqueue(conn, "verify", {"by": "first"}, dedupe_key="verify:5")
        t = threading.Thread(target=enqueue_second)
        t.start()
        t.join(0.5)
        assert t.is_alive()  # blocked behind the open transaction
        if not first_commits:
            raise RuntimeError("roll back")
    t.join(30)
    assert queue.stats()["queued"] == 1
    live = queue.find("verify:5")
    assert (live.id, live.payload) == (second[0], {"by": "first" if first_commits else "second"})


@pytest.mark.slow  # every migration up to the one that queues jobs
def test_jobs_queued_by_the_migration_are_claimable(queue):
    # Migration 0003 queues existing models with SQL timestamps (CURRENT_TIMESTAMP).
    with queue.db.write() as conn:
        conn.execute(text(
            "INSERT INTO jobs (kind, payload, status, dedupe_key, attempts, max_attempts, "
            "run_after, created_at) VALUES ('verify', '{\"manifest_id\": 1}', 'queued', "
            "'verify:1', 0, 5, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
    time.sleep(1.1)  # SQLite's CURRENT_TIMESTAMP has whole seconds
    job = JobQueue(queue.db).claim("w1")
    assert (job.payload, job.dedupe_key) == ({"manifest_id": 1}, "verify:1")
    assert job.run_after.tzinfo is not None
    assert abs(job.run_after - datetime.now(UTC)) < timedelta(seconds=10)


def test_enqueue_is_part_of_the_callers_transaction(queue):
    class Boom(Exception):
        pass

    with pytest.raises(Boom), queue.db.write() as conn:
        queue.enqueue(conn, "verify", {}, dedupe_key="verify:9")
        raise Boom
    assert queue.stats()["queued"] == 0
    assert queue.find("verify:9") is None
    assert queue.claim("w1") is None


def test_claim_order_kinds_and_run_after(queue, clock):
    a = put(queue, payload={"n": "a"})
    clock.advance(1)
    b = put(queue, payload={"n": "b"}, kind="deliver")
    clock.advance(1)
    later = put(queue, payload={"n": "later"}, run_after=clock.now + timedelta(seconds=10))
    c = put(queue, payload={"n": "c"})
    assert queue.claim("w1", kinds=["deliver"]).id == b
    assert queue.claim("w1", kinds=["deliver"]) is None
    assert [queue.claim(w).id for w in ("w2", "w3")] == [a, c]
    assert queue.claim("w4") is None  # "later" is not due yet
    clock.advance(10)
    assert queue.claim("w4").id == later


def test_heartbeat_extends_the_lease(queue, clock):
    job_id = put(queue)
    queue.claim("w1")
    clock.advance(LEASE * 0.8)
    assert queue.heartbeat(job_id, "w1")
    assert not queue.heartbeat(job_id, "w2")
    clock.advance(LEASE * 0.8)  # past the claim's lease, within the heartbeat's
    assert queue.requeue_stalled() == 0
    assert queue.get(job_id).heartbeat_at == clock.now - timedelta(seconds=LEASE * 0.8)


def test_stalled_job_is_requeued_and_the_old_owner_is_refused(db, queue, clock):
    job_id = put(queue)
    queue.claim("dead")
    clock.advance(LEASE + 1)
    # Another worker's claim sweeps the stalled job back into the queue and takes it.
    other = JobQueue(db, lease_seconds=LEASE, clock=clock)
    job = other.claim("alive")
    assert (job.id, job.locked_by, job.attempts) == (job_id, "alive", 2)
    assert job.last_error == "worker dead stopped heartbeating"
    assert not queue.heartbeat(job_id, "dead")
    assert not queue.complete(job_id, "dead", {"stale": True})
    assert queue.fail(job_id, "dead", "late", retry=True) is None
    assert not queue.release(job_id, "dead")
    assert other.complete(job_id, "alive", {"ok": True})
    assert queue.get(job_id).result == {"ok": True}


def test_stalled_job_on_its_last_attempt_fails(queue, clock):
    job_id = put(queue, max_attempts=1)
    queue.claim("dead")
    clock.advance(LEASE + 1)
    assert queue.requeue_stalled() == 1
    job = queue.get(job_id)
    assert (job.status, job.locked_by, job.finished_at) == ("failed", None, clock.now)
    assert job.last_error == "worker dead stopped heartbeating"
    assert queue.claim("w2") is None


def test_retry_backs_off_exponentially_then_fails(queue, clock):
    job_id = put(queue, max_attempts=3)
    for attempt, wait in ((1, 5), (2, 10)):
        job = queue.claim("w1")
        assert (job.id, job.attempts) == (job_id, attempt)
        assert queue.fail(job_id, "w1", f"store down {attempt}", retry=True) == "queued"
        job = queue.get(job_id)
        assert job.run_after == clock.now + timedelta(seconds=wait)
        assert (job.status, job.locked_by, job.last_error) == ("queued", None,
                                                               f"store down {attempt}")
        clock.advance(wait - 1)
        assert queue.claim("w1") is None  # still backing off
        clock.advance(1)
    assert queue.claim("w1").attempts == 3
    assert queue.fail(job_id, "w1", "store down 3", retry=True) == "failed"
    job = queue.get(job_id)
    assert (job.status, job.attempts, job.last_error) == ("failed", 3, "store down 3")
    assert job.finished_at == clock.now


def test_backoff_is_capped(queue):
    assert [queue.backoff(n).total_seconds() for n in (1, 2, 3, 4, 5, 6, 100)] == [
        5, 10, 20, 40, 60, 60, 60]


def test_permanent_failure_is_not_retried(queue):
    job_id = put(queue, dedupe_key="verify:3")
    queue.claim("w1")
    assert queue.fail(job_id, "w1", "model does not load", retry=False) == "failed"
    job = queue.get(job_id)
    assert (job.status, job.attempts, job.last_error) == ("failed", 1, "model does not load")
    assert queue.claim("w1") is None
    assert put(queue, dedupe_key="verify:3") != job_id  # a re-run may be asked for


def test_release_gives_the_job_back_uncounted(queue):
    job_id = put(queue)
    queue.claim("w1")
    assert not queue.release(job_id, "w2")
    assert queue.release(job_id, "w1")
    job = queue.get(job_id)
    assert (job.status, job.attempts, job.locked_by) == ("queued", 0, None)
    assert queue.claim("w2").attempts == 1


def test_complete_in_the_callers_transaction(queue):
    job_id = put(queue)
    queue.claim("w1")
    with pytest.raises(RuntimeError), queue.db.write() as conn:
        assert queue.complete(job_id, "w1", {"x": 1}, conn=conn)
        raise RuntimeError("the worker's own writes failed")
    assert queue.get(job_id).status == "running"
    with queue.db.write() as conn:
        assert queue.fail(job_id, "w1", "no", retry=False, conn=conn) == "failed"
    assert queue.get(job_id).status == "failed"


def test_sweeps_are_rate_limited_per_queue(db, clock):
    q = JobQueue(db, lease_seconds=LEASE, sweep_every=3600, clock=clock)
    job_id = put(q)
    assert q.claim("dead").id == job_id  # the first claim sweeps (nothing to sweep)
    put(q)
    clock.advance(LEASE + 1)
    assert q.claim("w2").id != job_id  # no sweep this soon: the stalled job stays put
    assert q.get(job_id).status == "running"
    assert q.requeue_stalled() == 1


def test_new_worker_ids_are_unique():
    assert new_worker_id() != new_worker_id()
    assert new_worker_id("pool").startswith("pool@")


# ------------------------------------------------------------ several OS processes

JOBS, PROCESSES = 200, 4


def _claim_loop(url: str, claims_file: str, start) -> None:
    """Child process: claim and complete until the queue is empty, logging each claim."""
    db = Database(url, pool_size=2)
    queue = JobQueue(db)
    worker_id = new_worker_id("test")
    start.wait(120)  # a barrier: nobody claims before every process is ready
    with open(claims_file, "w") as log:
        while True:
            job = queue.claim(worker_id)
            if job is None:
                counts = queue.stats()
                if counts["queued"] == 0 and counts["running"] == 0:
                    break
                time.sleep(0.005)
                continue
            log.write(f"{job.id} {worker_id}\n")
            log.flush()
            # A little work per job, as real jobs have: without it, on 2 cores, two
            # processes could drain the queue before the others were scheduled at all.
            time.sleep(0.002)
            assert queue.complete(job.id, worker_id, {"by": worker_id})
    db.dispose()


@pytest.mark.slow  # worker processes racing for jobs
@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend", DATABASES)
def test_processes_claim_every_job_exactly_once(backend, request, tmp_path):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'assay.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database("assay_queue_procs")
    migrate(url)
    db = Database(url)
    queue = JobQueue(db)
    with db.write() as conn:
        ids = {queue.enqueue(conn, "noop", {"i": i}) for i in range(JOBS)}
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(PROCESSES)
    files = [tmp_path / f"claims-{n}.txt" for n in range(PROCESSES)]
    procs = [ctx.Process(target=_claim_loop, args=(url, str(f), start)) for f in files]
    for p in procs:
        p.start()
    for p in procs:
        p.join(150)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0] * PROCESSES

    claims = [line.split() for f in files for line in Path(f).read_text().splitlines()]
    claimed = [int(job_id) for job_id, _ in claims]
    assert len(claimed) == len(set(claimed)) == JOBS  # nothing claimed twice
    assert set(claimed) == ids
    assert queue.stats() == {"queued": 0, "running": 0, "done": JOBS, "failed": 0}
    for job_id, worker_id in claims:
        job = queue.get(int(job_id))
        assert (job.attempts, job.locked_by, job.result) == (1, worker_id, {"by": worker_id})
    # Every process took part (a useless test if one process drained the queue alone).
    assert len({worker_id for _, worker_id in claims}) == PROCESSES
    db.dispose()
