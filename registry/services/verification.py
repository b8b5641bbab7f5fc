"""Verification as the registry sees it: model status, policies, results, referrers.

Lifecycle of a model manifest (``manifests.status``; NULL for anything not a model)::

    PUT (in the same transaction: status "queued" + a "verify" job)
      -> "verifying" (a worker claimed the job: ``start``)
      -> "ready" | "failed" (``record``: one ``verifications`` row, the status, the reason,
         and an OCI artifact whose subject is the model, type VERIFICATION_TYPE)

Results another assay measured, carried with the model in a bundle (``assay export`` /
``assay import``), may be adopted by a namespace admin instead of running the model again
(``registry.services.adoption``); they are stored by ``store_result`` like a worker's.

A re-run (``request``) of a ready model leaves it ready (and served) until its new result
arrives. An admin ``override`` lets a failed model through the gate; it is recorded in
``override_*`` and never rewrites the verdict.

Policies (gate, speed floor) per namespace are ``registry.services.policies``'.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from registry.db import Database
from registry.db.queue import JobKind, JobQueue
from registry.db.tables import (
    isoformat,
    manifests,
    repositories,
    tags,
    utcnow,
    verifications,
)
from registry.digests import check_tag, is_digest, parse_digest
from registry.errors import ManifestUnknown, NameUnknown, NotAModel, RequestInvalid
from registry.formats.classify import ModelFormat, classify
from registry.manifests import OCI_MANIFEST, parse_manifest
from registry.profiles import Classes
from registry.services import audit, class_jobs
from registry.services.class_jobs import (  # noqa: F401 (job helpers, imported from here)
    NOT_MEASURED,
    UNSUPPORTED,
    VERDICTS,
    dedupe_key,
    job_payload,
)
from registry.services.common import Service, repo_id
from registry.services.events import EventService, verification_object
from registry.services.policies import Policy, PolicyService
from registry.services.profiles import ProfileService
from registry.services.regressions import RegressionService
from registry.services.report_columns import report_columns
from registry.services.uploads import UploadService
from registry.settings import Settings
from registry.storage import BlobStore

if TYPE_CHECKING:  # manifests.py enqueues with this module's job helpers
    from registry.services.manifests import ManifestService

VERIFICATION_TYPE = "application/vnd.assay.verification.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
QUEUED, VERIFYING, READY, FAILED = "queued", "verifying", "ready", "failed"
# Figures copied from a verifier report into the REST answer (the full report is kept).
FIGURES = ("load_s", "prompt_tokens", "prompt_tps", "generation_tps", "ttft_s",
           "tokens_generated", "peak_rss_bytes", "peak_gpu_bytes", "output", "output_sha256",
           "wall_s")
# The profile's results, copied from the report as they are (null when it has none).
RESULTS = ("runs", "quality", "fit", "regressions")


@dataclass
class Target:
    """What a worker needs to verify one manifest: on ``hw_class`` (None: any worker),
    for a profile naming ``classes``."""

    manifest_id: int
    repository: str
    digest: str
    media_type: str
    size: int
    model: ModelFormat
    policy: Policy
    hw_class: str | None = None
    classes: Classes = field(default_factory=Classes)


class VerificationService(Service):
    def __init__(self, db: Database, store: BlobStore, settings: Settings, *, queue: JobQueue,
                 uploads: UploadService, manifests: ManifestService,
                 policies: PolicyService, events: EventService,
                 regressions: RegressionService, profiles: ProfileService):
        super().__init__(db, store, settings)
        self.queue = queue
        self.uploads = uploads
        self.manifests = manifests  # publishes the report artifacts
        self._policies = policies
        self.events = events
        self.regressions = regressions  # reads a report against the registry's other results
        self.profiles = profiles  # which hardware classes a model is verified on

    # ---- policies (kept here for the REST API; registry.services.policies owns them) ----
    def policy(self, name: str, conn=None) -> Policy:
        return self._policies.policy(name, conn)

    def policies(self) -> list[Policy]:
        return self._policies.policies()

    def set_policy(self, namespace: str, gate: bool, min_generation_tps: float | None) -> Policy:
        return self._policies.set_policy(namespace, gate, min_generation_tps)

    def delete_policy(self, namespace: str) -> bool:
        return self._policies.delete_policy(namespace)

    # ---- the worker's side -----------------------------------------------------------
    def target(self, manifest_id: int, digest: str | None = None,
               hw_class: str | None = None) -> Target | None:
        """The manifest to verify on ``hw_class``, or None when it was deleted (or is not
        a model, or the id now belongs to other content: ``digest`` is the one the job was
        queued for; jobs queued by migration 0003 carry none)."""
        with self.db.read() as conn:
            row = conn.execute(
                select(manifests.c.digest, manifests.c.media_type, manifests.c.content,
                       manifests.c.size, repositories.c.name)
                .join(repositories, repositories.c.id == manifests.c.repository_id)
                .where(manifests.c.id == manifest_id)).first()
            if row is None or (digest is not None and row.digest != digest):
                return None
            model = classify(parse_manifest(row.content, row.media_type))
            if model is None:
                return None
            return Target(manifest_id, row.name, row.digest, row.media_type, row.size, model,
                          self.policy(row.name, conn), hw_class,
                          self.profiles.applies(row.name, conn).profile.classes)

    def start(self, manifest_id: int) -> None:
        """A worker began verifying: a waiting model is "verifying" (a ready one stays ready:
        a re-run keeps serving it until the new verdict; a failed one stays failed while a
        class that does not decide its status is measured)."""
        with self.db.write() as conn:
            conn.execute(update(manifests)
                         .where(manifests.c.id == manifest_id,
                                manifests.c.status.in_((QUEUED, VERIFYING)))
                         .values(status=VERIFYING, status_changed_at=_now()))
            self.events.emit_manifest(conn, "verification.started", manifest_id,
                                      verification=verification_object(VERIFYING))

    def record(self, target: Target, report: dict, *, job_id: int | None,
               worker: str | None, started_at: datetime) -> dict:
        """Store a verifier report (``verifier.Report.to_dict()``): the referrer artifact,
        the ``verifications`` row and the model's new status. The report is first judged
        against the registry's other results (``registry.services.regressions``: the
        reference ratio and regressions, which may fail it); what is stored, published
        and sent is the judged report. Returns the stored row as JSON. Raises on
        storage/database failure (the job is then retried)."""
        finished = _now()
        if not self._still_there(target):  # deleted while it was being verified
            return {}
        if target.hw_class is not None:
            report = {**report, "class": target.hw_class}
        judged = self.regressions.judge(target.manifest_id, report, target.hw_class)
        report = judged.report
        passed = bool(report.get("passed"))
        # A class the model could not run on has no run to publish.
        referrer = None if report.get("verdict") == UNSUPPORTED else \
            self._publish(target, report, passed, finished)
        with self.db.write() as conn:
            row = self.store_result(conn, target, report, referrer=referrer,
                                    job_id=job_id, worker=worker, started_at=started_at,
                                    finished_at=finished, regressed=judged.regressed)
        return row or {}

    def store_result(self, conn, target: Target, report: dict, *, referrer: str | None,
                     job_id: int | None, worker: str | None, started_at: datetime,
                     finished_at: datetime, regressed: bool) -> dict | None:
        """Inside the caller's write transaction: the ``verifications`` row of a judged
        ``report`` (on ``target.hw_class``), the model's new status, if the result decides
        one (``registry.services.class_jobs``), and the ``verification.*`` events.
        Returns the row as JSON, or None (nothing written) when the manifest was deleted
        meanwhile. Shared by ``record``, adopted results (``registry.services.adoption``)
        and class results that had no run (unsupported, not measured)."""
        if not self._still_there(target, conn):
            return None
        # Judged under the classes the profile names now (it may have changed meanwhile).
        target.classes = self.profiles.applies(target.repository, conn).profile.classes
        passed = bool(report.get("passed"))
        verdict = "passed" if passed else "failed"
        if not passed and report.get("verdict") in VERDICTS:
            verdict = report["verdict"]
        reason = None if passed else (report.get("reason") or "verification failed")
        vid = conn.execute(verifications.insert().values(
            manifest_id=target.manifest_id, job_id=job_id, hw_class=target.hw_class,
            verdict=verdict, reason=reason,
            backend=report.get("backend"), backend_version=report.get("backend_version"),
            generation_tps=report.get("generation_tps"), **report_columns(report),
            report=json.dumps(report), log_tail=report.get("log_tail"),
            referrer_digest=referrer, worker=worker, started_at=started_at,
            finished_at=finished_at).returning(verifications.c.id)).scalar_one()
        status = self._status_after(conn, target, passed, reason)
        row = conn.execute(select(verifications).where(verifications.c.id == vid)).one()
        if status is not None:
            event = verification_object(status[0], verification_json(row))
            self.events.emit_manifest(
                conn, "verification.succeeded" if status[0] == READY
                else "verification.failed", target.manifest_id, verification=event)
        if regressed:
            event = verification_object(status[0] if status else READY if passed else FAILED,
                                        verification_json(row))
            self.events.emit_manifest(conn, "verification.regressed", target.manifest_id,
                                      verification=event)
        return verification_json(row)

    def _status_after(self, conn, target: Target, passed: bool,
                      reason: str | None) -> tuple[str, str | None] | None:
        """The model's status once this result is stored, written; None when the result
        does not decide it (an optional class, a required class still waiting for
        another, a result without a class where classes are required)."""
        required = target.classes.required
        if required and target.hw_class in required:
            live = class_jobs.live_classes(self.queue, target.manifest_id, target.digest,
                                           required, but=target.hw_class)
            found = class_jobs.class_status(
                class_jobs.latest_by_class(conn, target.manifest_id), target.classes, live)
        elif not required and target.hw_class is None:
            found = (READY if passed else FAILED, reason)
        else:
            found = None
        if found is not None:
            conn.execute(update(manifests).where(manifests.c.id == target.manifest_id)
                         .values(status=found[0], status_reason=found[1],
                                 status_changed_at=_now()))
        elif target.hw_class is not None and not self._running_elsewhere(target):
            # Waiting for another class: "verifying" no longer, unless one of them runs.
            conn.execute(update(manifests).where(manifests.c.id == target.manifest_id,
                                                 manifests.c.status == VERIFYING)
                         .values(status=QUEUED, status_changed_at=_now()))
        return found

    def _running_elsewhere(self, target: Target) -> bool:
        """Another of the model's jobs (another class's, or any worker's) is running."""
        return any(
            (job := self.queue.latest(dedupe_key(target.manifest_id, target.digest, c)))
            is not None and job.status == "running"
            for c in class_jobs.job_classes(target.classes) if c != target.hw_class)

    def _still_there(self, target: Target, conn=None) -> bool:
        q = select(manifests.c.id).where(manifests.c.id == target.manifest_id,
                                         manifests.c.digest == target.digest)
        if conn is not None:
            return conn.execute(q.with_for_update()).first() is not None
        with self.db.read() as c:
            return c.execute(q).first() is not None

    def requeue(self, target: Target) -> None:
        """A worker gives the job back (shutting down): "verifying" -> "queued". Called
        before the job is released, so no other worker can have started it yet."""
        with self.db.write() as conn:
            conn.execute(update(manifests).where(
                manifests.c.id == target.manifest_id, manifests.c.digest == target.digest,
                manifests.c.status == VERIFYING).values(status=QUEUED,
                                                        status_changed_at=_now()))

    def abandon(self, target: Target, error: str) -> None:
        """The job ran out of attempts on infrastructure errors: the model was never run.
        It fails (not served) with a reason saying so; ``assay verify`` can try again. A
        job for a hardware class fails that class instead, which fails the model only
        where the class is required."""
        with self.db.write() as conn:
            if target.hw_class is None:
                self._fail_unrun(conn, target.manifest_id, target.digest, error)
                return
            now = _now()
            self.store_result(conn, target, {"passed": False, "class": target.hw_class,
                                             "reason": f"verification could not run: {error}"},
                              referrer=None, job_id=None, worker=None, started_at=now,
                              finished_at=now, regressed=False)

    def reconcile(self) -> int:
        """Repair statuses a dead worker could not: "verifying" with its job back in the
        queue -> "queued"; "queued"/"verifying" whose job ended without a verdict (stale
        on its last attempt) -> failed like ``abandon``. Returns how many failed."""
        with self.db.read() as conn:
            rows = conn.execute(select(manifests.c.id, manifests.c.digest, manifests.c.status,
                                       repositories.c.name)
                                .join(repositories,
                                      repositories.c.id == manifests.c.repository_id)
                                .where(manifests.c.status.in_((QUEUED, VERIFYING)))).all()
            required = {r.name: self.profiles.applies(r.name, conn).profile.classes.required
                        for r in rows}

        def key(row) -> str:
            """The job the status hangs on: with required classes, a running one, else a
            queued one, else one that failed (ran out of attempts)."""
            keys = [dedupe_key(row.id, row.digest, c) for c in required[row.name]]
            if not keys:
                return dedupe_key(row.id, row.digest)
            latest = {k: self.queue.latest(k) for k in keys}
            for status in ("running", "queued", "failed"):
                found = [k for k, job in latest.items() if job and job.status == status]
                if found:
                    return found[0]
            return keys[0]

        def requeue(row) -> None:
            with self.db.write() as conn:
                conn.execute(update(manifests).where(
                    manifests.c.id == row.id, manifests.c.status == VERIFYING)
                    .values(status=QUEUED, status_changed_at=_now()))

        def fail(row, error: str | None) -> int:
            with self.db.write() as conn:
                return self._fail_unrun(conn, row.id, row.digest, error)

        return repair_statuses(self.queue, rows, key, requeue, fail)

    def _fail_unrun(self, conn, manifest_id: int, digest: str, error: str | None) -> int:
        """A model whose verification could never run: failed, with that as the reason
        (and the event saying so). Returns 1 if the status changed, else 0."""
        reason = f"verification could not run: {error}"
        done = conn.execute(update(manifests).where(
            manifests.c.id == manifest_id, manifests.c.digest == digest,
            manifests.c.status.in_((QUEUED, VERIFYING))).values(
            status=FAILED, status_changed_at=_now(), status_reason=reason))
        if done.rowcount:
            self.events.emit_manifest(conn, "verification.failed", manifest_id,
                                      verification=verification_object(FAILED, reason=reason))
        return done.rowcount

    def _publish(self, target: Target, report: dict, passed: bool, when: datetime) -> str:
        """Push the report as an OCI artifact whose subject is the model manifest."""
        body = json.dumps({"subject": target.digest, "repository": target.repository,
                           "report": report}, sort_keys=True).encode()
        layer = self.uploads.put_bytes(target.repository, body)
        empty = self.uploads.put_bytes(target.repository, b"{}")
        annotations = {"org.opencontainers.image.created": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "dev.assay.verdict": "passed" if passed else "failed"}
        if target.hw_class is not None:
            annotations["dev.assay.class"] = target.hw_class
        if report.get("generation_tps") is not None:
            annotations["dev.assay.generation_tps"] = f"{report['generation_tps']:.2f}"
        if report.get("backend"):
            annotations["dev.assay.backend"] = str(report["backend"])
        profile = report.get("profile") or {}
        if profile.get("sha256"):
            annotations["dev.assay.profile"] = f"{profile.get('name')}@{profile['sha256']}"
        if (report.get("regressions") or {}).get("items"):
            annotations["dev.assay.regressed"] = "true"
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": VERIFICATION_TYPE,
            "config": {"mediaType": EMPTY_TYPE, "digest": empty, "size": 2},
            "layers": [{"mediaType": VERIFICATION_TYPE, "digest": layer, "size": len(body),
                        "annotations": {"org.opencontainers.image.title":
                                        "verification.json"}}],
            "subject": {"mediaType": target.media_type, "digest": target.digest,
                        "size": target.size},
            "annotations": annotations,
        }, separators=(",", ":")).encode()
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        # The registry's own artifact: announced by the verification event, not a push.
        self.manifests.put(target.repository, digest, manifest, OCI_MANIFEST, own=True)
        return digest

    # ---- people and scripts ----------------------------------------------------------
    def _manifest_row(self, conn, name: str, reference: str):
        rid = repo_id(conn, name)
        if rid is None:
            raise NameUnknown(f"repository {name!r} is not known to this registry")
        if is_digest(reference):
            parse_digest(reference)
            q = select(manifests).where(manifests.c.repository_id == rid,
                                        manifests.c.digest == reference)
        else:
            check_tag(reference)
            q = (select(manifests).join(tags, tags.c.manifest_id == manifests.c.id)
                 .where(tags.c.repository_id == rid, tags.c.name == reference))
        row = conn.execute(q).first()
        if row is None:
            raise ManifestUnknown(f"manifest {reference!r} is not in repository {name!r}",
                                  {"reference": reference})
        return row

    def request(self, name: str, reference: str) -> dict:
        """Queue a (re-)verification of a model manifest; idempotent while one is live."""
        with self.db.write() as conn:
            row = self._manifest_row(conn, name, reference)
            if row.status is None:
                raise NotAModel(f"{name}@{row.digest} is not a model; only models are "
                                  "verified")
            classes = self.profiles.applies(name, conn).profile.classes
            job_id = class_jobs.enqueue(self.queue, conn, row.id, row.digest, classes)
            if row.status == FAILED:
                conn.execute(update(manifests).where(manifests.c.id == row.id)
                             .values(status=QUEUED, status_changed_at=_now()))
        return {"job": job_id, "digest": row.digest}

    def override(self, name: str, digest: str, by: str, reason: str) -> dict:
        """Let a model that is not ready through the gate; recorded, verdict untouched."""
        if not reason.strip():
            raise RequestInvalid("an override needs a reason")
        with self.db.write() as conn:
            row = self._manifest_row(conn, name, digest)
            if row.status is None:
                raise NotAModel(f"{name}@{row.digest} is not a model; it is never gated")
            conn.execute(update(manifests).where(manifests.c.id == row.id).values(
                override_by=by, override_reason=reason.strip(), override_at=_now()))
            audit.record(conn, "override", f"{name}@{row.digest}", by=by,
                         reason=reason.strip(), status=row.status)
        return {"digest": row.digest, "by": by, "reason": reason.strip()}

    def state(self, manifest_id: int, conn, name: str) -> dict:
        """Status, override, latest verification (with the result on each hardware class
        its profile names, under ``classes``) and live job of manifest ``manifest_id`` of
        repository ``name``."""
        row = conn.execute(select(manifests).where(manifests.c.id == manifest_id)).one()
        latest = conn.execute(select(verifications)
                              .where(verifications.c.manifest_id == manifest_id)
                              .order_by(verifications.c.id.desc()).limit(1)).first()
        job, classes = None, Classes()
        if row.status is not None:
            classes = self.profiles.applies(name, conn).profile.classes
            job = class_jobs.live_job(self.queue, manifest_id, row.digest, classes) or \
                self.queue.latest(f"{JobKind.VERIFY}:{manifest_id}")  # (migration 0003's key)
        verification = verification_json(latest) if latest else None
        if classes.names:
            verification = verification or empty_verification()
            verification["classes"] = class_jobs.matrix(
                conn, self.queue, manifest_id, row.digest, classes, verification_json)
        return {
            "status": row.status,
            "reason": row.status_reason,
            "status_changed_at": isoformat(row.status_changed_at),
            "override": ({"by": row.override_by, "reason": row.override_reason,
                          "at": isoformat(row.override_at)} if row.override_at else None),
            "verification": verification,
            "job": class_jobs.job_json(job),
        }

    def state_of(self, name: str, reference: str) -> dict:
        with self.db.read() as conn:
            row = self._manifest_row(conn, name, reference)
            return self.state(row.id, conn, name)

    def history(self, name: str, reference: str, limit: int | None = None) -> list[dict]:
        """Every verification run of a manifest, newest first (the newest ``limit``)."""
        with self.db.read() as conn:
            row = self._manifest_row(conn, name, reference)
            rows = conn.execute(select(verifications)
                                .where(verifications.c.manifest_id == row.id)
                                .order_by(verifications.c.id.desc()).limit(limit)).all()
        return [verification_json(r) for r in rows]


