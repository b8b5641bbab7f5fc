"""The webhook delivery loop: claim ``deliver`` jobs, POST the outbox rows, record.

Every worker process runs one ``Deliverer`` in a thread next to its verification loop
(``worker.pool.Worker.run``). One step::

    claim a "deliver" job (only that kind, under the deliverer's own worker id)
      -> the delivery row and its subscription (gone: the job is done, nothing sent)
      -> the subscription's secret, opened (it is sealed at rest, ``registry.secretbox``):
         a key that does not open it fails the attempt, saying so; nothing is sent
      -> POST the row's body exactly as stored, with
           Content-Type: application/vnd.docker.distribution.events.v1+json
           X-Assay-Signature: sha256=<hex HMAC-SHA256(secret, body)>
           X-Assay-Event: <event id>   X-Assay-Delivery: <row id>   X-Assay-Action: <action>
      -> in one transaction: the job's fate and the attempt on the row
           2xx                      -> job done,   row "delivered"
           other status, no answer  -> job failed with retry=True: re-queued after
                                       webhook_backoff_seconds * 2**(attempts-1) (capped
                                       by webhook_backoff_max_seconds), row "pending";
                                       after webhook_max_attempts the job is failed and
                                       the row "dead"

A request is bounded by ``webhook_timeout_seconds`` (per connect/read/write), well under
the job lease, so a delivery needs no heartbeat. Redirects are not followed. It connects
only where ``settings.webhook_policy`` allows (no loopback, link-local or cloud metadata
address unless ``ASSAY_OUTBOUND_ALLOW`` opens it): a refused address is a failed attempt
whose error says so, visible to site admins in the delivery log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

import httpx

from client.transport import StdlibTransport
from registry.db.queue import FAILED, JobKind, JobQueue, new_worker_id
from registry.db.tables import utcnow
from registry.secretbox import SecretUnreadable
from registry.services.events import (
    ACTION_HEADER,
    DEAD,
    DELIVERED,
    DELIVERY_HEADER,
    EVENT_HEADER,
    EVENTS_MEDIA_TYPE,
    PENDING,
    SIGNATURE_HEADER,
    dedupe_key,
)

RECONCILE_SECONDS = 60.0

log = logging.getLogger("assay.deliver")

USER_AGENT = "assay-webhooks/0.1"
ERROR_BODY_CHARS = 300


class Deliverer:
    """Delivers outbox rows of ``svc`` (a ``RegistryService``); see the module docstring.

    ``queue``: the JobQueue to claim from (default: one with the settings' lease and
    webhook backoff); ``clock``: the time recorded on the rows (tests move it along with
    their queue's clock).
    """

    def __init__(self, svc, *, stop: threading.Event | None = None,
                 queue: JobQueue | None = None, worker_id: str | None = None,
                 clock: Callable[[], datetime] = utcnow,
                 transport: httpx.BaseTransport | None = None):
        settings = svc.settings
        self.svc = svc
        self.events = svc.events
        self.settings = settings
        self.stop = stop or threading.Event()
        self.queue = queue or JobQueue(svc.db, lease_seconds=settings.job_lease_seconds,
                                       backoff_base=settings.webhook_backoff_seconds,
                                       backoff_max=settings.webhook_backoff_max_seconds)
        self.worker_id = worker_id or new_worker_id("deliver")
        self.clock = clock
        # Subscriber URLs reach only what the webhook policy allows, judged on the
        # addresses their names resolve to when the delivery connects.
        self.http = httpx.Client(timeout=settings.webhook_timeout_seconds,
                                 follow_redirects=False,
                                 transport=transport or StdlibTransport(
                                     policy=settings.webhook_policy),
                                 headers={"User-Agent": USER_AGENT})

    def close(self) -> None:
        self.http.close()

    def run(self) -> None:
        """Deliver until ``stop`` is set; an idle loop polls every ``job_poll_seconds``."""
        log.info("webhook deliverer %s started", self.worker_id)
        try:  # secrets stored before they were sealed, or sealed under an older key
            if sealed := self.events.reseal_secrets():
                log.info("sealed %s webhook secrets with the current key", sealed)
        except SecretUnreadable as exc:
            log.error("webhook secrets left as they are: %s", exc)
        except Exception:
            log.exception("sealing the stored webhook secrets failed")
        next_reconcile = 0.0
        try:
            while not self.stop.is_set():
                if time.monotonic() >= next_reconcile:  # deliveries whose worker died
                    next_reconcile = time.monotonic() + RECONCILE_SECONDS
                    try:
                        self.events.reconcile()
                    except Exception:
                        log.exception("reconciling webhook deliveries failed")
                try:
                    outcome = self.step()
                except Exception:
                    log.exception("delivering a webhook failed; retrying")
                    self.stop.wait(max(self.settings.job_poll_seconds, 1.0))
                    continue
                if outcome is None:
                    self.stop.wait(self.settings.job_poll_seconds)
        finally:
            self.close()
            log.info("webhook deliverer %s stopped", self.worker_id)

    def step(self) -> str | None:
        """Claim one due deliver job and run it: ``None`` (nothing due), or what became of
        the delivery: "delivered", "pending" (to be retried), "dead", or "skipped"."""
        job = self.queue.claim(self.worker_id, [JobKind.DELIVER])
        if job is None:
            return None
        return self.deliver(job)

    def drain(self, limit: int = 1000) -> list[str]:
        """Run every due job (tests): the outcomes, in order."""
        outcomes = []
        while len(outcomes) < limit:
            outcome = self.step()
            if outcome is None:
                break
            outcomes.append(outcome)
        return outcomes

    def deliver(self, job) -> str:
        out = self.events.outgoing(int(job.payload.get("delivery_id", -1)))
        if out is None or (job.dedupe_key and job.dedupe_key != dedupe_key(out.id,
                                                                          out.event_id)):
            self.queue.complete(job.id, self.worker_id, {"skipped": "the delivery is gone"})
            return "skipped"
        body = out.body.encode()
        code, error = None, None
        try:
            # The secret is sealed: a process whose key does not open it records a failed
            # attempt that says so (retried, maybe by a process that has the key), and
            # never sends the event unsigned.
            headers = {"Content-Type": EVENTS_MEDIA_TYPE,
                       SIGNATURE_HEADER: self.events.signature(out, body),
                       EVENT_HEADER: out.event_id, DELIVERY_HEADER: str(out.id),
                       ACTION_HEADER: out.action}
            with self.http.stream("POST", out.url, content=body, headers=headers) as resp:
                code = resp.status_code
                if not 200 <= code < 300:
                    error = f"HTTP {code} {resp.reason_phrase}".strip()
                    text = _head(resp)
                    if text:
                        error += f": {text}"
        except SecretUnreadable as exc:
            error = str(exc)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:  # a URL httpx refuses outright, say: retried all the same
            error = f"{type(exc).__name__}: {exc}"
        when = self.clock()
        with self.svc.db.write() as conn:
            if error is None:
                kept = self.queue.complete(job.id, self.worker_id, {"status_code": code},
                                           conn=conn)
                status = DELIVERED
                if not kept:
                    log.warning("deliver job %s was taken over while it ran", job.id)
            else:
                fate = self.queue.fail(job.id, self.worker_id, error[:2000], retry=True,
                                       conn=conn)
                status = None if fate is None else DEAD if fate == FAILED else PENDING
            self.events.record_attempt(conn, out.id, status=status, code=code,
                                       error=error and error[:2000], when=when)
        if error is None:
            log.info("webhook %s: delivered %s %s (HTTP %s)", out.webhook_id, out.action,
                     out.event_id, code)
        else:
            log.warning("webhook %s: delivery %s of %s failed (attempt %s): %s",
                        out.webhook_id, out.id, out.action, job.attempts, error)
        return status or PENDING


def _head(resp: httpx.Response) -> str:
    """The start of an error answer's body, as one short line."""
    data = b""
    try:
        for chunk in resp.iter_raw():
            data += chunk
            if len(data) >= ERROR_BODY_CHARS:
                break
    except httpx.HTTPError:
        pass
    text = data[:ERROR_BODY_CHARS].decode("utf-8", "replace")
    return " ".join(text.split())


def start_thread(svc, stop: threading.Event) -> threading.Thread:
    """Run a ``Deliverer`` for ``svc`` in a daemon thread until ``stop`` is set."""
    deliverer = Deliverer(svc, stop=stop)
    thread = threading.Thread(target=deliverer.run, name="assay-deliver", daemon=True)
    thread.start()
    return thread
