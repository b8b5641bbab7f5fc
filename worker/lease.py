"""A claimed job's lease while it runs: heartbeats, and the signal to stop running it.

``with JobLease(queue, job_id, worker_id, stop) as lease:`` starts two daemon threads for
the body's duration: one renews the job's lease every ``queue.heartbeat_every`` seconds,
one watches the worker's ``stop`` event. ``lease.cancel`` is set when either says the job
must not go on (pass it to the verifier and the downloads); ``lease.lost`` tells the two
apart: set, the queue refused a heartbeat (the job was re-queued as stalled and may be
another worker's now), so the worker must drop its result and write nothing; unset, the
worker is shutting down and gives the job back (``JobQueue.release``). ``beat``, when
given, is called after each heartbeat the queue accepted (the worker's presence).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from registry.db.queue import JobQueue

log = logging.getLogger("assay.worker")
STOP_POLL_SECONDS = 0.2


class Cancelled(Exception):
    """Raised by the worker's own code when ``JobLease.cancel`` is set mid-job."""


class JobLease:
    def __init__(self, queue: JobQueue, job_id: int, worker_id: str, stop: threading.Event,
                 beat: Callable[[], None] | None = None):
        self.queue, self.job_id, self.worker_id, self.stop = queue, job_id, worker_id, stop
        self.beat = beat
        self.lost = threading.Event()
        self.cancel = threading.Event()
        self.done = threading.Event()

    def __enter__(self) -> JobLease:
        for fn in (self._heartbeat, self._watch_stop):
            threading.Thread(target=fn, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()

    def _heartbeat(self) -> None:
        while not self.done.wait(self.queue.heartbeat_every):
            try:
                if not self.queue.heartbeat(self.job_id, self.worker_id):
                    self.lost.set()
                    self.cancel.set()
                    return
                if self.beat is not None:
                    self.beat()
            except Exception:  # the database blipped: the lease outlasts a few misses
                log.exception("heartbeat for job %s failed", self.job_id)

    def _watch_stop(self) -> None:
        while not self.done.is_set():
            if self.stop.wait(STOP_POLL_SECONDS):
                self.cancel.set()
                return
