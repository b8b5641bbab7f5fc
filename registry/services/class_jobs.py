"""Verification per hardware class: which ``verify`` jobs a model gets, and its status
from its results on each class.

A profile's ``classes`` (``registry.profiles.Classes``) names the hardware classes
(``registry.services.classes``) a model is verified on. A model gets one job per named
class, which only a worker of that class may claim (``jobs.hw_class``, decided in the
claim query), and, when no class is required, one job any worker may take, as without
classes. Each result is a ``verifications`` row carrying its ``hw_class``, with one of
the verdicts:

- ``passed`` / ``failed``: the model ran on a worker of the class;
- ``unsupported``: no worker of the class has the backend the model needs (llama.cpp
  for GGUF, MLX for safetensors): not the model's fault, and not a pass either;
- ``not_measured``: an optional class that no worker took within ``optional_timeout``.

The model's status (what the gate reads): ready once its latest result on every required
class passed; failed as soon as one of them did not (the reason names the class);
otherwise unchanged: queued while it waits, and a model that is ready stays ready (and
served) while a class newly added to its profile measures it. Optional classes are
measured and shown, never gating. Without a required class, the job for any worker
decides, as it always did.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, select

from registry.db.queue import Job, JobKind, JobQueue
from registry.db.tables import verifications
from registry.profiles import Classes

PASSED, FAILED, UNSUPPORTED, NOT_MEASURED = "passed", "failed", "unsupported", "not_measured"
VERDICTS = (PASSED, FAILED, UNSUPPORTED, NOT_MEASURED)
# The backend each weight format runs on (verifier.backends).
BACKEND_OF_FORMAT = {"gguf": "llama.cpp", "safetensors": "mlx"}


def dedupe_key(manifest_id: int, digest: str, hw_class: str | None = None) -> str:
    """One live verification per manifest row, content and class: SQLite may reuse the id
    of a deleted manifest, and a new model must never share the old one's job."""
    key = f"{JobKind.VERIFY}:{manifest_id}:{digest}"
    return key if hw_class is None else f"{key}:{hw_class}"


def job_payload(manifest_id: int, digest: str, hw_class: str | None = None) -> dict:
    payload = {"manifest_id": manifest_id, "digest": digest}
    if hw_class is not None:
        payload["class"] = hw_class
    return payload


def job_classes(classes: Classes) -> list[str | None]:
    """The class of each job a model gets (None: any worker's)."""
    return ([] if classes.required else [None]) + classes.names


def enqueue(queue: JobQueue, conn: Connection, manifest_id: int, digest: str,
            classes: Classes, only: Callable[[str | None], bool] | None = None) -> int | None:
    """Inside ``conn``'s transaction: the model's jobs (those ``only`` accepts), each a
    no-op while one with its key is live. Returns the first job's id (None: none)."""
    ids = [queue.enqueue(conn, JobKind.VERIFY, job_payload(manifest_id, digest, c),
                         dedupe_key=dedupe_key(manifest_id, digest, c), hw_class=c)
           for c in job_classes(classes) if only is None or only(c)]
    return ids[0] if ids else None


def latest_by_class(conn: Connection, manifest_id: int) -> dict[str, object]:
    """The newest ``verifications`` row of each class the manifest has one for."""
    rows = conn.execute(select(verifications)
                        .where(verifications.c.manifest_id == manifest_id,
                               verifications.c.hw_class.is_not(None))
                        .order_by(verifications.c.id)).all()
    return {r.hw_class: r for r in rows}


def class_status(latest: dict[str, object], classes: Classes,
                 live: set[str] = frozenset()) -> tuple[str, str | None] | None:
    """``("failed", why)`` when the latest result on a required class is not a pass,
    ``("ready", None)`` when every required class passed, None while one has no result
    yet (the status stays as it is). A class in ``live`` (its job is queued or running
    again: a re-run) waits for its new result: its old one decides nothing."""
    for name in classes.required:
        row = latest.get(name)
        if row is not None and row.verdict != PASSED and name not in live:
            what = "unsupported" if row.verdict == UNSUPPORTED else \
                "not measured" if row.verdict == NOT_MEASURED else "failed"
            return "failed", f"{what} on class {name}: {row.reason or row.verdict}"
    if all(name in latest and name not in live for name in classes.required):
        return "ready", None
    return None


def live_classes(queue: JobQueue, manifest_id: int, digest: str, names: list[str],
                 but: str | None = None) -> set[str]:
    """Of ``names`` (other than ``but``), the classes whose job is queued or running."""
    return {c for c in names if c != but and (job := queue.latest(
        dedupe_key(manifest_id, digest, c))) is not None and job.status in ("queued", "running")}


def job_json(job: Job | None) -> dict | None:
    if job is None:
        return None
    return {"id": job.id, "status": job.status, "attempts": job.attempts,
            "max_attempts": job.max_attempts, "last_error": job.last_error,
            "worker": job.locked_by, "class": job.hw_class}


def matrix(conn: Connection, queue: JobQueue, manifest_id: int, digest: str,
           classes: Classes, row_json: Callable[[object], dict]) -> dict[str, dict]:
    """Per named class: ``{"required", "status", "reason", "job", "verification"}``.
    ``status``: ``queued``/``running`` while its job is live, else the latest result's
    verdict, else ``none`` (never queued: the class was added after the model was
    verified and no job was made for it)."""
    latest = latest_by_class(conn, manifest_id)
    out = {}
    for name in classes.names:
        row = latest.get(name)
        job = queue.latest(dedupe_key(manifest_id, digest, name))
        live = job is not None and job.status in ("queued", "running")
        status = job.status if live else row.verdict if row is not None else "none"
        out[name] = {
            "required": name in classes.required, "status": status,
            "reason": row.reason if row is not None and not live else None,
            "job": job_json(job), "verification": row_json(row) if row is not None else None,
        }
    return out


def live_job(queue: JobQueue, manifest_id: int, digest: str, classes: Classes) -> Job | None:
    """The job a model's status waits on: the first live one of a required class (then
    of any class), else the newest of them; None when it has none."""
    jobs = [queue.latest(dedupe_key(manifest_id, digest, c)) for c in
            sorted(job_classes(classes), key=lambda c: c not in classes.required)]
    jobs = [j for j in jobs if j is not None]
    for job in jobs:
        if job.status in ("queued", "running"):
            return job
    return max(jobs, key=lambda j: j.id) if jobs else None
