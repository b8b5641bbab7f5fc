"""The worker's side of verification on request: a model in *another* OCI registry.

``run_remote_job(worker, job)`` runs one ``verify_remote`` job (payload
``{"remote_model_id", "scheme"}``, queued by ``registry.services.remote``)::

    the remote_models row -> "verifying"
      -> its manifest: kept from submit time (a tag resolved then), else GET by digest
         (the client checks the bytes against the digest); stored on the row
      -> classify (registry.formats.classify): not a model -> failed "not a model"
      -> its files pulled read-only with assay's own client library (``RegistryClient``,
         ``Downloader``: retries, ranged parts, digest check, resumable) into the model
         cache, laid out as for a local model (``worker.materialize``: a GGUF file, or an
         MLX directory with files named by their paths)
      -> ``verifier.verify`` with the local path's limits (``worker.spec``)
      -> ``RemoteService.finish``: the verification row (``remote_model_id``), the status and
         the job's completion in one transaction

Where it connects: only where the outbound policy for caller-named addresses allows
(``settings.caller_policy``, ``ASSAY_OUTBOUND_ALLOW``), checked on the resolved addresses of
the registry, of every redirect hop (blob downloads follow redirects) and of token realms.

Credentials for the remote registry: the client's own sources
(``client.credentials.lookup``, not ambient), read in the worker process, each
bound to the registry it was given for (scheme, host and port): the entry ``assay login
HOST[:PORT]`` stored for the worker's OS user (``$ASSAY_CONFIG_DIR/auth.json``, default
``~/.config/assay/``), Docker's ``~/.docker/config.json`` ``auths``, or ``ASSAY_TOKEN``
(or ``ASSAY_USERNAME``/``ASSAY_PASSWORD``) for the one registry ``ASSAY_REGISTRY`` names.
They are sent only when the remote registry asks (a ``401`` challenge: Docker token auth
or Basic), so public registries need none, and never to another origin.

Failures (what is recorded is what signed-in users read: connection details stay in the
worker's log):

- the outbound policy refuses the registry or a redirect: failed "cannot pull: ... not
  reachable from this registry", not retried;
- the remote registry is unreachable, answers 5xx/429, or sends bytes that do not match
  their digest: infrastructure, the job is retried with backoff; out of attempts the model
  fails with "verification could not run: ...";
- it refuses (401/403: no credentials for it, wrong ones, or not allowed to pull; the
  reason says which and how to log in) or no longer has the model (404), or the model
  does not fit the worker's cache: failed with that reason, not retried (no verification
  row: never run);
- the model fails (does not load, too slow ...): a failed verdict, not retried;
- shutdown: the job is released and the model is "queued" again.

Cache: blobs land in ``<model cache>/blobs/<algorithm>/<hex>``, the same LRU (bounded by
``model_cache_bytes``) the S3 store's blobs use, content-addressed so shared across jobs
and registries. Downloads in progress live in ``<model cache>/remote-partial/`` (one lock per
blob, so two workers never fetch the same blob at once; an interrupted download resumes
from its finished parts on the job's next attempt), where the LRU never evicts them.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from registry.formats.classify import GGUF, ModelFormat
from worker.lease import Cancelled, JobLease
from worker.materialize import Materializer

log = logging.getLogger("assay.worker")

PARTIAL_DIR = "remote-partial"
STALE_PARTIAL_SECONDS = 24 * 3600
# Answers that mean the model cannot be pulled, whatever we retry.
PERMANENT_STATUSES = (400, 401, 403, 404, 405, 410)
UNREACHABLE = "the registry could not be reached"


class _Permanent(Exception):
    """The model cannot be verified as asked (refused, gone, too large): failed, no retry."""


class RemoteMaterializer(Materializer):
    """A ``Materializer`` whose blobs come from another registry instead of our store."""

    def __init__(self, downloader, repository: str, cache_root: Path, cache_bytes: int,
                 cancel: threading.Event | None = None):
        super().__init__(None, cache_root, cache_bytes)  # no store: never "in place"
        self.downloader = downloader
        self.repository = repository
        self.cancel = cancel or threading.Event()
        self._sweep_partials()

    def _sweep_partials(self) -> None:
        """Drop downloads nobody resumed for a day (a model that failed for good); the
        lock files stay, as removing one another worker holds would break the lock."""
        cutoff = time.time() - STALE_PARTIAL_SECONDS
        with contextlib.suppress(FileNotFoundError):
            for entry in (self.root / PARTIAL_DIR).iterdir():
                if entry.name.endswith((".part", ".part.json", ".part.json.tmp")):
                    with contextlib.suppress(FileNotFoundError):
                        if entry.stat().st_mtime < cutoff:
                            entry.unlink()

    def blob(self, digest: str, size: int) -> Path:
        if self.cancel.is_set():
            raise Cancelled()
        algorithm, _, hexdigest = digest.partition(":")
        cached = self.root / "blobs" / algorithm / hexdigest
        if _fresh(cached, size):
            return cached
        staging = self.root / PARTIAL_DIR
        staging.mkdir(parents=True, exist_ok=True)
        with open(staging / f"{hexdigest}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be fetching it right now
            try:
                if _fresh(cached, size):
                    return cached
                self._make_room(size)
                dest = staging / hexdigest
                self.downloader.fetch(self.repository, digest, size, dest,
                                      label=f"{self.repository}@{digest[:19]}")
                cached.parent.mkdir(parents=True, exist_ok=True)
                os.replace(dest, cached)  # same filesystem: atomic, never half-visible
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return cached


def _fresh(path: Path, size: int) -> bool:
    try:
        if path.stat().st_size == size:
            os.utime(path)  # most recently used
            return True
    except FileNotFoundError:
        pass
    return False


def _files(fmt: ModelFormat):
    return fmt.weights if fmt.weight_format == GGUF else (fmt.files or fmt.weights)


def run_remote_job(worker, job) -> str:
    """Run one claimed ``verify_remote`` job on ``worker`` (a ``worker.pool.Worker``);
    returns what became of it (for logs and tests)."""
    from client.errors import (
        BadReference,
        ClientError,
        ConnectionFailed,
        RegistryResponseError,
    )
    from client.outbound import OutboundDenied
    from verifier import BackendUnavailable
    from verifier import Cancelled as VerifierCancelled

    svc = worker.svc.remote
    target = None
    with worker.lease(job) as lease:
        try:
            target = svc.target(int(job.payload.get("remote_model_id", -1)))
            if target is None:
                worker.queue.complete(job.id, worker.worker_id,
                                      {"skipped": "the remote model is gone"})
                return "skipped"
            svc.start(target.id)
            log.info("verifying %s (job %s, attempt %s)", target.reference, job.id,
                     job.attempts)
            outcome = _verify(worker, job, target, lease)
            if outcome is None:
                log.warning("job %s: lease lost; result dropped", job.id)
                return "lost"
            return outcome
        except (Cancelled, VerifierCancelled):
            return worker.released(job, lease, None if target is None else
                                   functools.partial(svc.requeue, target.id))
        except (_Permanent, BadReference) as exc:
            reason = f"cannot verify: {exc}"
            return _finish(worker, job, target, reason=reason, label="failed")
        except OutboundDenied as exc:
            log.warning("job %s: %s", job.id, exc)
            return _finish(worker, job, target, label="failed",
                           reason=f"cannot pull: {UNREACHABLE} (refused by the outbound "
                                  "policy; the worker's log says where)")
        except RegistryResponseError as exc:
            if exc.status in PERMANENT_STATUSES:
                return _finish(worker, job, target, reason=f"cannot pull: {exc}",
                               label="failed")
            log.warning("job %s: %s", job.id, exc)
            return _retry(worker, job, target, UNREACHABLE)
        except ConnectionFailed as exc:  # try again later; the detail is for the log
            log.warning("job %s: %s", job.id, exc)
            return _retry(worker, job, target, UNREACHABLE)
        except ClientError as exc:  # a digest mismatch, say: try again later
            return _retry(worker, job, target, str(exc))
        except BackendUnavailable as exc:
            return _retry(worker, job, target, f"verifier backend unavailable: {exc}")
        except Exception as exc:
            log.exception("job %s failed on infrastructure", job.id)
            return _retry(worker, job, target, f"{type(exc).__name__}: {exc}")


def _verify(worker, job, target, lease: JobLease) -> str | None:
    from client.credentials import lookup
    from client.download import Downloader
    from client.progress import silent
    from client.ref import Registry, default_scheme
    from client.registry_client import RegistryClient
    from registry.services.remote import NOT_A_MODEL, classify_manifest
    from worker.spec import verify_model

    settings = worker.settings
    svc = worker.svc.remote
    started = datetime.now(UTC)
    scheme = job.payload.get("scheme")
    if scheme not in ("http", "https"):
        scheme = default_scheme(target.registry)
    with RegistryClient(Registry(target.registry, scheme),
                        credentials=lookup(target.registry, scheme, ambient=False),
                        policy=settings.caller_policy) as client:
        content, media_type = target.content, target.media_type
        if content is None:
            manifest = client.get_manifest(target.repository, target.digest)
            content, media_type = manifest.content, manifest.media_type
            svc.save_manifest(target.id, content, media_type)
        fmt = classify_manifest(content, media_type)
        if fmt is None:
            return _finish(worker, job, target, reason=NOT_A_MODEL, label="not a model")
        files = {f.descriptor.digest: f.descriptor.size for f in _files(fmt)}
        total = sum(files.values())
        if total > settings.model_cache_bytes:
            raise _Permanent(f"its files ({total} bytes) do not fit the worker's model cache "
                             f"(ASSAY_MODEL_CACHE_BYTES={settings.model_cache_bytes})")
        materializer = RemoteMaterializer(Downloader(client, silent()), target.repository,
                                          settings.model_cache_root, settings.model_cache_bytes,
                                          lease.cancel)
        # Profiles, like policies, apply to "HOST[:PORT]/NAME".
        profile = worker.svc.profiles.applies(f"{target.registry}/{target.repository}")
        report = verify_model(settings, materializer, fmt, target.policy, profile.profile,
                              lease.cancel, capabilities=worker.capabilities)
    if lease.cancel.is_set():
        raise Cancelled()
    result = svc.finish(target, job_id=job.id, worker=worker.worker_id,
                        report=report.to_dict(), started_at=started)
    if result is None:
        return None
    log.info("%s: %s%s", target.reference, "ready" if report.passed else "failed",
             "" if report.passed else f" ({report.reason})")
    return "passed" if report.passed else "failed"


def _finish(worker, job, target, *, reason: str, label: str) -> str:
    if target is None:
        worker.queue.fail(job.id, worker.worker_id, reason[:2000], retry=False)
        return label
    done = worker.svc.remote.finish(target, job_id=job.id, worker=worker.worker_id,
                                    reason=reason[:2000])
    log.info("%s: %s", target.reference, reason)
    return label if done is not None else "lost"


def _retry(worker, job, target, error: str) -> str:
    log.warning("job %s (%s): %s; will retry", job.id,
                target.reference if target else "?", error)
    try:
        worker.svc.remote.retry(target, job_id=job.id, worker=worker.worker_id,
                                error=error[:2000])
    except Exception:
        log.exception("could not record the failure of job %s", job.id)
    return "retry"
