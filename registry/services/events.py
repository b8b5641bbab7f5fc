"""Outgoing webhooks: subscriptions, and events written into the outbox.

An event's life::

    a change (manifest PUT or DELETE, a worker starting or finishing a verification)
      -> ``emit(conn, ...)`` inside the change's own write transaction: one
         ``deliveries`` row per matching active subscription, each with a ``deliver``
         job (registry.db.queue). They commit with the change or not at all, so nothing is
         lost on a restart and nothing is sent for a change that was rolled back.
      -> ``worker.deliver``: claim the job, POST the row's body, signed, and record the
         attempt on the row: 2xx -> "delivered"; anything else -> the job is retried
         with exponential backoff ("pending"); out of attempts -> "dead".
      -> ``redeliver``: a new job for a delivery, "pending" again.

Delivery is at least once: a receiver deduplicates on the event id (``X-Assay-Event``).

A subscription's secret is stored sealed (``registry.secretbox``, key ``ASSAY_SECRETS_KEY``):
``create`` seals it, the delivery loop opens it to sign (a process whose key does not open
it fails the attempt with an error that says so, and sends nothing unsigned), and
``reseal_secrets`` seals the secrets stored before sealing existed.

The body is CNCF Distribution's notification envelope (one event per envelope, as
Distribution sends them), with a ``verification`` object on verification events::

    {"events": [{
       "id": "<uuid4>", "timestamp": "2026-01-02T03:04:05.678901Z",
       "action": "push" | "tag" | "delete" | "verification.started"
                 | "verification.succeeded" | "verification.failed"
                 | "verification.regressed",
       "target": {"mediaType", "digest", "size", "length" (= size), "repository",
                  "url": "<base>/v2/<repository>/manifests/<digest>",
                  "tag" (push / tag / delete of a tag), "previous" (tag events: the
                  digest the tag pointed at before, null for a new tag), "tags"
                  (verification events: the tags pointing at the model now)},
       "source": {"addr": "<host>:<port>", "instanceID": "<uuid4 per process>"},
       "verification": {"status", "verdict", "reason", "backend", "backend_version",
                        "hardware", "figures": {...}, ...}}]}   # verification.* only

Actions: ``push`` a manifest newly stored in a repository by a client (the artifacts
the registry writes itself, verification referrers, are announced by their
``verification.*`` event instead); ``tag`` a tag set to, or moved to, a manifest, new or
already stored; ``delete`` a manifest (by digest) or a tag;
``verification.regressed`` a result worse than the tag's previous version's (sent after
the result's own ``succeeded`` / ``failed``, with the same ``verification`` object, whose
``regressions`` say what regressed).
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import hmac
import json
import socket
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, update

from client.outbound import OutboundDenied, OutboundPolicy
from registry.db import Database
from registry.db.queue import JobKind, JobQueue
from registry.db.tables import (
    deliveries,
    isoformat,
    manifests,
    repositories,
    tags,
    utcnow,
    webhooks,
)
from registry.errors import NotFound, RequestInvalid
from registry.secretbox import SecretBox, SecretUnreadable
from registry.services.common import Service
from registry.settings import Settings
from registry.storage import BlobStore

ACTIONS = ("push", "delete", "tag", "verification.started", "verification.succeeded",
           "verification.failed", "verification.regressed")
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
# What Distribution 2.x (Debian's docker-registry) sends its envelopes as.
EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
SIGNATURE_HEADER = "X-Assay-Signature"
EVENT_HEADER = "X-Assay-Event"
DELIVERY_HEADER = "X-Assay-Delivery"
ACTION_HEADER = "X-Assay-Action"
MAX_URL = 2048
MAX_SECRET = 255
MAX_PATTERN = 255
MAX_PAGE = 100
_MAX_INT32 = 2**31 - 1
_MAX_INT64 = 2**63 - 1


def sign(secret: str, body: bytes) -> str:
    """The ``X-Assay-Signature`` value: ``sha256=<hex HMAC-SHA256(secret, body)>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def dedupe_key(delivery_id: int, event_id: str) -> str:
    """One live job per delivery row *and* event (SQLite may reuse a deleted row's id)."""
    return f"{JobKind.DELIVER}:{delivery_id}:{event_id}"


