"""Verification on request: references named by webhooks, and models in other registries.

References, as ``POST /api/v1/hooks/validate`` and ``GET /api/v1/verifications`` take them::

    HOST[:PORT]/NAME[:TAG|@DIGEST]     a registry host first (it has a "." or ":", or is
                                       "localhost"), an http:// or https:// prefix allowed
    NAME[:TAG|@DIGEST]                 no host: a repository of this registry

A reference whose host is this registry's (the request's ``Host``, or ``ASSAY_PUBLIC_URL``)
is a local model: it is re-verified like ``POST .../verify``. Any other host is a *remote*
model, stored in ``remote_models`` under its canonical reference
``HOST[:PORT]/NAME@sha256:...`` (a tag is resolved to its digest first, while the caller
waits) and verified by a ``verify_remote`` job, queued in the same transaction::

    submit -> "queued" (row upserted + job, one transaction; a live job is reused)
      -> "verifying" (a worker claimed it: ``start``)
      -> the worker pulls it read-only (worker/remote.py) and runs the verifier
      -> "ready" | "failed" (``finish``: a ``verifications`` row with ``remote_model_id``,
         the status and the job's completion, one transaction)

``failed`` without a verification row means the model never ran: "not a model", the
remote registry refused (401/403/404), or the job ran out of attempts on infrastructure
errors ("verification could not run: ..."). While a job waits for a retry the status is
"queued" and the reason says what went wrong.

A payload is read by ``parse_payload`` into ``Item``s, each a reference to verify or a
reason it is ignored: only manifest *pushes* are verified (pulls, deletes, blob uploads
and indexes are ignored, and the answer says why).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy import select, update

from client.ref import default_scheme
from registry import jsontext
from registry.db.tables import remote_models, utcnow, verifications
from registry.digests import check_name, check_tag, parse_digest
from registry.errors import (
    ManifestInvalid,
    NotAModel,
    NotFound,
    RegistryError,
    RemoteUnavailable,
    RequestInvalid,
)
from registry.formats.classify import classify
from registry.manifests import (
    IMAGE_TYPES,
    INDEX_TYPES,
    KNOWN_TYPES,
    OCI_ARTIFACT,
    parse_manifest,
)
from registry.services.common import Service
from registry.services.verification import Policy, repair_statuses, verification_json

REMOTE_JOB = "verify_remote"
QUEUED, VERIFYING, READY, FAILED = "queued", "verifying", "ready", "failed"
DISTRIBUTION, CLOUDEVENTS, PLAIN = "distribution", "cloudevents", "plain"
log = logging.getLogger("assay.remote")
NOT_A_MODEL = "not a model"
# Manifests that can be a model; indexes never are (their manifests are pushed on their own).
MODEL_MANIFEST_TYPES = IMAGE_TYPES | {OCI_ARTIFACT}
MAX_REFERENCE = 1024
MAX_EVENTS = 1000
# CloudEvents types whose words say the model was not pushed.
_NOT_A_PUSH = {"pull", "pulled", "delete", "deleted", "remove", "removed", "mount", "mounted",
               "get", "head", "quarantine", "quarantined", "scan", "scanned"}


def dedupe_key(remote_model_id: int, digest: str) -> str:
    return f"{REMOTE_JOB}:{remote_model_id}:{digest}"


# ---------------------------------------------------------------------------- references


@dataclass(frozen=True)
class ModelRef:
    host: str | None  # "host[:port]", lowercase; None: this registry
    name: str
    tag: str | None = None
    digest: str | None = None
    scheme: str | None = None  # "http" | "https" when the reference or event said so

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``."""
        return self.digest or self.tag or "latest"

    @property
    def canonical(self) -> str:
        return f"{self.host}/{self.name}@{self.digest}"

    def __str__(self) -> str:
        text = f"{self.host}/{self.name}" if self.host else self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _looks_like_host(segment: str) -> bool:
    """Docker's rule: the first path segment is a registry host when it has a "." or a
    ":" (a port), is a bracketed IPv6 address, or is ``localhost``."""
    return "." in segment or ":" in segment or segment.startswith("[") or \
        segment.lower() == "localhost"