def repair_statuses(queue, rows, key, requeue, fail) -> int:
    """What a dead worker left behind, for rows with ``.status`` queued/verifying (models
    here, or in other registries): "verifying" whose job ``key(row)`` is back in the queue
    -> ``requeue(row)``; no live job and the last one ``failed`` (stale on its last
    attempt) -> ``fail(row, error)``, which returns how many rows it changed."""
    fixed = 0
    for row in rows:
        live = queue.find(key(row))
        if live is not None:
            if live.status == "queued" and row.status == VERIFYING:
                requeue(row)
            continue
        job = queue.latest(key(row))
        if job is not None and job.status == "failed":
            fixed += fail(row, job.last_error)
    return fixed


def empty_verification() -> dict:
    """A verification object before any result: every field null (its ``classes`` say
    what each class waits for)."""
    empty = dict.fromkeys(("id", "verdict", "class", "reason", "backend", "backend_version",
                           "hardware", "network_isolated", "sandbox", "profile", *RESULTS,
                           "log_tail", "referrer", "worker", "started_at", "finished_at"))
    return {**empty, "figures": dict.fromkeys(FIGURES)}


def verification_json(row) -> dict:
    report = json.loads(row.report) if row.report else {}
    return {
        "id": row.id,
        "verdict": row.verdict,
        "class": row.hw_class,  # the hardware class it ran on; null: any worker
        "reason": row.reason,
        "backend": row.backend,
        "backend_version": row.backend_version,
        "hardware": report.get("hardware"),
        "figures": {k: report.get(k) for k in FIGURES},
        # The verifier's sandbox; null for runs recorded before reports carried it.
        "network_isolated": report.get("network_isolated"),
        "sandbox": report.get("sandbox"),
        # What the profile measured (``registry.services.regressions`` adds the reference
        # ratio and the regressions); null for reports recorded before profiles.
        "profile": _profile_ref(report.get("profile")),
        **{k: report.get(k) for k in RESULTS},
        # Results adopted from another registry's artifact (registry.services.adoption):
        # {"referrer", "at", "by"}; absent for a run of this registry's workers.
        **({"imported": report["imported"]} if isinstance(report.get("imported"), dict)
           else {}),
        "log_tail": row.log_tail,
        "referrer": row.referrer_digest,
        "worker": row.worker,
        "started_at": isoformat(row.started_at),
        "finished_at": isoformat(row.finished_at),
    }


def _profile_ref(profile) -> dict | None:
    """A report's profile without its document: ``{"name", "sha256"}``."""
    if not isinstance(profile, dict):
        return None
    return {"name": profile.get("name"), "sha256": profile.get("sha256")}


def _now() -> datetime:
    return utcnow()


