"""A worker process's row in the ``workers`` table, kept current (``registry.services.workers``),
announcing what the worker is and can run (``capabilities``) and its labels.

``Presence.beat(job_id)`` is called from the claim loop on every poll (idle: None) and from
the job's lease heartbeats (busy); it writes at most every ``seen_every`` seconds, and at
once when the job changes, so idle workers add one small write per ~15 s, not one per poll.
A failed write is logged and tried again on the next beat: presence never stops a worker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from registry.capabilities import apply_override, parse_override
from registry.services.workers import WorkerService
from verifier.capabilities import detect

log = logging.getLogger("assay.worker")


def capabilities(settings) -> dict:
    """What this worker announces: the machine as detected, with the operator's override
    (``ASSAY_WORKER_CAPABILITIES``) merged over it."""
    return apply_override(detect(), parse_override(settings.worker_capabilities))


class Presence:
    def __init__(self, workers: WorkerService, worker_id: str, *,
                 capabilities: dict | None = None, labels: dict | None = None):
        self.workers = workers
        self.worker_id = worker_id
        self.capabilities = capabilities or {}
        self.labels = labels or {}
        self._lock = threading.Lock()  # the claim loop and the heartbeat thread beat
        self._announced = False
        self._job: int | None = None
        self._last = float("-inf")

    def beat(self, job_id: int | None = None) -> None:
        with self._lock:
            now = time.monotonic()
            if job_id == self._job and now - self._last < self.workers.seen_every \
                    and self._announced:
                return
            try:
                if not self._announced or not self.workers.seen(self.worker_id, job_id):
                    self.workers.announce(self.worker_id, socket.gethostname(), os.getpid(),
                                          capabilities=self.capabilities, labels=self.labels)
                    self._announced = True
                    if job_id is not None:
                        self.workers.seen(self.worker_id, job_id)
            except Exception:  # the database blipped: the next beat tries again
                log.exception("recording worker %s as seen failed", self.worker_id)
                return
            self._job, self._last = job_id, now

    def stopped(self) -> None:
        with self._lock:
            try:
                self.workers.stopped(self.worker_id)
            except Exception:
                log.exception("recording worker %s as stopped failed", self.worker_id)