def mask(secret: str) -> str:
    """Never the secret: its last four characters only when it is long enough to spare."""
    return "****" + secret[-4:] if len(secret) >= 16 else "****"




def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _printable(text: str) -> bool:
    """No control characters and no lone surrogates (which no database or HMAC takes)."""
    return all(unicodedata.category(c) not in ("Cc", "Cs") for c in text)


@dataclass(frozen=True)
class Outgoing:
    """What the delivery loop needs to send one delivery."""

    id: int
    webhook_id: int
    url: str
    secret: str  # as stored: sealed; ``EventService.signature`` opens it
    event_id: str
    action: str
    body: str
    status: str


class EventService(Service):
    def __init__(self, db: Database, store: BlobStore, settings: Settings, queue: JobQueue):
        super().__init__(db, store, settings)
        self.queue = queue  # every delivery row gets a deliver job
        self.instance_id = str(uuid.uuid4())  # Distribution's source.instanceID
        self.source_addr = f"{socket.gethostname()}:{settings.port}"

    @functools.cached_property
    def box(self) -> SecretBox:
        # Built on first use: the key file (when no key is set) is made only when needed.
        return SecretBox.from_settings(self.settings)

    # ---- subscriptions -----------------------------------------------------------------
    def create(self, url, secret, events=None, repository=None) -> dict:
        """Subscribe ``url``; ``events`` [] or None means every action; ``repository`` is
        an fnmatch glob over repository names (``team/*``; ``*`` also matches ``/``)."""
        url, secret = _check_url(url, self.settings.webhook_policy), _check_secret(secret)
        events = _check_events(events)
        repository = _check_pattern(repository)
        now = utcnow()
        with self.db.write() as conn:
            wid = conn.execute(webhooks.insert().values(
                url=url, secret=self.box.seal(secret), events=json.dumps(events),
                repository_pattern=repository, active=True, created_at=now,
            ).returning(webhooks.c.id)).scalar_one()
            return self._describe(conn, self._row(conn, wid))

    def subscriptions(self) -> list[dict]:
        with self.db.read() as conn:
            rows = conn.execute(select(webhooks).order_by(webhooks.c.id)).all()
            counts = self._counts(conn, None)
        return [_webhook_json(r, counts.get(r.id, {}), self._masked(r.secret)) for r in rows]

    def get(self, webhook_id: int) -> dict:
        with self.db.read() as conn:
            return self._describe(conn, self._row(conn, webhook_id))

    def delete(self, webhook_id: int) -> None:
        """Unsubscribe; its delivery log goes with it (jobs still queued find no row)."""
        with self.db.write() as conn:
            self._row(conn, webhook_id)
            conn.execute(delete(deliveries).where(deliveries.c.webhook_id == webhook_id))
            conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id))

    def _row(self, conn, webhook_id: int):
        row = None
        if 0 < webhook_id <= _MAX_INT32:
            row = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).first()
        if row is None:
            raise NotFound(f"webhook {webhook_id} is not known to this registry")
        return row

    def _describe(self, conn, row) -> dict:
        return _webhook_json(row, self._counts(conn, row.id).get(row.id, {}),
                             self._masked(row.secret))

    def _masked(self, stored: str) -> str:
        try:
            return mask(self.box.open(stored))
        except SecretUnreadable:  # listing must work on a process with the wrong key too
            return "****"

    @staticmethod
    def _counts(conn, webhook_id: int | None) -> dict[int, dict[str, int]]:
        q = (select(deliveries.c.webhook_id, deliveries.c.status, func.count())
             .group_by(deliveries.c.webhook_id, deliveries.c.status))
        if webhook_id is not None:
            q = q.where(deliveries.c.webhook_id == webhook_id)
        counts: dict[int, dict[str, int]] = {}
        for wid, status, n in conn.execute(q).all():
            counts.setdefault(wid, {})[status] = n
        return counts

    # ---- emitting (inside the caller's write transaction) ------------------------------
    def emit(self, conn, action: str, repository: str, target: dict, *,
             verification: dict | None = None) -> list[int]:
        """Write ``action`` on ``repository`` into the outbox of every active subscription
        it matches, each with a deliver job, in ``conn``'s transaction. ``target`` holds
        ``mediaType``, ``digest``, ``size`` and optionally ``tag`` / ``tags`` and ``url``
        (default: this registry's URL of the manifest). Returns the new delivery ids (none
        when nobody subscribed)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown event action {action!r}")
        subs = [r for r in conn.execute(
            select(webhooks.c.id, webhooks.c.events, webhooks.c.repository_pattern)
            .where(webhooks.c.active.is_(True)).order_by(webhooks.c.id)).all()
            if _matches(r, action, repository)]
        if not subs:
            return []
        now = utcnow()
        event_id = str(uuid.uuid4())
        body = json.dumps({"events": [self._event(event_id, now, action, repository, target,
                                                  verification)]},
                          separators=(",", ":"))
        ids = []
        for sub in subs:
            did = conn.execute(deliveries.insert().values(
                webhook_id=sub.id, event_id=event_id, action=action, body=body,
                status=PENDING, attempts=0, created_at=now,
            ).returning(deliveries.c.id)).scalar_one()
            self.queue.enqueue(conn, JobKind.DELIVER, {"delivery_id": did},
                               dedupe_key=dedupe_key(did, event_id),
                               max_attempts=max(1, self.settings.webhook_max_attempts))
            ids.append(did)
        return ids

    def emit_manifest(self, conn, action: str, manifest_id: int, *,
                      verification: dict | None = None) -> list[int]:
        """``emit`` for a stored manifest by id (verification events): its target carries
        the tags that point at it now."""
        row = conn.execute(
            select(manifests.c.digest, manifests.c.media_type, manifests.c.size,
                   repositories.c.name)
            .join(repositories, repositories.c.id == manifests.c.repository_id)
            .where(manifests.c.id == manifest_id)).first()
        if row is None:
            return []
        names = sorted(conn.execute(select(tags.c.name).where(
            tags.c.manifest_id == manifest_id)).scalars())
        target = {"mediaType": row.media_type, "digest": row.digest, "size": row.size,
                  "tags": names}
        return self.emit(conn, action, row.name, target, verification=verification)

    def _event(self, event_id: str, when: datetime, action: str, repository: str,
               target: dict, verification: dict | None) -> dict:
        t = {"mediaType": target.get("mediaType"), "digest": target.get("digest"),
             "size": target.get("size"), "length": target.get("size"),
             "repository": repository,
             "url": target.get("url")  # a model in another registry brings its own
             or f"{self.base_url()}/v2/{repository}/manifests/{target.get('digest')}"}
        if target.get("tag"):
            t["tag"] = target["tag"]
        if "previous" in target:  # a tag event: where the tag pointed before (or null)
            t["previous"] = target["previous"]
        if "tags" in target:
            t["tags"] = list(target["tags"])
        event = {"id": event_id, "timestamp": _timestamp(when), "action": action,
                 "target": t,
                 "source": {"addr": self.source_addr, "instanceID": self.instance_id}}
        if verification is not None:
            event["verification"] = verification
        return event

    def base_url(self) -> str:
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        return f"http://{self.settings.host}:{self.settings.port}"

    # ---- the delivery log ----------------------------------------------------------------
    def delivery_log(self, webhook_id: int, n: int = MAX_PAGE,
                     last: int | None = None) -> list[dict]:
        """The webhook's deliveries, newest first; ``last``: those older than that id."""
        q = (select(deliveries).where(deliveries.c.webhook_id == webhook_id)
             .order_by(deliveries.c.id.desc()).limit(max(0, min(n, MAX_PAGE))))
        if last is not None:
            q = q.where(deliveries.c.id < min(last, _MAX_INT64))
        with self.db.read() as conn:
            self._row(conn, webhook_id)
            rows = conn.execute(q).all()
        return [delivery_json(r) for r in rows]

    def delivery(self, webhook_id: int, delivery_id: int) -> dict:
        with self.db.read() as conn:
            row = self._delivery_row(conn, webhook_id, delivery_id)
        return delivery_json(row, body=True)

    def _delivery_row(self, conn, webhook_id: int, delivery_id: int):
        self._row(conn, webhook_id)
        row = None
        if 0 < delivery_id <= _MAX_INT64:
            row = conn.execute(select(deliveries).where(
                deliveries.c.id == delivery_id,
                deliveries.c.webhook_id == webhook_id)).first()
        if row is None:
            raise NotFound(f"delivery {delivery_id} of webhook {webhook_id} is not known")
        return row

    def redeliver(self, webhook_id: int, delivery_id: int) -> dict:
        """Send a delivery again, whatever became of it: "pending" with a new job (or the
        live job it already has). The body, and so the event id, is the same."""
        with self.db.write() as conn:
            row = self._delivery_row(conn, webhook_id, delivery_id)
            job = self.queue.enqueue(conn, JobKind.DELIVER, {"delivery_id": row.id},
                                     dedupe_key=dedupe_key(row.id, row.event_id),
                                     max_attempts=max(1, self.settings.webhook_max_attempts))
            conn.execute(update(deliveries).where(deliveries.c.id == row.id)
                         .values(status=PENDING))
            row = conn.execute(select(deliveries).where(deliveries.c.id == row.id)).one()
        return delivery_json(row) | {"job": job}

    # ---- the delivery loop's side (worker/deliver.py) -----------------------------------
    def outgoing(self, delivery_id: int) -> Outgoing | None:
        """The delivery and its subscription, or None if it is gone (unsubscribed)."""
        with self.db.read() as conn:
            row = conn.execute(
                select(deliveries.c.id, deliveries.c.webhook_id, deliveries.c.event_id,
                       deliveries.c.action, deliveries.c.body, deliveries.c.status,
                       webhooks.c.url, webhooks.c.secret)
                .join(webhooks, webhooks.c.id == deliveries.c.webhook_id)
                .where(deliveries.c.id == delivery_id)).first()
        if row is None:
            return None
        return Outgoing(row.id, row.webhook_id, row.url, row.secret, row.event_id, row.action,
                        row.body, row.status)

    def signature(self, out: Outgoing, body: bytes) -> str:
        """``sign(secret, body)`` with ``out``'s subscription secret. Raises
        ``SecretUnreadable`` when this process's key does not open it."""
        try:
            return sign(self.box.open(out.secret), body)
        except SecretUnreadable as exc:
            raise SecretUnreadable(f"webhook {out.webhook_id}: {exc}") from None

    def reseal_secrets(self) -> int:
        """Seal the secrets stored before sealing existed, and move those sealed under an
        older key (a later one in ``ASSAY_SECRETS_KEY``) to the first. Returns how many
        changed. Raises ``SecretUnreadable``, changing nothing, when a stored secret does
        not open: this process's key is not the one in use, and sealing the rest with it
        would lock out the processes that have the right one."""
        with self.db.read() as conn:
            rows = conn.execute(select(webhooks.c.id, webhooks.c.secret)
                                .order_by(webhooks.c.id)).all()
        changes = []
        for row in rows:
            try:
                new = self.box.reseal(row.secret)
            except SecretUnreadable as exc:
                raise SecretUnreadable(f"webhook {row.id}: {exc}") from None
            if new is not None:
                changes.append((row.id, row.secret, new))
        changed = 0
        for wid, old, new in changes:
            with self.db.write() as conn:  # unless another process got there first
                changed += conn.execute(update(webhooks).where(
                    webhooks.c.id == wid, webhooks.c.secret == old).values(secret=new)).rowcount
        return changed

    def reconcile(self, limit: int = 500) -> int:
        """Deliveries still "pending" whose job ended "failed" without saying so (its
        worker died during the last attempt): dead-letter them. Returns how many."""
        with self.db.read() as conn:
            rows = conn.execute(select(deliveries.c.id, deliveries.c.event_id)
                                .where(deliveries.c.status == PENDING)
                                .order_by(deliveries.c.id).limit(limit)).all()
        fixed = 0
        for row in rows:
            key = dedupe_key(row.id, row.event_id)
            if self.queue.find(key) is not None:
                continue
            job = self.queue.latest(key)
            if job is not None and job.status == "failed":
                with self.db.write() as conn:
                    fixed += conn.execute(
                        update(deliveries).where(deliveries.c.id == row.id,
                                                 deliveries.c.status == PENDING)
                        .values(status=DEAD, last_error=job.last_error)).rowcount
        return fixed

    @staticmethod
    def record_attempt(conn, delivery_id: int, *, status: str | None, code: int | None,
                       error: str | None, when: datetime) -> None:
        """One attempt on the row: attempts+1, the answer; ``status`` None keeps it."""
        values = dict(attempts=deliveries.c.attempts + 1, last_status_code=code,
                      last_error=error, last_attempt_at=when)
        if status is not None:
            values["status"] = status
        if status == DELIVERED:
            values["delivered_at"] = when
        conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(**values))


