"""The worker pool: N processes that claim verification jobs and run the verifier.

``run_pool(settings, n)`` (``assay worker --concurrency N``, and ``assay serve --workers N``
in the background) starts N worker processes (``spawn``: no state shared with the parent)
and supervises them: a process that dies unexpectedly is replaced (its job, if any, is
re-queued by the queue's lease once its heartbeats stop).

One worker process loops: claim a job of a kind in its dispatch table (``verify`` here;
``verify_remote``: ``worker.remote``). A ``verify`` job: mark the model "verifying" ->
materialise its files (``worker.materialize``) -> ``verifier.verify`` with the limits from
the settings and the namespace's policy -> record the report (SQL row, status, referrer
artifact) -> complete the job. A heartbeat thread renews the job's lease; a refused
heartbeat (the job was re-queued because this worker looked dead) makes the worker drop
the result. The process keeps its row of the ``workers`` table current while it runs
(``worker.presence``: idle polls and job heartbeats), so ``assay status`` can say whether
any worker is there to take a queued model. Failures:

- the model is bad (does not load, crashes, too slow ...): recorded as a failed
  verification; the job is *done* (re-running would say the same);
- the layout cannot be verified (``LayoutUnsupported``): also a failed verification;
- infrastructure (store unreachable, database down, backend package missing): the job is
  failed with ``retry=True`` and comes back after a backoff.

Graceful shutdown (SIGTERM / SIGINT to the pool or to a worker): stop claiming; a job in
progress is cancelled (the verifier's child is killed) and *released* back to the queue
without counting the attempt, so another worker runs it from scratch.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from registry.db.queue import Job
from registry.settings import Settings
from worker.lease import Cancelled, JobLease

log = logging.getLogger("assay.worker")

RECONCILE_SECONDS = 15.0
PEER_GRACE = timedelta(minutes=10)


class Worker:
    """One claim loop in one process (see the module docstring).

    ``handlers`` is the dispatch table: the job kinds this loop claims, each with the
    function that runs one claimed job and says what became of it (for logs and tests).
    Webhook deliveries are not in it: they run in a thread of their own with their own
    backoff (``worker.deliver``).
    """

    def __init__(self, settings: Settings, stop: threading.Event | None = None,
                 name: str = "worker"):
        from registry.capabilities import parse_labels
        from registry.db import Database
        from registry.db.queue import JobKind, new_worker_id
        from registry.services import RegistryService
        from registry.storage import open_store
        from worker.materialize import Materializer
        from worker.mirror_fill import run_mirror_fill
        from worker.presence import Presence, capabilities
        from worker.remote import run_remote_job

        self.settings = settings
        self.stop = stop or threading.Event()
        self.db = Database(settings.sqlalchemy_url, pool_size=4)
        self.store = open_store(settings)
        self.svc = RegistryService(self.db, self.store, settings)
        self.queue = self.svc.queue
        self.materializer = Materializer(self.store, settings.model_cache_root,
                                         settings.model_cache_bytes)
        self.worker_id = new_worker_id(name)
        self.capabilities = capabilities(settings)
        self.labels = parse_labels(settings.worker_labels)
        self.presence = Presence(self.svc.workers, self.worker_id,
                                 capabilities=self.capabilities, labels=self.labels)
        self.hw_classes: list[str] = []  # the hardware classes it claims jobs for
        self.handlers: dict[str, Callable[[Job], str]] = {
            JobKind.VERIFY: self.run_job,
            JobKind.VERIFY_REMOTE: functools.partial(run_remote_job, self),
            JobKind.MIRROR_FILL: functools.partial(run_mirror_fill, self),
        }

    def close(self) -> None:
        self.db.dispose()

    def lease(self, job: Job) -> JobLease:
        """The heartbeat and stop watch for one claimed job (``worker.lease``)."""
        return JobLease(self.queue, job.id, self.worker_id, self.stop,
                        beat=lambda: self.presence.beat(job.id))

    def run(self) -> None:
        """Claim and run jobs until ``stop`` is set; webhook deliveries (``worker.deliver``)
        run in a thread of their own meanwhile."""
        from worker.deliver import start_thread

        log.info("worker %s started", self.worker_id)
        deliveries = start_thread(self.svc, self.stop)
        try:
            self._loop()
        finally:
            self.presence.stopped()
        deliveries.join(self.settings.webhook_timeout_seconds + 5)
        log.info("worker %s stopped", self.worker_id)

    def _loop(self) -> None:
        next_reconcile = 0.0
        while not self.stop.is_set():
            self.presence.beat(None)
            if time.monotonic() >= next_reconcile:  # jobs that went stale on their last try
                next_reconcile = time.monotonic() + RECONCILE_SECONDS
                self._reconcile()
            try:
                job = self.queue.claim(self.worker_id, list(self.handlers), self.hw_classes)
            except Exception:
                log.exception("claiming a job failed; retrying")
                self.stop.wait(max(self.settings.job_poll_seconds, 1.0))
                continue
            if job is None:
                self.stop.wait(self.settings.job_poll_seconds)
                continue
            self.presence.beat(job.id)
            self.handlers[job.kind](job)

    def _reconcile(self) -> None:
        """Every ``RECONCILE_SECONDS``: the classes this worker is of (an admin may have
        defined one since), statuses a dead worker left, optional classes nobody took."""
        try:
            classes = self.svc.classes.of(self.capabilities, self.labels)
            if classes != self.hw_classes:
                log.info("worker %s serves the hardware classes: %s", self.worker_id,
                         ", ".join(classes) or "(none)")
            self.hw_classes = classes
            self.svc.verification.reconcile()
            self.svc.class_upkeep.expire_optional()
            self.svc.class_upkeep.settle_waiting()
            self.svc.remote.reconcile()
        except Exception:
            log.exception("reconciling model statuses failed")

    def released(self, job: Job, lease: JobLease, requeue: Callable[[], None] | None) -> str:
        """A job stopped mid-way: dropped if its lease was lost, else (shutting down) its
        model is put back to "queued" by ``requeue`` *before* the job is released, so no
        other worker can have started it yet."""
        if lease.lost.is_set():
            log.warning("job %s: lease lost (re-queued elsewhere); result dropped", job.id)
            return "lost"
        if requeue is not None:
            requeue()
        self.queue.release(job.id, self.worker_id)
        log.info("job %s released (shutting down)", job.id)
        return "released"

    def run_job(self, job: Job) -> str:
        """Run one claimed ``verify`` job (a model of this registry); returns what became
        of it (for logs and tests)."""
        from verifier import BackendUnavailable
        from verifier import Cancelled as VerifierCancelled

        verification = self.svc.verification
        target = None
        with self.lease(job) as lease:
            try:
                manifest_id = int(job.payload.get("manifest_id", -1))
                target = verification.target(manifest_id, job.payload.get("digest"),
                                             job.hw_class)
                if target is None:
                    self.queue.complete(job.id, self.worker_id,
                                        {"skipped": "the manifest is gone or not a model"})
                    return "skipped"
                missing = self._missing_backend(target)
                if missing is not None:
                    return self._unsupported(job, target, missing)
                verification.start(manifest_id)
                log.info("verifying %s@%s (job %s, attempt %s)", target.repository,
                         target.digest, job.id, job.attempts)
                return self._verify(job, target, lease)
            except (Cancelled, VerifierCancelled):
                requeue = None if target is None else functools.partial(
                    verification.requeue, target)
                return self.released(job, lease, requeue)
            except BackendUnavailable as exc:
                self._retry(job, target, f"verifier backend unavailable: {exc}")
                return "retry"
            except Exception as exc:
                log.exception("job %s failed on infrastructure", job.id)
                self._retry(job, target, f"{type(exc).__name__}: {exc}")
                return "retry"

    def _verify(self, job: Job, target, lease: JobLease) -> str:
        from worker.spec import verify_model

        started = datetime.now(UTC)
        profile = self.svc.profiles.applies(target.repository).profile
        report = verify_model(self.settings, self.materializer, target.model, target.policy,
                              profile, lease.cancel, capabilities=self.capabilities)
        if lease.cancel.is_set():
            raise Cancelled()
        row = self.svc.verification.record(target, report.to_dict(), job_id=job.id,
                                           worker=self.worker_id, started_at=started)
        if not self.queue.complete(job.id, self.worker_id,
                                   {"verdict": "passed" if report.passed else "failed",
                                    "verification": row.get("id")}):
            log.warning("job %s was taken over while it ran; its result stands", job.id)
        log.info("%s@%s: %s%s%s", target.repository, target.digest,
                 "passed" if report.passed else "failed",
                 "" if target.hw_class is None else f" on class {target.hw_class}",
                 "" if report.passed else f" ({report.reason})")
        return "passed" if report.passed else "failed"

    def _missing_backend(self, target) -> str | None:
        """The backend a job for a hardware class needs and this worker lacks, or None.
        (A job for any worker keeps failing over to a retry, as it always did.)"""
        from registry.services.class_jobs import BACKEND_OF_FORMAT

        need = BACKEND_OF_FORMAT.get(target.model.weight_format)
        if target.hw_class is None or need is None:
            return None
        return None if need in (self.capabilities.get("backends") or {}) else need

    def _unsupported(self, job: Job, target, backend: str) -> str:
        """This worker's class may run the model on a peer that has ``backend``: the job
        goes back for it (unless none is present: then the class cannot run it at all,
        recorded as "unsupported", which is not the model's failure)."""
        # A peer counts while present, or seen within PEER_GRACE (restarting, say): one
        # worker's brief absence must not record "unsupported" for the whole class.
        recent = datetime.now(UTC) - PEER_GRACE
        peers = [w for w in self.svc.workers.listing()
                 if w["id"] != self.worker_id and target.hw_class in w["classes"]
                 and (w["state"] in ("idle", "busy")
                      or (w["state"] != "stopped"
                          and datetime.fromisoformat(w["last_seen_at"]) >= recent))
                 and backend in (w["capabilities"].get("backends") or {})]
        if peers:
            self.queue.release(job.id, self.worker_id, delay=self.settings.job_poll_seconds * 4)
            return "passed on"
        reason = (f"no worker of class {target.hw_class} has {backend}, which "
                  f"{target.model.weight_format} weights need")
        started = datetime.now(UTC)
        self.svc.verification.record(target, {"passed": False, "verdict": "unsupported",
                                              "reason": reason}, job_id=job.id,
                                     worker=self.worker_id, started_at=started)
        self.queue.complete(job.id, self.worker_id, {"verdict": "unsupported"})
        log.info("%s@%s: unsupported on class %s (%s)", target.repository, target.digest,
                 target.hw_class, reason)
        return "unsupported"

    def _retry(self, job: Job, target, error: str) -> None:
        try:
            outcome = self.queue.fail(job.id, self.worker_id, error[:2000], retry=True)
            if outcome == "failed" and target is not None:  # out of attempts
                self.svc.verification.abandon(target, error[:2000])
        except Exception:
            log.exception("could not record the failure of job %s", job.id)


# ---------------------------------------------------------------------------- processes


def _worker_main(settings_json: str, name: str, parent: int) -> None:
    """Entry point of one worker process."""
    settings = Settings.model_validate_json(settings_json)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _stop_with_parent(stop, parent)
    worker = Worker(settings, stop, name)
    try:
        worker.run()
    finally:
        worker.close()


def _stop_with_parent(stop: threading.Event, parent: int) -> None:
    """A worker outlives neither ``assay serve`` nor ``assay worker``, however they end
    (SIGKILL included): on Linux the kernel sends SIGTERM when the parent dies (which the
    handler turns into a graceful stop); everywhere a thread watches the parent pid.
    ``parent`` is the pid the pool had when it spawned us: if it died while we started,
    ``getppid()`` already names our new parent."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)

    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                log.warning("the worker's parent process %s is gone; stopping", parent)
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent:  # it died before prctl took effect
        stop.set()


def default_threads(concurrency: int) -> int:
    """Compute threads per verification when ``verify_threads`` is unset: the cores this
    process may run on, split evenly among ``concurrency`` verifiers (at least one)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
    return max(1, cores // concurrency)


class Pool:
    """N supervised worker processes."""

    def __init__(self, settings: Settings, concurrency: int, name: str = "worker"):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if settings.verify_threads is None:
            # Unset: share this machine's cores among the pool's verifiers. Each using
            # every core made two concurrent verifications on 2 cores decode at 10
            # tokens/s instead of 65 (llama.cpp threads spin-wait on each other;
            # bench/workers.py), which slowed the queue and skewed every measurement.
            settings = settings.model_copy(
                update={"verify_threads": default_threads(concurrency)})
        self.settings = settings
        self.concurrency = concurrency
        self.name = name
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: list = []
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    def _spawn(self):
        proc = self._ctx.Process(target=_worker_main, daemon=False,
                                 args=(self.settings.model_dump_json(), self.name,
                                       os.getpid()),
                                 name=f"assay-{self.name}")
        proc.start()
        return proc

    def start(self) -> None:
        self._procs = [self._spawn() for _ in range(self.concurrency)]
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def _supervise(self) -> None:
        # A worker that keeps dying at once (bad configuration, database down) is restarted
        # with a growing delay instead of in a tight loop.
        delay = [1.0] * len(self._procs)
        due = [0.0] * len(self._procs)
        started = [time.monotonic()] * len(self._procs)
        while not self._stopping.wait(1.0):
            for i, proc in enumerate(self._procs):
                if proc.is_alive() or self._stopping.is_set():
                    continue
                now = time.monotonic()
                if not due[i]:
                    lived = now - started[i]
                    delay[i] = 1.0 if lived > 60 else min(delay[i] * 2, 60.0)
                    due[i] = now + delay[i]
                    log.warning("worker process %s exited (%s); restarting in %.0f s",
                                proc.pid, proc.exitcode, delay[i])
                if now >= due[i]:
                    self._procs[i] = self._spawn()
                    started[i], due[i] = now, 0.0

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every worker (they release their jobs), wait, then kill stragglers."""
        self._stopping.set()
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)

    def wait(self) -> None:
        """Block until stopped by SIGTERM/SIGINT (``assay worker``)."""
        stop = threading.Event()

        def on_signal(signum, _frame):
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        stop.wait()
        self.stop()
