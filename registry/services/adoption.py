"""Adopting verification results that came with a model from another assay: a bundle made
by ``assay export`` carries each model's results artifact (the OCI referrer that
``VerificationService`` publishes), and ``assay import`` asks for it to be recorded here
instead of running the model again.

What is trusted, and why. Anyone who may push can push an artifact claiming any result,
so a referrer alone proves nothing. Adopting is an admin's act, with the right that the
gate override needs (admin of the repository's namespace), and it is written to the audit
log: the admin vouches for where the bundle came from. The registry checks what it can:

- the referrer is a manifest stored in the same repository, of artifact type
  ``VERIFICATION_TYPE``, whose subject is the model, with one report layer stored here
  whose ``subject`` is the model too;
- the report was measured under the profile that applies to the repository here now (the
  same sha256): results under another profile do not answer what this namespace asks
  (``Conflict``; the model is then verified here as usual);
- the report is judged against this registry's other results as a worker's is
  (``registry.services.regressions``), under this registry's copy of the profile (the
  document a report carries is only what its sha256 claims): a reference ratio or a
  regression here can still fail it.

Then, in one transaction: a ``verifications`` row (the report with ``imported``:
``{"referrer", "at", "by"}``; worker null; finished at the artifact's creation time), the
model's status from the verdict, the ``verification.*`` events, the queued verify job
finished unrun, and an ``adopt`` audit entry. A job that a worker has already started is
left to finish: its result is recorded after the adopted one and, being the newer, is the
verdict that stands.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import select

from registry import jsontext
from registry.db.queue import JobQueue
from registry.db.tables import isoformat, manifests, utcnow
from registry.digests import parse_digest
from registry.errors import (
    Conflict,
    ManifestUnknown,
    NameUnknown,
    NotAModel,
    RegistryError,
    RequestInvalid,
)
from registry.manifests import parse_manifest
from registry.profiles import Classes, Profile
from registry.services import audit
from registry.services.common import Service, repo_id
from registry.services.profiles import ProfileService
from registry.services.verification import (
    VERIFICATION_TYPE,
    VerificationService,
    dedupe_key,
)

MAX_REPORT_BYTES = 16 * 1024 * 1024  # a report with a run matrix is tens of KiB


def _class_here(classes: Classes, measured_on: str | None, referrer: str) -> str | None:
    """The hardware class an adopted result counts for here: the one it was measured on,
    when this registry's profile names it; none when the profile names no class (any
    worker's result). ``Conflict`` when a class is required here that it cannot stand for:
    the model is then verified here on every class."""
    if measured_on is not None and measured_on in classes.names:
        return measured_on
    if not classes.required:
        return None
    raise Conflict(f"the results in {referrer} were measured on "
                   f"{'class ' + measured_on if measured_on else 'no hardware class'}; "
                   f"this registry requires the classes {', '.join(classes.required)}: the "
                   "model is verified here instead")


class AdoptionService(Service):
    def __init__(self, db, store, settings, *, verification: VerificationService,
                 profiles: ProfileService, queue: JobQueue):
        super().__init__(db, store, settings)
        self.verification = verification
        self.profiles = profiles
        self.queue = queue

    def adopt(self, name: str, digest: str, referrer: str) -> dict:
        """Record the results artifact ``referrer`` as the verification of model
        ``digest`` in repository ``name`` (see the module's text). Returns
        ``{"digest", "referrer", "status", "verification", "cancelled_job",
        "running_job"}``. Raises ``NameUnknown``/``ManifestUnknown`` (404),
        ``NotAModel`` (409), ``RequestInvalid`` (400: not a results artifact of this
        model) and ``Conflict`` (409: measured under another profile)."""
        parse_digest(digest)
        parse_digest(referrer)
        model, artifact = self._rows(name, digest, referrer)
        report, created = self._report(name, digest, artifact)
        profile = self._same_profile(name, referrer, report)
        # Judged under this registry's own copy of the profile: the document a report
        # carries is only what its sha256 claims it to be.
        report = {**report, "profile": profile.recorded()}
        hw_class = report.get("class") if isinstance(report.get("class"), str) else None
        target = self.verification.target(model.id, digest)
        if target is None:
            raise ManifestUnknown(f"manifest {digest!r} is not in repository {name!r}")
        target.hw_class = _class_here(target.classes, hw_class, referrer)
        judged = self.verification.regressions.judge(model.id, report, target.hw_class)
        now = utcnow()
        report = {**judged.report, "imported": {"referrer": referrer, "at": isoformat(now),
                                                "by": audit.current_actor.get().name}}
        finished = created or now
        key = dedupe_key(model.id, digest, target.hw_class)
        with self.db.write() as conn:
            row = self.verification.store_result(
                conn, target, report, referrer=referrer, job_id=None, worker=None,
                started_at=finished, finished_at=finished, regressed=judged.regressed)
            if row is None:
                raise ManifestUnknown(f"manifest {digest!r} is not in repository {name!r}")
            cancelled = self.queue.cancel(conn, key, {"skipped": f"results adopted from "
                                                                 f"{referrer}"})
            status = conn.execute(select(manifests.c.status)
                                  .where(manifests.c.id == model.id)).scalar()
            audit.record(conn, "adopt", f"{name}@{digest}", referrer=referrer,
                         verdict=row["verdict"], profile=profile.sha256,
                         cancelled_job=cancelled)
        live = None if cancelled is not None else self.queue.find(key)
        return {"digest": digest, "referrer": referrer,
                "status": status,  # (with classes, other classes may still be due)
                "verification": row, "cancelled_job": cancelled,
                "running_job": live.id if live is not None and live.status == "running"
                else None}

    def _rows(self, name: str, digest: str, referrer: str):
        """The model's and the artifact's ``manifests`` rows, both in ``name``."""
        with self.db.read() as conn:
            rid = repo_id(conn, name)
            if rid is None:
                raise NameUnknown(f"repository {name!r} is not known to this registry")
            found = {r.digest: r for r in conn.execute(
                select(manifests).where(manifests.c.repository_id == rid,
                                        manifests.c.digest.in_((digest, referrer))))}
        for d, what in ((digest, "manifest"), (referrer, "results artifact")):
            if d not in found:
                raise ManifestUnknown(f"{what} {d!r} is not in repository {name!r}",
                                      {"reference": d})
        model, artifact = found[digest], found[referrer]
        if model.status is None:
            raise NotAModel(f"{name}@{digest} is not a model; only models are verified")
        if artifact.artifact_type != VERIFICATION_TYPE or artifact.subject_digest != digest:
            raise RequestInvalid(f"{referrer} is not a verification result of {digest}: "
                                 f"its artifactType must be {VERIFICATION_TYPE} and its "
                                 "subject that model")
        return model, artifact

    def _report(self, name: str, digest: str, artifact) -> tuple[dict, datetime | None]:
        """The report the artifact carries and when it was made (its ``created``)."""
        parsed = parse_manifest(artifact.content, artifact.media_type)
        layers = [d for d in parsed.blobs if d.media_type == VERIFICATION_TYPE]
        if len(layers) != 1 or layers[0].size > MAX_REPORT_BYTES:
            raise RequestInvalid(f"{artifact.digest} does not have one report layer of "
                                 f"type {VERIFICATION_TYPE} (at most {MAX_REPORT_BYTES} "
                                 "bytes)")
        layer = layers[0]
        try:
            data = b"".join(self.store.open(layer.digest, 0, layer.size))
        except RegistryError:
            raise RequestInvalid(f"the report {layer.digest} of {artifact.digest} is not "
                                 "stored here") from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != layer.digest:
            raise RequestInvalid(f"the report {layer.digest} does not match its digest")
        try:
            body = jsontext.loads(data)
        except ValueError:
            body = None
        report = body.get("report") if isinstance(body, dict) else None
        if not isinstance(report, dict) or not isinstance(report.get("passed"), bool) \
                or body.get("subject") != digest or not _columns_fit(report):
            raise RequestInvalid(f"{artifact.digest} does not hold a verification report "
                                 f"of {name}@{digest}")
        return report, _created(parsed.annotations)

    def _same_profile(self, name: str, referrer: str, report: dict) -> Profile:
        """The profile that applies to ``name`` here now, which must be the one the
        report was measured under (the same sha256)."""
        profile = report.get("profile") if isinstance(report.get("profile"), dict) else {}
        sha = profile.get("sha256")
        applied = self.profiles.applies(name).profile
        if sha == applied.sha256:
            return applied
        theirs = f"profile {profile.get('name')} ({sha})" if sha else \
            "no profile (recorded before profiles)"
        raise Conflict(f"the profile differs: the results in {referrer} were measured under "
                       f"{theirs}, and {name} is verified here under profile "
                       f"{applied.name} ({applied.sha256}); the model will be verified here")


def _columns_fit(report: dict) -> bool:
    """Whether the fields copied into ``verifications`` columns have their types (a
    worker's report always does; an artifact from elsewhere is only JSON)."""
    def text(key: str, limit: int | None = None) -> bool:
        value = report.get(key)
        return value is None or isinstance(value, str) and (limit is None or
                                                            len(value) <= limit)

    tps = report.get("generation_tps")
    return (text("backend", 64) and text("backend_version", 64) and text("reason")
            and text("log_tail") and (tps is None or isinstance(tps, int | float)
                                      and not isinstance(tps, bool)))


def _created(annotations: dict | None) -> datetime | None:
    """The artifact's ``org.opencontainers.image.created`` (RFC 3339), if readable."""
    text = (annotations or {}).get("org.opencontainers.image.created")
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