def parse_ref(text, *, default_tag: bool = True) -> ModelRef:
    """``HOST[:PORT]/NAME[:TAG|@DIGEST]`` or a local ``NAME[:TAG|@DIGEST]``; raises a 400
    (``RequestInvalid``, ``NameInvalid``, ``TagInvalid``, ``DigestInvalid``)."""
    from client.errors import BadReference
    from client.ref import parse_reference

    if not isinstance(text, str) or not text.strip():
        raise RequestInvalid("a reference must be a non-empty string "
                             "(HOST[:PORT]/NAME[:TAG|@DIGEST])")
    text = text.strip()
    if len(text) > MAX_REFERENCE or not text.isprintable() or " " in text:
        raise RequestInvalid(f"invalid reference {text[:100]!r}: at most {MAX_REFERENCE} "
                             "printable characters without spaces")
    lowered = text.lower()
    scheme = next((s for s in ("http", "https") if lowered.startswith(f"{s}://")), None)
    first, slash, _ = text[len(scheme) + 3 if scheme else 0:].partition("/")
    if scheme or (slash and _looks_like_host(first)):
        try:
            ref = parse_reference(text, default_tag=default_tag)
        except BadReference as exc:
            raise RequestInvalid(str(exc)) from None
        return ModelRef(ref.registry.host.lower(), ref.name, ref.tag, ref.digest, scheme)
    name, digest, tag = text, None, None
    if "@" in name:
        name, _, digest = name.partition("@")
        parse_digest(digest)
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
        check_tag(tag)
    check_name(name)
    if tag is None and digest is None and default_tag:
        tag = "latest"
    return ModelRef(None, name, tag, digest)


def _norm_host(host: str) -> str:
    host = host.strip().lower()
    for default in (":80", ":443"):
        if host.endswith(default):
            return host[:-len(default)]
    return host


def local_hosts(public_url: str | None, request_host: str | None) -> set[str]:
    """The names this registry answers to: the request's ``Host`` and the public URL's."""
    hosts = set()
    if request_host:
        hosts.add(_norm_host(request_host))
    if public_url:
        netloc = urlsplit(public_url if "://" in public_url else f"//{public_url}").netloc
        if netloc:
            hosts.add(_norm_host(netloc.rpartition("@")[2]))
    return hosts


# ------------------------------------------------------------------------------ payloads


@dataclass
class Item:
    """One thing a payload asks for: a reference to verify, or why it is ignored."""

    source: str
    ref: ModelRef | None = None
    event: str | None = None  # the event's id, when it has one
    ignored: str | None = None
    media_type: str | None = None
    given: str | None = None  # the reference as given, for answers about ignored items

    def describe(self) -> dict:
        out: dict = {"source": self.source}
        if self.event is not None:
            out["event"] = self.event
        if self.ref is not None or self.given:
            out["reference"] = str(self.ref) if self.ref is not None else self.given
        return out


@dataclass
class Payload:
    format: str  # distribution | cloudevents | plain
    items: list[Item] = field(default_factory=list)


