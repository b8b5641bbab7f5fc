"""Worker presence: which worker processes exist, and what a queued model waits for.

Each worker process (``worker.pool``) keeps one row of the ``workers`` table current:
``announce`` when it starts, ``seen`` on its idle polls and its job heartbeats (at most
every ``seen_every`` seconds, and at once when it takes or finishes a job), ``stopped``
when it stops cleanly. A worker is *present* while its row is not stopped and was seen
within ``job_lease_seconds``: the time after which the queue itself takes a silent
worker's job back (``registry.db.queue``). A worker killed outright keeps its row, so
"last seen" still says when verification last ran; rows are pruned ``PRUNE_AFTER``
past their last sighting.

This is the one class that reads or writes ``workers``. Its answers:

- ``listing()``: every known worker, newest sighting first, with its capabilities, labels,
  hardware classes and what it is running (``GET /api/v1/workers``, ``assay workers``);
- ``presence()``: how many workers are present and busy, and the newest sighting;
- ``waiting(job_id)``: for a model whose verification job is live, the queued jobs a
  worker takes before it and the presence above (``assay status`` reads both).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update

from registry.db import Database
from registry.db.queue import JobKind, JobQueue
from registry.db.tables import as_utc, isoformat, utcnow, workers
from registry.services.classes import ClassService
from registry.services.common import Service
from registry.settings import Settings
from registry.spans import duration
from registry.storage import BlobStore

PRUNE_AFTER = timedelta(days=7)
# The job kinds worker processes claim (webhook deliveries run in a thread of their own).
WORKER_KINDS = (JobKind.VERIFY, JobKind.VERIFY_REMOTE, JobKind.MIRROR_FILL)


class WorkerService(Service):
    def __init__(self, db: Database, store: BlobStore, settings: Settings, *,
                 queue: JobQueue, classes: ClassService):
        super().__init__(db, store, settings)
        self.queue = queue
        self.classes = classes

    @property
    def seen_every(self) -> float:
        """Seconds between a worker's sightings: a quarter of the lease, so that every job
        heartbeat (each third of it) is recorded and a present worker is never taken
        for gone."""
        return self.settings.job_lease_seconds / 4

    # ---- the worker's side -----------------------------------------------------------
    def announce(self, worker_id: str, hostname: str, pid: int, *,
                 capabilities: dict | None = None, labels: dict | None = None) -> None:
        """A worker process starts: its row, idle, seen now, with what it is and can run
        (``verifier.capabilities``) and its operator's labels; rows unseen for
        ``PRUNE_AFTER`` go."""
        now = utcnow()
        values = {"hostname": hostname, "pid": pid, "started_at": now, "last_seen_at": now,
                  "stopped_at": None, "job_id": None,
                  "capabilities": json.dumps(capabilities or {}, sort_keys=True),
                  "labels": json.dumps(labels or {}, sort_keys=True)}
        with self.db.write() as conn:
            conn.execute(delete(workers).where(workers.c.last_seen_at < now - PRUNE_AFTER))
            conn.execute(self.db.upsert(workers, ["id"], values, id=worker_id, **values))

    def seen(self, worker_id: str, job_id: int | None) -> bool:
        """The worker is alive, running ``job_id`` (None: idle). False when it has no row
        (pruned, or the database was replaced): announce again."""
        with self.db.write() as conn:
            done = conn.execute(update(workers).where(workers.c.id == worker_id)
                                .values(last_seen_at=utcnow(), job_id=job_id,
                                        stopped_at=None))
            return done.rowcount == 1

    def stopped(self, worker_id: str) -> None:
        """The worker stopped cleanly (its job, if any, was handed back)."""
        now = utcnow()
        with self.db.write() as conn:
            conn.execute(update(workers).where(workers.c.id == worker_id)
                         .values(stopped_at=now, last_seen_at=now, job_id=None))

    # ---- people and scripts ------------------------------------------------------------
    def _cutoff(self) -> datetime:
        return utcnow() - timedelta(seconds=self.settings.job_lease_seconds)

    def listing(self) -> list[dict]:
        """Every known worker, newest sighting first; ``state`` is ``busy`` or ``idle``
        (present), ``stopped`` (cleanly) or ``lost`` (not seen within the lease)."""
        cutoff = self._cutoff()
        with self.db.read() as conn:
            rows = conn.execute(select(workers).order_by(workers.c.last_seen_at.desc(),
                                                         workers.c.id)).all()
        out = [_worker_json(row, cutoff) for row in rows]
        defined = self.classes.list()
        for w in out:
            w["classes"] = self.classes.of(w["capabilities"], w["labels"], defined)
            if w["job"] is not None and w["state"] == "busy":
                w["running"] = self._running(w["job"])
        return out

    def _running(self, job_id: int) -> dict | None:
        """What a busy worker's job is about: its kind and target."""
        job = self.queue.get(job_id)
        if job is None:
            return None
        payload = job.payload or {}
        target = payload.get("repository") or payload.get("reference")
        digest = payload.get("digest")
        return {"job": job_id, "kind": job.kind, "class": job.hw_class,
                "target": f"{target}@{digest}" if target and digest else target or digest}

    def presence(self) -> dict:
        """``{"present", "busy", "last_seen_at"}``: workers present now, how many of them
        run a job, and the newest sighting of any worker (None: never seen)."""
        cutoff = self._cutoff()
        live = (workers.c.stopped_at.is_(None), workers.c.last_seen_at >= cutoff)
        with self.db.read() as conn:
            present = conn.execute(select(func.count()).where(*live)).scalar_one()
            busy = conn.execute(select(func.count())
                                .where(*live, workers.c.job_id.is_not(None))).scalar_one()
            last = conn.execute(select(func.max(workers.c.last_seen_at))).scalar()
        return {"present": present, "busy": busy, "last_seen_at": isoformat(last)}

    def waiting(self, job_id: int) -> dict:
        """What a live job waits on: ``ahead`` (queued jobs a worker takes before it;
        None unless it is queued) and ``workers`` (``presence()``)."""
        return {"ahead": self.queue.position(job_id, WORKER_KINDS),
                "workers": self.presence()}

    def class_waiting(self, name: str, known: list[dict] | None = None) -> str | None:
        """None while a worker of hardware class ``name`` is present; else what a job for
        the class waits for ("waiting for a worker of class cuda; none has been seen for
        2h"). ``known``: ``listing()``, if the caller has it."""
        if name not in {c.name for c in self.classes.list()}:
            return (f"waiting for a worker of class {name}; no class {name} is defined "
                    f"(assay class set {name} ...)")
        mine = [w for w in (self.listing() if known is None else known)
                if name in w["classes"]]
        if any(w["state"] in ("idle", "busy") for w in mine):
            return None
        if not mine:
            return f"waiting for a worker of class {name}; none has been seen"
        last = max(datetime.fromisoformat(w["last_seen_at"]) for w in mine)
        return (f"waiting for a worker of class {name}; none has been seen for "
                f"{duration(utcnow() - last)}")

    def explain(self, state: dict) -> None:
        """Add to a manifest's state (``VerificationService.state``) what its live jobs
        wait on: ``job.ahead`` and ``workers`` while its job is live, and per hardware
        class ``waiting`` while that class's job is queued with no worker to take it; the
        status's ``reason``, while it is queued without one, says the first of those."""
        job = state.get("job")
        if job is not None and job["status"] in ("queued", "running"):
            waiting = self.waiting(job["id"])
            if waiting["ahead"] is not None:
                job["ahead"] = waiting["ahead"]
            state["workers"] = waiting["workers"]
        classes = (state.get("verification") or {}).get("classes") or {}
        queued = [(n, c) for n, c in classes.items() if c["status"] == "queued"]
        known = self.listing() if queued else []
        for name, entry in queued:
            why = self.class_waiting(name, known)
            if why is not None:
                entry["waiting"] = why
        if state.get("status") == "queued" and state.get("reason") is None:
            state["reason"] = next((c["waiting"] for _, c in queued
                                    if c["required"] and c.get("waiting")), None)


def _worker_json(row, cutoff: datetime) -> dict:
    if row.stopped_at is not None:
        state = "stopped"
    elif as_utc(row.last_seen_at) < cutoff:
        state = "lost"
    else:
        state = "busy" if row.job_id is not None else "idle"
    return {"id": row.id, "hostname": row.hostname, "pid": row.pid, "state": state,
            "job": row.job_id, "running": None,
            "capabilities": _object(row.capabilities), "labels": _object(row.labels),
            "started_at": isoformat(row.started_at),
            "last_seen_at": isoformat(row.last_seen_at),
            "stopped_at": isoformat(row.stopped_at)}


def _object(text: str | None) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
