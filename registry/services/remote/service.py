"""Remote models: the state machine of their verification, and lookups of any model's.

See the package docstring for the life of a remote model. Every status change and the job
it goes with commit in one transaction; a worker that lost its job's lease writes nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from client.credentials import lookup
from client.errors import ClientError, NotFoundError, RegistryResponseError
from client.outbound import OutboundDenied
from client.ref import Registry, default_scheme
from client.registry_client import RegistryClient
from registry.db import Database
from registry.db.queue import JobKind, JobQueue
from registry.db.tables import isoformat, remote_models, utcnow, verifications
from registry.errors import (
    ManifestInvalid,
    NotAModel,
    NotFound,
    RegistryError,
    RemoteUnavailable,
    RequestInvalid,
)
from registry.formats.classify import classify
from registry.manifests import KNOWN_TYPES, parse_manifest
from registry.services.common import Service
from registry.services.events import EventService, verification_object
from registry.services.policies import Policy, PolicyService
from registry.services.remote.items import PLAIN, Item, Payload
from registry.services.remote.references import ModelRef, local_hosts, norm_host, parse_ref
from registry.services.report_columns import report_columns
from registry.services.verification import (
    VerificationService,
    repair_statuses,
    verification_json,
)
from registry.settings import Settings
from registry.storage import BlobStore

QUEUED, VERIFYING, READY, FAILED = "queued", "verifying", "ready", "failed"
NOT_A_MODEL = "not a model"
log = logging.getLogger("assay.remote")


def dedupe_key(remote_model_id: int, digest: str) -> str:
    return f"{JobKind.VERIFY_REMOTE}:{remote_model_id}:{digest}"


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
    """The remote models' state machine (see the package docstring)."""

    def __init__(self, db: Database, store: BlobStore, settings: Settings, *, queue: JobQueue,
                 verification: VerificationService, policies: PolicyService,
                 events: EventService):
        super().__init__(db, store, settings)
        self.queue = queue
        self.verification = verification  # local references are re-verified there
        self.policies = policies
        self.events = events

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
                if ref.host is None or norm_host(ref.host) in mine:
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
            job = self.queue.enqueue(conn, JobKind.VERIFY_REMOTE,
                                     {"remote_model_id": row.id, "scheme": scheme},
                                     dedupe_key=dedupe_key(row.id, ref.digest))
        return {"location": "remote", "remote_model": row.id, "reference": ref.canonical,
                "registry": ref.host, "repository": ref.name, "tag": ref.tag,
                "digest": ref.digest, "job": job}

    def _allowed(self, ref: ModelRef) -> None:
        """Refuse a registry written as an address the outbound policy refuses, before
        anything is queued (names are judged when a worker connects); the caller learns
        only that it cannot be reached (see ``unreachable``)."""
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
            policy = self.policies.policy(f"{row.registry}/{row.repository}", conn)
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
                        **report_columns(report),
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
        local = ref.host is None or norm_host(ref.host) in local_hosts(
            self.settings.public_url, request_host)
        if visible is not None and not visible(ref.name, local):
            raise NotFound(f"nothing is known about {text!r}")
        return self._lookup_local(ref) if local else self._lookup_remote(ref)

    def _lookup_local(self, ref: ModelRef) -> dict:
        with self.db.read() as conn:
            row = self.verification._manifest_row(conn, ref.name, ref.reference)
            state = self.verification.state(row.id, conn, ref.name)
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
                    if norm_host(r.registry) == norm_host(ref.host)]
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
                "reason": row.status_reason, "updated_at": isoformat(row.updated_at),
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