def parse_payload(doc, headers: dict[str, str] | None = None, raw: bytes = b"") -> Payload:
    """Read a hook body (already JSON-decoded) in any of the three formats.

    Raises ``RequestInvalid`` (400) when the body is none of them, or when a plain request
    is malformed; an event that cannot be used is an ``Item`` with ``ignored`` set instead
    (a sender such as Distribution retries a refused envelope forever)."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    if "ce-specversion" in headers:  # CloudEvents binary mode: the body is the data
        event = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
        event["data"] = doc
        return Payload(CLOUDEVENTS, _cloudevent(event, strict=True))
    if isinstance(doc, list):  # CloudEvents JSON batch (application/cloudevents-batch+json)
        _bounded(doc, "a CloudEvents batch")
        items: list[Item] = []
        for i, event in enumerate(doc):
            if not isinstance(event, dict):
                items.append(Item(CLOUDEVENTS, event=str(i), ignored="not a CloudEvent "
                                  "(a JSON object)"))
            else:
                items += _cloudevent(event, strict=False, index=i)
        return Payload(CLOUDEVENTS, items)
    if not isinstance(doc, dict):
        raise RequestInvalid(_UNKNOWN_BODY)
    if "events" in doc:
        return Payload(DISTRIBUTION, _envelope(doc, DISTRIBUTION))
    if "specversion" in doc:
        return Payload(CLOUDEVENTS, _cloudevent(doc, strict=True))
    if "reference" in doc:
        ref = parse_ref(doc["reference"])
        return Payload(PLAIN, [Item(PLAIN, ref=ref, given=doc["reference"])])
    raise RequestInvalid(_UNKNOWN_BODY)


_UNKNOWN_BODY = ('the body is none of: a Distribution notification {"events": [...]}, a '
                 'CloudEvent {"specversion": "1.0", ...}, or {"reference": '
                 '"HOST[:PORT]/NAME[:TAG|@DIGEST]"}')


def _bounded(items: list, what: str) -> None:
    if len(items) > MAX_EVENTS:
        raise RequestInvalid(f"{what} may hold at most {MAX_EVENTS} events")


def _envelope(doc: dict, source: str) -> list[Item]:
    events = doc.get("events")
    if not isinstance(events, list):
        raise RequestInvalid('"events" must be a list of notification events')
    _bounded(events, "an envelope")
    items = []
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            items.append(Item(source, event=str(i), ignored="not an event (a JSON object)"))
            continue
        event_id = event.get("id") if isinstance(event.get("id"), str) else str(i)
        action = event.get("action")
        if action != "push":
            items.append(Item(source, event=event_id,
                              ignored=f"action {action!r}: only pushes are verified"))
            continue
        items.append(_target(event.get("target"), event.get("request"), source, event_id))
    return items


def _target(target, request, source: str, event_id: str | None) -> Item:
    """A Distribution event's target (or one shaped like it) as an ``Item``."""
    def ignore(reason: str, given: str | None = None) -> Item:
        return Item(source, event=event_id, ignored=reason, given=given)

    if not isinstance(target, dict):
        return ignore("the event has no target object")
    media_type = target.get("mediaType")
    url = target.get("url") if isinstance(target.get("url"), str) else None
    parts = urlsplit(url) if url else None
    if parts and "/blobs/" in parts.path:
        return ignore("a blob push: only manifests are verified")
    if media_type in INDEX_TYPES:
        return ignore("an index is not a model (the manifests it lists are notified "
                      "on their own)")
    if media_type is not None and media_type not in MODEL_MANIFEST_TYPES:
        if isinstance(media_type, str) and "manifest" in media_type:
            return ignore(f"a {media_type} manifest cannot hold a model")
        return ignore(f"a {media_type} push is a blob's: only manifests are verified")
    host = scheme = None
    if parts and parts.netloc:
        host, scheme = parts.netloc.rpartition("@")[2], parts.scheme.lower() or None
    elif isinstance(request, dict) and isinstance(request.get("host"), str):
        host = request["host"]
    repository, digest, tag = target.get("repository"), target.get("digest"), target.get("tag")
    if not repository and parts:  # /v2/<name>/manifests/<reference>
        m = re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", parts.path)
        if m:
            repository = m[1]
            if digest is None and ":" in m[2]:
                digest = m[2]
    if not host:
        return ignore("no registry host: the event has neither target.url nor request.host")
    if not isinstance(repository, str) or not repository:
        return ignore("the target names no repository")
    text = f"{host}/{repository}"
    if isinstance(tag, str) and tag:
        text += f":{tag}"
    if isinstance(digest, str) and digest:
        text += f"@{digest}"
    try:
        ref = parse_ref(text, default_tag=False)
    except RegistryError as exc:
        return ignore(f"malformed reference: {exc.message}", text)
    if ref.digest is None and ref.tag is None:
        return ignore("the target has neither a digest nor a tag", text)
    if scheme in ("http", "https"):
        ref = ModelRef(ref.host, ref.name, ref.tag, ref.digest, scheme)
    return Item(source, ref=ref, event=event_id,
                media_type=media_type if isinstance(media_type, str) else None)


