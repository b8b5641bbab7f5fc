"""The job queue on SQL: the one class that reads or writes the ``jobs`` table.

A job's life::

    enqueue ──> queued ──claim──> running ──complete──> done
                  ^                │ │ │
                  │   fail(retry)  │ │ └──fail(permanent) / out of attempts──> failed
                  ├────────────────┘ │
                  │   release (graceful shutdown; the attempt is not counted)
                  ├──────────────────┘
                  └── requeue_stalled: no heartbeat for ``lease_seconds`` (worker died)
    queued ──cancel──> done, unrun (its work was done another way: adopted results)

**Enqueue** takes the caller's connection, so a job is created in the same transaction
as the writes that call for it (the manifest PUT): both commit or neither does. A
``dedupe_key`` is unique among *live* (queued or running) jobs (a partial unique index),
so enqueueing a key that is already live is a no-op returning the live job's id; once
that job is done or failed the key can be enqueued again (an idempotent re-run).

**Claims** take the oldest due job (``run_after <= now``, then by id) in one
``UPDATE ... WHERE id = (SELECT ... LIMIT 1) RETURNING``:

- PostgreSQL: the inner SELECT is ``FOR UPDATE SKIP LOCKED``; concurrent claimers lock
  different rows and never wait on each other.
- SQLite: every write transaction is ``BEGIN IMMEDIATE`` (``registry.db``), so exactly
  one claimer holds the database's write lock from the SELECT to the commit; the plain
  sub-select is therefore atomic with its UPDATE. Because that lock is global, a claim
  first checks for a due job with a lock-free WAL read and only then takes the lock, so
  idle workers polling an empty queue do not compete with the registry's writers.

**Leases.** The claimer's ``worker_id`` goes into ``locked_by`` and every later call for
the job (heartbeat, complete, fail, release) is refused (``False`` / ``None``) unless the
job is still running under that id. A worker that lost its lease (its job was re-queued
and perhaps claimed by another worker) therefore cannot overwrite the new owner's work;
a refused heartbeat tells it to abandon the job. A ``worker_id`` must name one claimer
holding one job at a time, unique for the process's life: use ``new_worker_id()``.
Workers heartbeat every ``heartbeat_every`` seconds (a third of the lease); a running
job whose last heartbeat is older than ``lease_seconds`` is *stalled*: it goes back to
``queued`` (its attempt stays counted) or to ``failed`` when it was the last attempt.
Claims sweep for stalled jobs themselves, at most every ``sweep_every`` seconds per
``JobQueue``; ``requeue_stalled()`` sweeps on demand.

**Retries.** ``fail(retry=True)`` is for infrastructure errors (blob store down, worker
disk full): the job is re-queued to run after ``min(backoff_max, backoff_base *
2**(attempts-1))`` seconds, unless it has used ``max_attempts`` claims. ``retry=False`` is
for a verdict that will not change by retrying (the model does not load): ``failed``.

**Time.** Every timestamp is a timezone-aware UTC ``datetime`` computed here and sent
as a parameter (never the database's ``now()``), so SQLite and PostgreSQL compare the
same values. Machines sharing a queue need clocks in sync to well under the lease.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    bindparam,
    case,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from registry.db import Database
from registry.db.tables import as_utc, jobs, utcnow


def _as_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


class JobKind(StrEnum):
    """Every kind of job the registry enqueues and the worker runs.

    The values are what ``jobs.kind`` stores: renaming one strands the jobs already
    queued under the old name. The queue itself takes any string (tests use their own).
    """

    VERIFY = "verify"  # a model manifest of this registry (registry.services.verification)
    VERIFY_REMOTE = "verify_remote"  # a model in another registry (registry.services.remote)
    DELIVER = "deliver"  # one outgoing webhook delivery (registry.services.events)
    MIRROR_FILL = "mirror_fill"  # the blobs of a mirrored manifest (services.mirror_fetch)


QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
STATUSES = (QUEUED, RUNNING, DONE, FAILED)
# Must read exactly as the WHERE of the partial index uq_jobs_live_dedupe_key: an
# ON CONFLICT target names a partial index by repeating its predicate.
_LIVE_PREDICATE = "status IN ('queued', 'running')"


def new_worker_id(prefix: str = "worker") -> str:
    """A claimer id unique to this process: ``<prefix>@<host>:<pid>:<random>``."""
    return f"{prefix}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Job:
    """A snapshot of one ``jobs`` row (datetimes timezone-aware, in UTC)."""

    id: int
    kind: str
    payload: dict[str, Any]
    status: str
    dedupe_key: str | None
    attempts: int
    max_attempts: int
    run_after: datetime
    locked_by: str | None
    locked_at: datetime | None
    heartbeat_at: datetime | None
    last_error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None
    hw_class: str | None = None  # only a worker of this hardware class may claim it

    @classmethod
    def from_row(cls, row) -> Job:
        m = row._mapping
        return cls(
            id=m["id"], kind=m["kind"], payload=json.loads(m["payload"]), status=m["status"],
            dedupe_key=m["dedupe_key"], attempts=m["attempts"],
            max_attempts=m["max_attempts"], run_after=_as_utc(m["run_after"]),
            locked_by=m["locked_by"], locked_at=_as_utc(m["locked_at"]),
            heartbeat_at=_as_utc(m["heartbeat_at"]), last_error=m["last_error"],
            result=None if m["result"] is None else json.loads(m["result"]),
            created_at=_as_utc(m["created_at"]), finished_at=_as_utc(m["finished_at"]),
            hw_class=m["hw_class"],
        )




def _json(value: dict | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


class _Statements:
    """Every statement the queue runs, built once per dialect with bound parameters.

    Building a SQLAlchemy statement and its cache key costs more CPU than running a
    one-row UPDATE on SQLite, so claims and completions reuse these objects.
    Parameters: ``j_id`` job id, ``w_id`` worker id, ``t_now`` / ``t_cut`` times,
    ``t_run`` run_after, ``kinds`` / ``classes`` (expanding), ``res`` / ``err`` text.
    Claims and the due-check are keyed by (by kind, by class): whether they filter on
    the job kinds and on the hardware classes the claimer is of.
    """

    def __init__(self, is_sqlite: bool):
        t_now = bindparam("t_now", type_=DateTime(timezone=True))
        live = jobs.c.status.in_((QUEUED, RUNNING))
        owned = (jobs.c.id == bindparam("j_id"), jobs.c.status == RUNNING,
                 jobs.c.locked_by == bindparam("w_id"))

        due = (jobs.c.status == QUEUED, jobs.c.run_after <= t_now)
        by_kind = jobs.c.kind.in_(bindparam("kinds", expanding=True))
        # A job for a hardware class goes only to a worker of that class; the claim
        # itself decides it, so no worker ever holds a job it must give back.
        by_class = (jobs.c.hw_class.is_(None)
                    | jobs.c.hw_class.in_(bindparam("classes", expanding=True)))
        variants = {(k, c): (*due, *((by_kind,) if k else ()), *((by_class,) if c else ()))
                    for k in (False, True) for c in (False, True)}
        self.any_due = {k: select(jobs.c.id).where(*w).limit(1) for k, w in variants.items()}
        self.claim = {}
        for k, w in variants.items():
            pick = select(jobs.c.id).where(*w).order_by(jobs.c.run_after, jobs.c.id).limit(1)
            if not is_sqlite:
                # Rows another claimer has locked are skipped, not waited for. SQLite needs
                # no row lock: BEGIN IMMEDIATE gives this transaction the only write lock,
                # so nothing can change between the sub-select and the UPDATE.
                pick = pick.with_for_update(skip_locked=True)
            self.claim[k] = (
                update(jobs).where(jobs.c.id == pick.scalar_subquery())
                .values(status=RUNNING, locked_by=bindparam("w_id"), locked_at=t_now,
                        heartbeat_at=t_now, attempts=jobs.c.attempts + 1)
                .returning(*jobs.c))

        self.heartbeat = update(jobs).where(*owned).values(heartbeat_at=t_now)
        self.complete = (update(jobs).where(*owned)
                         .values(status=DONE, result=bindparam("res"), finished_at=t_now))
        pick = select(jobs.c.attempts, jobs.c.max_attempts).where(*owned)
        self.fail_pick = pick if is_sqlite else pick.with_for_update()
        by_id = update(jobs).where(jobs.c.id == bindparam("j_id"))
        self.fail_retry = by_id.values(
            status=QUEUED, run_after=bindparam("t_run", type_=DateTime(timezone=True)),
            last_error=bindparam("err"), locked_by=None, locked_at=None, heartbeat_at=None)
        self.fail_final = by_id.values(status=FAILED, finished_at=t_now,
                                       last_error=bindparam("err"))
        self.release = update(jobs).where(*owned).values(
            status=QUEUED, attempts=jobs.c.attempts - 1,
            run_after=bindparam("t_run", type_=DateTime(timezone=True)),
            locked_by=None, locked_at=None, heartbeat_at=None)

        stalled = (jobs.c.status == RUNNING,
                   jobs.c.heartbeat_at.is_(None)
                   | (jobs.c.heartbeat_at < bindparam("t_cut", type_=DateTime(timezone=True))))
        pick = select(jobs.c.id).where(*stalled)
        if not is_sqlite:
            # A row being heartbeated (or swept by another claimer) right now is locked:
            # skip it rather than wait. Rows locked here are re-checked against the WHERE.
            pick = pick.with_for_update(skip_locked=True)
        last = jobs.c.attempts >= jobs.c.max_attempts
        self.sweep = (
            update(jobs).where(jobs.c.id.in_(pick), *stalled)
            .values(status=case((last, literal(FAILED)), else_=literal(QUEUED)),
                    finished_at=case((last, t_now), else_=None),
                    run_after=case((last, jobs.c.run_after), else_=t_now),
                    # SET expressions read the row as it was, so this is the old owner.
                    last_error=literal("worker ") + func.coalesce(jobs.c.locked_by, "?")
                    + literal(" stopped heartbeating"),
                    locked_by=None, locked_at=None, heartbeat_at=None))

        insert = sqlite.insert if is_sqlite else postgresql.insert
        self.insert = jobs.insert().returning(jobs.c.id)
        self.insert_dedupe = (insert(jobs)
                              .on_conflict_do_nothing(index_elements=[jobs.c.dedupe_key],
                                                      index_where=text(_LIVE_PREDICATE))
                              .returning(jobs.c.id))
        self.live_id = select(jobs.c.id).where(jobs.c.dedupe_key == bindparam("key"), live)

        self.get = select(jobs).where(jobs.c.id == bindparam("j_id"))
        self.find = select(jobs).where(jobs.c.dedupe_key == bindparam("key"), live)
        self.latest = (select(jobs).where(jobs.c.dedupe_key == bindparam("key"))
                       .order_by(jobs.c.id.desc()).limit(1))


_STATEMENTS: dict[bool, _Statements] = {}


def _statements(is_sqlite: bool) -> _Statements:
    if is_sqlite not in _STATEMENTS:
        _STATEMENTS[is_sqlite] = _Statements(is_sqlite)
    return _STATEMENTS[is_sqlite]


class JobQueue:
    """All reads and writes of the ``jobs`` table (see the module docstring).

    ``lease_seconds``: a running job whose heartbeat is older than this is stalled.
    ``backoff_base`` / ``backoff_max``: seconds, for ``fail(retry=True)``.
    ``sweep_every``: how often (seconds) claims look for stalled jobs; default half the
    lease, at most 30 s. ``clock``: returns the current aware UTC time (tests move it).
    """

    def __init__(self, db: Database, *, lease_seconds: float = 60.0,
                 backoff_base: float = 5.0, backoff_max: float = 600.0,
                 sweep_every: float | None = None,
                 clock: Callable[[], datetime] = utcnow):
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self.db = db
        self.lease_seconds = float(lease_seconds)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.sweep_every = (min(self.lease_seconds / 2, 30.0) if sweep_every is None
                            else float(sweep_every))
        self.heartbeat_every = self.lease_seconds / 3
        self._clock = clock
        self._sql = _statements(db.is_sqlite)
        self._last_sweep: float | None = None  # time.monotonic() of the last sweep

    # ------------------------------------------------------------------ enqueue

    def enqueue(self, conn: Connection, kind: str, payload: dict[str, Any], *,
                dedupe_key: str | None = None, max_attempts: int = 5,
                run_after: datetime | None = None, hw_class: str | None = None) -> int:
        """Add a job inside the caller's transaction ``conn``; return its id.

        With a ``dedupe_key`` already held by a queued or running job nothing is added
        and that job's id is returned. Safe against concurrent enqueues of the same key:
        on PostgreSQL the INSERT waits for the other transaction and then does nothing
        (ON CONFLICT on the partial unique index); on SQLite writers are serialised.
        The job exists only if ``conn``'s transaction commits. ``run_after``: not
        before this time (a naive datetime is taken as UTC); default now. ``hw_class``:
        only a claimer of that hardware class may take it (see ``claim``).
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        now = self._clock()
        values = dict(kind=str(kind), payload=_json(payload), status=QUEUED,
                      dedupe_key=dedupe_key, attempts=0, max_attempts=max_attempts,
                      run_after=now if run_after is None else _as_utc(run_after),
                      created_at=now, hw_class=hw_class)
        if dedupe_key is None:
            return conn.execute(self._sql.insert, values).scalar_one()
        # A conflict means a live job holds the key; read its id. On PostgreSQL that job
        # may finish between the two statements (READ COMMITTED: each statement sees the
        # latest commits), freeing the key, so try again; that cannot repeat for long.
        for _ in range(5):
            new_id = conn.execute(self._sql.insert_dedupe, values).scalar()
            if new_id is not None:
                return new_id
            live = conn.execute(self._sql.live_id, {"key": dedupe_key}).scalar()
            if live is not None:
                return live
        raise RuntimeError(f"could not enqueue or find a live job for key {dedupe_key!r}")

    # ------------------------------------------------------------------- claims

    def claim(self, worker_id: str, kinds: Iterable[str] | None = None,
              classes: Iterable[str] | None = None) -> Job | None:
        """Take the oldest due queued job for ``worker_id``, or None if there is none.

        The job becomes ``running``, locked by ``worker_id``, heartbeat now, attempts+1.
        ``kinds`` limits the claim to those job kinds; ``classes`` (the hardware classes
        the claimer is of; may be empty) to jobs for no class or one of those. Sweeps
        stalled jobs back into the queue first when a sweep is due (see ``sweep_every``).
        """
        sweep = self._sweep_due()
        now = self._clock()
        params: dict[str, Any] = {"t_now": now, "w_id": worker_id}
        if kinds is not None:
            params["kinds"] = [str(k) for k in kinds]
        if classes is not None:
            params["classes"] = [str(c) for c in classes]
        variant = (kinds is not None, classes is not None)
        if self.db.is_sqlite and not sweep:
            # Lock-free WAL read first: the write lock below is the whole database's.
            with self.db.read() as conn:
                if conn.execute(self._sql.any_due[variant], params).first() is None:
                    return None
        with self.db.write() as conn:
            if sweep:
                self._requeue_stalled(conn, now)
            row = conn.execute(self._sql.claim[variant], params).first()
        return None if row is None else Job.from_row(row)

    def heartbeat(self, job_id: int, worker_id: str) -> bool:
        """Extend ``worker_id``'s lease on a running job.

        False means the job is no longer this worker's (re-queued as stalled, maybe
        claimed by another worker, or finished): the worker must abandon it.
        """
        with self.db.write() as conn:
            res = conn.execute(self._sql.heartbeat, {"j_id": job_id, "w_id": worker_id,
                                                     "t_now": self._clock()})
            return res.rowcount == 1

    def complete(self, job_id: int, worker_id: str, result: dict[str, Any] | None = None, *,
                 conn: Connection | None = None) -> bool:
        """Mark ``worker_id``'s running job done with ``result`` (a JSON-able dict).

        Pass ``conn`` to finish the job in the same transaction as the worker's own
        writes (the verification row, the manifest's status). False means the lease was
        lost and nothing was changed; with ``conn``, roll back your writes then.
        ``last_error`` is kept: it tells why earlier attempts were retried.
        """
        params = {"j_id": job_id, "w_id": worker_id, "res": _json(result),
                  "t_now": self._clock()}
        return self._in(conn, lambda c: c.execute(self._sql.complete, params).rowcount == 1)

    def fail(self, job_id: int, worker_id: str, error: str, *, retry: bool,
             conn: Connection | None = None) -> str | None:
        """Record that ``worker_id``'s running job failed with ``error``.

        ``retry=True`` (infrastructure error): re-queue with exponential backoff,
        ``run_after = now + min(backoff_max, backoff_base * 2**(attempts-1))``, unless
        the job has had ``max_attempts`` attempts, when it is failed. ``retry=False``
        (a permanent verdict): failed. Returns the job's new status (``"queued"`` or
        ``"failed"``), or None if the lease was lost (nothing changed). ``conn`` as for
        ``complete``.
        """
        def run(c: Connection) -> str | None:
            row = c.execute(self._sql.fail_pick, {"j_id": job_id, "w_id": worker_id}).first()
            if row is None:
                return None
            now = self._clock()
            if retry and row.attempts < row.max_attempts:
                c.execute(self._sql.fail_retry, {"j_id": job_id, "err": error,
                                                 "t_run": now + self.backoff(row.attempts)})
                return QUEUED
            c.execute(self._sql.fail_final, {"j_id": job_id, "err": error, "t_now": now})
            return FAILED

        return self._in(conn, run)

    def release(self, job_id: int, worker_id: str, delay: float = 0.0) -> bool:
        """Give ``worker_id``'s running job back (graceful shutdown; a worker that cannot
        run it while another may): queued again, due in ``delay`` seconds, the attempt
        not counted. False if the job was no longer this worker's."""
        now = self._clock()
        with self.db.write() as conn:
            res = conn.execute(self._sql.release, {
                "j_id": job_id, "w_id": worker_id, "t_now": now,
                "t_run": now + timedelta(seconds=delay)})
            return res.rowcount == 1

    def cancel(self, conn: Connection, dedupe_key: str, result: dict[str, Any]) -> int | None:
        """Inside the caller's transaction ``conn``: finish the *queued* job holding
        ``dedupe_key`` unrun, as ``done`` with ``result`` (its work was done another way).
        A running job is left to its worker. Returns the cancelled job's id, or None.

        On PostgreSQL a claim racing this UPDATE holds the row lock first; the UPDATE
        then re-reads the row, finds it running, and changes nothing."""
        return conn.execute(
            update(jobs).where(jobs.c.dedupe_key == dedupe_key, jobs.c.status == QUEUED)
            .values(status=DONE, result=_json(result), finished_at=self._clock())
            .returning(jobs.c.id)).scalar()

    def requeue_stalled(self) -> int:
        """Put running jobs without a heartbeat for ``lease_seconds`` back in the queue
        (or fail them if that was their last attempt); return how many were swept."""
        with self.db.write() as conn:
            return self._requeue_stalled(conn, self._clock())

    def backoff(self, attempts: int) -> timedelta:
        """The wait before retrying a job that has had ``attempts`` attempts."""
        exp = min(max(attempts - 1, 0), 62)  # 2**62 s is already far past any backoff_max
        return timedelta(seconds=min(self.backoff_max, self.backoff_base * 2 ** exp))

    # -------------------------------------------------------------------- reads

    def get(self, job_id: int) -> Job | None:
        return self._one(self._sql.get, {"j_id": job_id})

    def find(self, dedupe_key: str) -> Job | None:
        """The live (queued or running) job holding ``dedupe_key``, if any."""
        return self._one(self._sql.find, {"key": dedupe_key})

    def latest(self, dedupe_key: str) -> Job | None:
        """The newest job ever enqueued with ``dedupe_key``, whatever its status."""
        return self._one(self._sql.latest, {"key": dedupe_key})

    def position(self, job_id: int, kinds: Iterable[str]) -> int | None:
        """How many queued jobs of ``kinds`` claims take before job ``job_id`` (claims
        take the oldest due job: by ``run_after``, then id); None unless it is queued. For
        a job of a hardware class, the jobs a worker of that class may take (its class's
        and those for any worker)."""
        with self.db.read() as conn:
            job = conn.execute(select(jobs.c.run_after, jobs.c.status, jobs.c.hw_class)
                               .where(jobs.c.id == job_id)).first()
            if job is None or job.status != QUEUED:
                return None
            at = job.run_after
            q = select(func.count()).where(
                jobs.c.status == QUEUED, jobs.c.kind.in_([str(k) for k in kinds]),
                (jobs.c.run_after < at) | ((jobs.c.run_after == at) & (jobs.c.id < job_id)))
            if job.hw_class is not None:
                q = q.where(jobs.c.hw_class.is_(None) | (jobs.c.hw_class == job.hw_class))
            return conn.execute(q).scalar_one()

    def queued_for_classes(self, kind: str, created_before: datetime) -> list[Job]:
        """Queued jobs of ``kind`` for a hardware class, created before ``created_before``,
        oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(select(jobs).where(
                jobs.c.kind == str(kind), jobs.c.status == QUEUED,
                jobs.c.hw_class.is_not(None), jobs.c.created_at < created_before)
                .order_by(jobs.c.id)).all()
        return [Job.from_row(r) for r in rows]

    def stats(self, kinds: Iterable[str] | None = None) -> dict[str, int]:
        """Number of jobs per status (every status present, zeros included)."""
        q = select(jobs.c.status, func.count()).group_by(jobs.c.status)
        if kinds is not None:
            q = q.where(jobs.c.kind.in_([str(k) for k in kinds]))
        with self.db.read() as conn:
            counts = dict(conn.execute(q).all())
        return {s: counts.get(s, 0) for s in STATUSES} | counts

    # ---------------------------------------------------------------- internals

    def _one(self, stmt, params: dict) -> Job | None:
        with self.db.read() as conn:
            row = conn.execute(stmt, params).first()
        return None if row is None else Job.from_row(row)

    def _in(self, conn: Connection | None, fn):
        if conn is not None:
            return fn(conn)
        with self.db.write() as c:
            return fn(c)

    def _sweep_due(self) -> bool:
        now = time.monotonic()
        if self._last_sweep is not None and now - self._last_sweep < self.sweep_every:
            return False
        self._last_sweep = now
        return True

    def _requeue_stalled(self, conn: Connection, now: datetime) -> int:
        cutoff = now - timedelta(seconds=self.lease_seconds)
        return conn.execute(self._sql.sweep, {"t_now": now, "t_cut": cutoff}).rowcount

    # ------------------------------------------------------------------ figures

    def counts(self) -> dict[tuple[str, str], int]:
        """``{(kind, status): number of jobs}`` for every pair that has at least one job
        (no zeros), in the database's GROUP BY order."""
        q = (select(jobs.c.kind, jobs.c.status, func.count())
             .group_by(jobs.c.kind, jobs.c.status))
        with self.db.read() as conn:
            return {(kind, status): n for kind, status, n in conn.execute(q).all()}