# ---------------------------------------------------------------------------- helpers


def _matches(sub, action: str, repository: str) -> bool:
    try:
        wanted = json.loads(sub.events or "[]")
    except ValueError:
        wanted = []
    if wanted and action not in wanted:
        return False
    pattern = sub.repository_pattern
    return not pattern or fnmatch.fnmatchcase(repository, pattern)


def _webhook_json(row, counts: dict[str, int], masked: str) -> dict:
    try:
        events = json.loads(row.events or "[]")
    except ValueError:
        events = []
    return {"id": row.id, "url": row.url, "events": events,
            "repository": row.repository_pattern, "active": bool(row.active),
            "secret": masked, "created_at": isoformat(row.created_at),
            "deliveries": {s: counts.get(s, 0) for s in (PENDING, DELIVERED, DEAD)}}


def delivery_json(row, body: bool = False) -> dict:
    out = {"id": row.id, "webhook": row.webhook_id, "event_id": row.event_id,
           "action": row.action, "status": row.status, "attempts": row.attempts,
           "last_status_code": row.last_status_code, "last_error": row.last_error,
           "last_attempt_at": isoformat(row.last_attempt_at),
           "delivered_at": isoformat(row.delivered_at), "created_at": isoformat(row.created_at)}
    try:
        event = json.loads(row.body)["events"][0]
        target = event.get("target") or {}
        out["target"] = {k: target[k] for k in ("repository", "digest", "tag") if k in target}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        out["target"] = None
    if body:
        out["body"] = row.body
    return out