def _cloudevent(event: dict, *, strict: bool, index: int = 0) -> list[Item]:
    """One CloudEvent (structured or binary mode) as items. ``strict``: a single event
    that is malformed is a 400; in a batch it is ignored with the reason."""
    event_id = event.get("id") if isinstance(event.get("id"), str) else str(index)
    missing = [k for k in ("specversion", "id", "source", "type")
               if not isinstance(event.get(k), str) or not event.get(k)]
    problem = None
    if missing:
        problem = f"not a CloudEvent: {', '.join(missing)} missing"
    elif not event["specversion"].startswith("1."):
        problem = f"CloudEvents specversion {event['specversion']!r} is not supported (1.0)"
    if problem:
        if strict:
            raise RequestInvalid(problem)
        return [Item(CLOUDEVENTS, event=event_id, ignored=problem)]
    words = set(re.split(r"[^a-z0-9]+", event["type"].lower()))
    if words & _NOT_A_PUSH:
        return [Item(CLOUDEVENTS, event=event_id,
                     ignored=f"event type {event['type']!r} is not a push")]
    data = event.get("data")
    if "data_base64" in event:
        try:
            data = base64.b64decode(str(event["data_base64"]), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return _bad_event(strict, event_id, "data_base64 is not base64 of UTF-8 text")
    if isinstance(data, str) and data.strip().startswith(("{", "[")):
        try:
            data = jsontext.loads(data)
        except ValueError:
            return _bad_event(strict, event_id, "data is not valid JSON")
    if data is None and isinstance(event.get("subject"), str):
        data = event["subject"]  # e.g. subject: "registry.example.com/team/model:v1"
    if isinstance(data, str):
        return [_cloud_ref(data, strict, event_id)]
    if isinstance(data, dict):
        if "events" in data:  # a Distribution envelope carried as the data
            items = _envelope(data, CLOUDEVENTS)
            for item in items:
                item.event = f"{event_id}/{item.event}"
            return items
        if "reference" in data:
            return [_cloud_ref(data["reference"], strict, event_id)]
        if "target" in data:
            action = data.get("action", "push")
            if action != "push":
                return [Item(CLOUDEVENTS, event=event_id,
                             ignored=f"action {action!r}: only pushes are verified")]
            return [_target(data["target"], data.get("request"), CLOUDEVENTS, event_id)]
        if "repository" in data:
            return [_target(data, None, CLOUDEVENTS, event_id)]
    return _bad_event(strict, event_id, 'the data carries no reference: expected a '
                      'reference string, {"reference": ...}, or a Distribution-like '
                      '{"target": {"repository", "digest", "url", ...}}')


def _bad_event(strict: bool, event_id: str, reason: str) -> list[Item]:
    if strict:
        raise RequestInvalid(f"CloudEvent {event_id!r}: {reason}")
    return [Item(CLOUDEVENTS, event=event_id, ignored=reason)]


def _cloud_ref(text, strict: bool, event_id: str) -> Item:
    try:
        return Item(CLOUDEVENTS, ref=parse_ref(text), event=event_id, given=str(text))
    except RegistryError as exc:
        if strict:
            raise
        return Item(CLOUDEVENTS, event=event_id, ignored=f"malformed reference: {exc.message}",
                    given=str(text))


# ------------------------------------------------------------------------------ service


@dataclass
class RemoteTarget:
    """What a worker needs to verify one remote model."""

    id: int
    reference: str
    registry: str
    repository: str
    tag: str | None
    digest: str
    media_type: str | None
    content: bytes | None
    policy: Policy


class _LeaseLost(Exception):
    pass


class RemoteService(Service):
    def __init__(self, db, store, settings, queue, verification, events=None):
        super().__init__(db, store, settings)
        self.queue = queue
        self.verification = verification
        self.events = events  # registry.services.events.EventService, or None

    # ---- submitting (the hook) -----------------------------------------------------------
    def submit(self, payload: Payload, request_host: str | None) -> dict:
        """Queue every item of ``payload``; ``{"queued": [...], "ignored": [...]}``.

        A plain request raises on a problem (404 unknown local model, 409 not a model,
        502 remote unreachable); an event is ignored with the reason instead."""
        mine = local_hosts(self.settings.public_url, request_host)
        queued, ignored = [], []
        for item in payload.items:
            if item.ignored is not None:
                ignored.append(item.describe() | {"reason": item.ignored})
                continue
            try:
                ref = item.ref
                if ref.host is None or _norm_host(ref.host) in mine:
                    queued.append(item.describe() | self._local(ref))
                else:
                    queued.append(item.describe() | self._remote(ref, item))
            except RegistryError as exc:
                if payload.format == PLAIN:
                    raise
                ignored.append(item.describe() | {"reason": exc.message})
        return {"queued": queued, "ignored": ignored}

    def _local(self, ref: ModelRef) -> dict:
        result = self.verification.request(ref.name, ref.reference)
        return {"location": "local", "repository": ref.name, "digest": result["digest"],
                "job": result["job"]}

    def _remote(self, ref: ModelRef, item: Item) -> dict:
        content = media_type = None
        self._allowed(ref)
        if ref.digest is None:
            ref, content, media_type = self._resolve(ref)
            model = classify_manifest(content, media_type)
            if model is None:
                raise NotAModel(f"{ref} is {NOT_A_MODEL}; only models are verified")
        scheme = ref.scheme or default_scheme(ref.host)
        now = utcnow()
        with self.db.write() as conn:
            conn.execute(self.db.insert_ignore(
                remote_models, reference=ref.canonical, registry=ref.host,
                repository=ref.name, tag=ref.tag, digest=ref.digest,
                media_type=media_type or item.media_type, content=content, status=QUEUED,
                source=item.source, created_at=now, updated_at=now))
            row = conn.execute(select(remote_models).where(
                remote_models.c.reference == ref.canonical).with_for_update()).one()
            values: dict = {"updated_at": now, "source": item.source}
            if ref.tag:
                values["tag"] = ref.tag
            if content is not None and row.content is None:
                values.update(content=content, media_type=media_type)
            if row.status in (READY, FAILED):  # a re-run; a live job is never in these
                values.update(status=QUEUED, status_reason=None)
            conn.execute(update(remote_models).where(remote_models.c.id == row.id)
                         .values(**values))
            job = self.queue.enqueue(conn, REMOTE_JOB,
                                     {"remote_model_id": row.id, "scheme": scheme},
                                     dedupe_key=dedupe_key(row.id, ref.digest))
        return {"location": "remote", "remote_model": row.id, "reference": ref.canonical,
                "registry": ref.host, "repository": ref.name, "tag": ref.tag,
                "digest": ref.digest, "job": job}

    def _allowed(self, ref: ModelRef) -> None:
        """Refuse a registry written as an address the outbound policy refuses, before
        anything is queued (names are judged when a worker connects); the caller learns
        only that it cannot be reached (see ``unreachable``)."""
        from client.outbound import OutboundDenied
        from client.ref import Registry

        registry = Registry(ref.host, ref.scheme or default_scheme(ref.host))
        try:
            self.settings.caller_policy.precheck(registry.hostname, registry.port)
        except OutboundDenied as exc:
            raise unreachable(ref, exc) from None

    def _resolve(self, ref: ModelRef) -> tuple[ModelRef, bytes, str]:
        """A remote tag's digest and manifest (GET, so the digest is the bytes' own).

        Only the remote registry's refusals (401, 403) and 404 reach the caller as they
        are; any other failure is the one generic ``unreachable`` answer, so that a
        caller cannot tell a closed port from a refused address or an odd answer."""
        from client.credentials import lookup
        from client.errors import ClientError, NotFoundError, RegistryResponseError
        from client.ref import Registry
        from client.registry_client import RegistryClient

        registry = Registry(ref.host, ref.scheme or default_scheme(ref.host))
        try:
            with RegistryClient(registry, attempts=2, backoff=0.2,
                                timeout=self.settings.hook_resolve_timeout_seconds,
                                credentials=lookup(registry.host, registry.scheme,
                                                   ambient=False),
                                policy=self.settings.caller_policy) as client:
                manifest = client.get_manifest(ref.name, ref.reference)
        except NotFoundError as exc:
            raise NotFound(f"{ref}: {exc}") from None
        except RegistryResponseError as exc:
            if exc.status in (401, 403):
                raise RemoteUnavailable(f"cannot resolve {ref}: {exc}") from None
            raise unreachable(ref, exc) from None
        except ClientError as exc:
            raise unreachable(ref, exc) from None
        if len(manifest.content) > self.settings.max_manifest_bytes:
            raise RequestInvalid(f"{ref}: the manifest is larger than "
                                 f"{self.settings.max_manifest_bytes} bytes")
        resolved = ModelRef(ref.host, ref.name, ref.tag, manifest.digest, ref.scheme)
        return resolved, manifest.content, manifest.media_type

    # ---- the worker's side -----------------------------------------------------------------
    def target(self, remote_model_id: int) -> RemoteTarget | None:
        with self.db.read() as conn:
            row = conn.execute(select(remote_models).where(
                remote_models.c.id == remote_model_id)).first()
            if row is None:
                return None
            # Namespace policies apply to "HOST[:PORT]/NAME" (a policy "" covers them all).
            policy = self.verification.policy(f"{row.registry}/{row.repository}", conn)
        return RemoteTarget(row.id, row.reference, row.registry, row.repository, row.tag,
                            row.digest, row.media_type, row.content, policy)

    def start(self, remote_model_id: int) -> None:
        with self.db.write() as conn:
            conn.execute(update(remote_models).where(remote_models.c.id == remote_model_id)
                         .values(status=VERIFYING, status_reason=None, updated_at=utcnow()))

    def save_manifest(self, remote_model_id: int, content: bytes, media_type: str) -> None:
        with self.db.write() as conn:
            conn.execute(update(remote_models).where(remote_models.c.id == remote_model_id)
                         .values(content=content, media_type=media_type,
                                 updated_at=utcnow()))

    def finish(self, target: RemoteTarget, *, job_id: int, worker: str,
               report: dict | None = None, reason: str | None = None,
               started_at: datetime | None = None) -> dict | None:
        """The outcome of a job, in one transaction with its completion: a verifier
        ``report`` (a ``verifications`` row; ready or failed), or a ``reason`` the model
        could not be run at all (failed, no row). Returns the verification as JSON ({}
        without a report); None when the job's lease was lost (nothing was written)."""
        now = utcnow()
        try:
            with self.db.write() as conn:
                row = conn.execute(select(remote_models).where(
                    remote_models.c.id == target.id).with_for_update()).first()
                if row is None or row.digest != target.digest:
                    if not self.queue.complete(job_id, worker, {"skipped": "gone"}, conn=conn):
                        raise _LeaseLost()
                    return {}
                result: dict = {}
                if report is not None:
                    passed = bool(report.get("passed"))
                    reason = None if passed else (report.get("reason") or "verification failed")
                    vid = conn.execute(verifications.insert().values(
                        remote_model_id=target.id, job_id=job_id,
                        verdict="passed" if passed else "failed", reason=reason,
                        backend=report.get("backend"),
                        backend_version=report.get("backend_version"),
                        generation_tps=report.get("generation_tps"), report=json.dumps(report),
                        log_tail=report.get("log_tail"), worker=worker,
                        started_at=started_at or now, finished_at=now,
                    ).returning(verifications.c.id)).scalar_one()
                    result = verification_json(conn.execute(
                        select(verifications).where(verifications.c.id == vid)).one())
                    status = READY if passed else FAILED
                else:
                    status = FAILED
                conn.execute(update(remote_models).where(remote_models.c.id == target.id)
                             .values(status=status, status_reason=reason, updated_at=now))
                outcome = ({"verdict": result.get("verdict"), "verification": result.get("id")}
                           if report is not None else {"failed": reason})
                if not self.queue.complete(job_id, worker, outcome, conn=conn):
                    raise _LeaseLost()
                if report is not None:
                    self._emit(conn, row, status, result)
        except _LeaseLost:
            return None
        return result

    def retry(self, target: RemoteTarget | None, *, job_id: int, worker: str,
              error: str) -> str | None:
        """An infrastructure failure: the job comes back after a backoff ("queued"), or,
        out of attempts, fails and so does the model. None: the lease was lost."""
        with self.db.write() as conn:
            outcome = self.queue.fail(job_id, worker, error, retry=True, conn=conn)
            if outcome is None or target is None:
                return outcome
            if outcome == FAILED:
                reason = f"verification could not run: {error}"
                conn.execute(update(remote_models).where(remote_models.c.id == target.id)
                             .values(status=FAILED, status_reason=reason, updated_at=utcnow()))
                row = conn.execute(select(remote_models).where(
                    remote_models.c.id == target.id)).first()
                if row is not None:
                    self._emit(conn, row, FAILED, None, reason)
            else:
                conn.execute(update(remote_models).where(remote_models.c.id == target.id)
                             .values(status=QUEUED, status_reason=f"will retry: {error}",
                                     updated_at=utcnow()))
        return outcome

    def requeue(self, remote_model_id: int) -> None:
        """A worker gives the job back (shutting down): "verifying" -> "queued"."""
        with self.db.write() as conn:
            conn.execute(update(remote_models).where(
                remote_models.c.id == remote_model_id, remote_models.c.status == VERIFYING)
                .values(status=QUEUED, updated_at=utcnow()))

    def reconcile(self) -> int:
        """Statuses a dead worker could not fix: "verifying" whose job is queued again ->
        "queued"; "queued"/"verifying" whose job ended without a verdict (stale on its
        last attempt) -> failed. Returns how many failed."""
        with self.db.read() as conn:
            rows = conn.execute(select(remote_models.c.id, remote_models.c.digest,
                                       remote_models.c.status).where(
                remote_models.c.status.in_((QUEUED, VERIFYING)))).all()

        def requeue(row) -> None:
            with self.db.write() as conn:
                conn.execute(update(remote_models).where(
                    remote_models.c.id == row.id, remote_models.c.status == VERIFYING)
                    .values(status=QUEUED, updated_at=utcnow()))

        def fail(row, error: str | None) -> int:
            with self.db.write() as conn:
                return conn.execute(update(remote_models).where(
                    remote_models.c.id == row.id,
                    remote_models.c.status.in_((QUEUED, VERIFYING))).values(
                    status=FAILED, updated_at=utcnow(),
                    status_reason=f"verification could not run: {error}")).rowcount

        return repair_statuses(self.queue, rows, lambda r: dedupe_key(r.id, r.digest),
                               requeue, fail)

    def _emit(self, conn, row, status: str, result: dict | None,
              reason: str | None = None) -> None:
        """verification.succeeded / .failed to outgoing webhooks, in ``conn``."""
        if self.events is None:
            return
        from registry.services.events import verification_object

        action = "verification.succeeded" if status == READY else "verification.failed"
        target = {"mediaType": row.media_type, "digest": row.digest,
                  "size": len(row.content) if row.content is not None else None,
                  "url": f"{default_scheme(row.registry)}://{row.registry}/v2/"
                         f"{row.repository}/manifests/{row.digest}",
                  "tags": [row.tag] if row.tag else []}
        verification = verification_object(status, result, reason) | {
            "reference": row.reference, "registry": row.registry, "remote": True}
        self.events.emit(conn, action, row.repository, target, verification=verification)

    # ---- people and scripts ----------------------------------------------------------------
    def lookup(self, text: str, request_host: str | None, visible=None) -> dict:
        """``GET /api/v1/verifications?reference=``: the model's status and every
        verification of it, newest first. 404 for a reference nothing is known about.

        ``visible(repository, local)``, if given, is asked before anything is read: when
        it answers False the 404 is the same whether or not the model is known, so a
        caller learns nothing about what it may not see."""
        ref = parse_ref(text)
        local = ref.host is None or _norm_host(ref.host) in local_hosts(
            self.settings.public_url, request_host)
        if visible is not None and not visible(ref.name, local):
            raise NotFound(f"nothing is known about {text!r}")
        return self._lookup_local(ref) if local else self._lookup_remote(ref)

    def _lookup_local(self, ref: ModelRef) -> dict:
        with self.db.read() as conn:
            row = self.verification._manifest_row(conn, ref.name, ref.reference)
            state = self.verification.state(row.id, conn)
            runs = conn.execute(select(verifications).where(
                verifications.c.manifest_id == row.id)
                .order_by(verifications.c.id.desc())).all()
        state.pop("verification", None)  # the latest run: the first of the list
        return {"reference": str(ref), "location": "local", "repository": ref.name,
                "tag": ref.tag, "digest": row.digest, **state,
                "verifications": [verification_json(r) for r in runs]}

    def _lookup_remote(self, ref: ModelRef) -> dict:
        with self.db.read() as conn:
            q = select(remote_models).where(remote_models.c.repository == ref.name)
            if ref.digest:
                q = q.where(remote_models.c.reference == ref.canonical)
            else:
                q = q.where(remote_models.c.tag == ref.tag)
            rows = [r for r in conn.execute(q.order_by(remote_models.c.updated_at.desc(),
                                                       remote_models.c.id.desc())).all()
                    if _norm_host(r.registry) == _norm_host(ref.host)]
            if not rows:
                raise NotFound(f"no verification is known for {ref}; ask for one with "
                               "POST /api/v1/hooks/validate")
            row = rows[0]
            runs = conn.execute(select(verifications).where(
                verifications.c.remote_model_id == row.id)
                .order_by(verifications.c.id.desc())).all()
        job = self.queue.latest(dedupe_key(row.id, row.digest))
        return {"reference": row.reference, "location": "remote", "registry": row.registry,
                "repository": row.repository, "tag": row.tag, "digest": row.digest,
                "mediaType": row.media_type, "source": row.source, "status": row.status,
                "reason": row.status_reason, "updated_at": _iso(row.updated_at),
                "job": ({"id": job.id, "status": job.status, "attempts": job.attempts,
                         "max_attempts": job.max_attempts, "last_error": job.last_error,
                         "worker": job.locked_by} if job else None),
                "verifications": [verification_json(r) for r in runs]}


def unreachable(ref: ModelRef, cause: BaseException) -> RemoteUnavailable:
    """The one answer a caller gets for a registry that cannot be used, whatever the
    cause (refused by the outbound policy, connection refused or reset, a redirect, a
    5xx): the cause goes to the server's log only."""
    log.warning("remote registry of %s: %s", ref, cause)
    return RemoteUnavailable(f"cannot reach the registry of {ref} (the registry's log says "
                             "why; an operator may allow it with ASSAY_OUTBOUND_ALLOW)")


def classify_manifest(content: bytes, media_type: str | None):
    """The model layout of a manifest fetched from another registry, or None when it is
    not a model. A Content-Type that is no manifest type (``application/json`` from some
    registries) defers to the document's own ``mediaType``."""
    try:
        return classify(parse_manifest(content, media_type if media_type in KNOWN_TYPES
                                       else None))
    except ManifestInvalid:
        return None


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()
