"""The ``mirror_fill`` job: fetch the blobs of a mirrored manifest that no client pulled,
so the model is stored and verified like any push (``registry.services.mirror_fetch``)."""

from __future__ import annotations

import logging

from registry.db.queue import Job
from registry.errors import NotFound, RegistryError

log = logging.getLogger("assay.worker")


def run_mirror_fill(worker, job: Job) -> str:
    """Fetch, store, complete the job; an upstream failure is retried with backoff."""
    name, digest = job.payload.get("repository"), job.payload.get("digest")
    with worker.lease(job):
        try:
            stored = worker.svc.mirror_fetch.fill(str(name), str(digest))
        except NotFound as exc:  # the mirror was removed meanwhile, or the upstream lost it
            worker.queue.fail(job.id, worker.worker_id, exc.message, retry=False)
            return "failed"
        except RegistryError as exc:
            log.warning("mirror fill %s@%s: %s", name, digest, exc.message)
            worker.queue.fail(job.id, worker.worker_id, exc.message, retry=True)
            return "retry"
        except Exception as exc:
            log.exception("mirror fill %s@%s failed", name, digest)
            worker.queue.fail(job.id, worker.worker_id, f"{type(exc).__name__}: {exc}",
                              retry=True)
            return "retry"
        worker.queue.complete(job.id, worker.worker_id, {"stored": stored})
        return "done"
