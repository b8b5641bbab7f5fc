"""Keeping models' jobs and statuses in step with the hardware classes their profiles name
(``registry.services.class_jobs`` says what a class result means).

- ``expire_optional``: an optional class that no worker took within the profile's
  ``optional_timeout`` gets a ``not_measured`` result (its job finished unrun); a queued
  class job whose model is gone is finished unrun.
- ``backfill(namespace)`` (after a profile is set or removed) and ``settle_waiting`` (the
  workers' reconciliation, every 15 s, which also covers a changed ``default_profile``):
  each model gets the jobs its profile now calls for, and a waiting model the status its
  results now decide (a class dropped from ``required`` no longer holds it; a profile
  without required classes gets its job for any worker back). A ready model is never
  taken out of service here: a class newly required of it is measured (again, unless its
  latest result there passed) while it keeps being served.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from registry.db.queue import JobKind
from registry.db.tables import manifests, repositories, utcnow
from registry.profiles import Classes
from registry.services import class_jobs
from registry.services.class_jobs import NOT_MEASURED, PASSED, dedupe_key
from registry.services.common import Service
from registry.spans import duration

READY, WAITING = "ready", ("queued", "verifying")


class ClassUpkeep(Service):
    def __init__(self, db, store, settings, *, verification):
        super().__init__(db, store, settings)
        self.verification = verification
        self.queue = verification.queue
        self.profiles = verification.profiles

    def expire_optional(self) -> int:
        """Optional classes past their timeout: ``not_measured``. Returns how many."""
        now, expired = utcnow(), 0
        for job in self.queue.queued_for_classes(JobKind.VERIFY, now - timedelta(minutes=1)):
            target = self.verification.target(int(job.payload.get("manifest_id", -1)),
                                              job.payload.get("digest"), job.hw_class)
            if target is None:  # the model is gone: nothing will ever run it
                with self.db.write() as conn:
                    self.queue.cancel(conn, job.dedupe_key, {"skipped": "the manifest is "
                                                             "gone or not a model"})
                continue
            if job.hw_class not in target.classes.optional:
                continue
            waited = timedelta(seconds=target.classes.optional_timeout)
            if job.created_at > now - waited:
                continue
            why = f"no worker of class {job.hw_class} took it within {duration(waited)}"
            with self.db.write() as conn:
                if self.queue.cancel(conn, job.dedupe_key, {"skipped": why}) is None:
                    continue  # a worker took it meanwhile
                self.verification.store_result(
                    conn, target, {"passed": False, "verdict": NOT_MEASURED, "reason": why,
                                   "class": job.hw_class},
                    referrer=None, job_id=job.id, worker=None, started_at=now,
                    finished_at=now, regressed=False)
            expired += 1
        return expired

    def backfill(self, namespace: str) -> int:
        """Every ready or waiting model under ``namespace`` (every one for ``""``) settled
        against its profile now. Returns how many got jobs or a new status."""
        return self._settle_all(namespace, (READY, *WAITING))

    def settle_waiting(self) -> int:
        """Every waiting model settled against its profile now (see the module's text)."""
        return self._settle_all(None, WAITING)

    def _settle_all(self, namespace: str | None, statuses: tuple[str, ...]) -> int:
        q = (select(manifests.c.id, repositories.c.name)
             .join(repositories, repositories.c.id == manifests.c.repository_id)
             .where(manifests.c.status.in_(statuses)))
        if namespace:
            q = q.where((repositories.c.name == namespace)
                        | repositories.c.name.startswith(namespace + "/", autoescape=True))
        with self.db.read() as conn:
            rows = conn.execute(q).all()
        return sum(self._settle(row.id, row.name) for row in rows)

    def _settle(self, manifest_id: int, name: str) -> bool:
        """One model's jobs and status against its profile now; True if either changed.
        Decided on a read first: the write (on SQLite, the database's one write lock) is
        taken only when there is something to change."""
        with self.db.read() as conn:
            if not self._apply(conn, manifest_id, name, write=False):
                return False
        with self.db.write() as conn:
            return self._apply(conn, manifest_id, name, write=True)

    def _apply(self, conn, manifest_id: int, name: str, *, write: bool) -> bool:
        q = select(manifests.c.digest, manifests.c.status).where(manifests.c.id == manifest_id)
        # The row lock orders a write after any result being stored for the model.
        row = conn.execute(q.with_for_update() if write else q).first()
        if row is None or row.status not in (READY, *WAITING):
            return False
        classes = self.profiles.applies(name, conn).profile.classes
        latest = class_jobs.latest_by_class(conn, manifest_id)
        live = class_jobs.live_classes(self.queue, manifest_id, row.digest, classes.names)
        if row.status != READY and classes.required:
            found = class_jobs.class_status(latest, classes, live)
            if found is not None:
                if write:
                    conn.execute(update(manifests).where(manifests.c.id == manifest_id)
                                 .values(status=found[0], status_reason=found[1],
                                         status_changed_at=utcnow()))
                return True
        wanted = self._wanted(manifest_id, row.digest, row.status, classes, latest, live)
        if not write:
            return any(wanted(c) for c in class_jobs.job_classes(classes))
        return class_jobs.enqueue(self.queue, conn, manifest_id, row.digest, classes,
                                  only=wanted) is not None

    def _wanted(self, manifest_id: int, digest: str, status: str, classes: Classes,
                latest: dict, live: set[str]):
        """Which of the model's jobs are missing: a required class without a pass, an
        optional one without any result, the job for any worker of a waiting model that
        never had one (its profile no longer requires a class)."""
        def wanted(c: str | None) -> bool:
            if c is None:  # (and not the key migration 0003 queued jobs under)
                return status != READY and self.queue.latest(
                    dedupe_key(manifest_id, digest)) is None and self.queue.latest(
                    f"{JobKind.VERIFY}:{manifest_id}") is None
            if c in live:
                return False
            result = latest.get(c)
            if c in classes.required:
                return result is None or result.verdict != PASSED
            return result is None
        return wanted