def _check_url(url, policy: OutboundPolicy) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        shown = url[:200] if isinstance(url, str) else url
        raise RequestInvalid(f'"url" must be an http:// or https:// URL, not {shown!r}')
    if len(url) > MAX_URL or not url.isprintable() or " " in url:
        raise RequestInvalid(f'"url" must be a URL of at most {MAX_URL} printable characters')
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise RequestInvalid(f'"url" is not a valid URL: {url[:200]!r}') from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RequestInvalid(f'"url" must be an http:// or https:// URL with a host, '
                             f'not {url[:200]!r}')
    try:  # an address written in the URL is judged now; a name when a delivery resolves it
        policy.precheck(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except OutboundDenied as exc:
        raise RequestInvalid(f'"url": {exc}; webhooks are not delivered there unless '
                             "ASSAY_OUTBOUND_ALLOW allows it") from None
    return url


def _check_secret(secret) -> str:
    if not isinstance(secret, str) or not secret:
        raise RequestInvalid('"secret" is required: the key the body is signed with')
    if len(secret) > MAX_SECRET or not _printable(secret):
        raise RequestInvalid(f'"secret" must be at most {MAX_SECRET} printable characters')
    return secret


def _check_events(events) -> list[str]:
    if events is None:
        return []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise RequestInvalid('"events" must be a list of event names')
    unknown = [e for e in events if e not in ACTIONS]
    if unknown:
        raise RequestInvalid(f"unknown event(s) {', '.join(map(repr, unknown[:5]))}; "
                             f"known: {', '.join(ACTIONS)}")
    return sorted(set(events), key=ACTIONS.index)


def _check_pattern(pattern) -> str | None:
    if pattern is None or pattern == "":
        return None
    if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN or not _printable(pattern):
        raise RequestInvalid(f'"repository" must be a glob of at most {MAX_PATTERN} '
                             'printable characters, e.g. "team/*"')
    return pattern


def verification_object(status: str, result: dict | None = None,
                        reason: str | None = None) -> dict:
    """The ``verification`` object of a verification event: the model's new ``status``
    and, once there is one, the run as the REST API shows it (``verification_json``:
    verdict, reason, backend, hardware, figures ...) without its log tail."""
    if result is None:
        return {"status": status, "verdict": None, "reason": reason, "figures": None}
    return {"status": status, **{k: v for k, v in result.items() if k != "log_tail"}}
