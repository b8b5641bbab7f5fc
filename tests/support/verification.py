"""Verification played through the service layer: no worker process, no verifier.

``FakeWorker`` claims the verify job, starts it, records a verifier ``report`` and completes
the job, as ``worker/pool.py`` does, so every state of the lifecycle is reached
deterministically. ``push_model`` pushes a tiny Ollama model (a synthetic GGUF).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

from sqlalchemy import select

from registry.db.tables import manifests, repositories
from tests.support.gguf_files import gguf_bytes
from tests.support.model_artifacts import push_ollama
from verifier.report import Report

WORKER = "test-worker@here:1:0"


@cache
def model_bytes() -> bytes:
    return gguf_bytes()


def push_model(client, name: str, tag: str, variant: str = "v1") -> str:
    """A tiny Ollama model; ``variant`` (its system prompt) makes a distinct manifest
    that shares the GGUF."""
    return push_ollama(client, name, tag, model_bytes(), variant.encode())


def manifest_id(service, name: str, digest: str) -> int:
    with service.db.read() as conn:
        return conn.execute(
            select(manifests.c.id).join(repositories,
                                        repositories.c.id == manifests.c.repository_id)
            .where(repositories.c.name == name, manifests.c.digest == digest)).scalar_one()


def report(passed: bool = True, reason: str | None = None, tps: float = 42.5) -> dict:
    """A verifier report as the worker uploads it: a pass at ``tps``, or a load failure."""
    if passed:
        return Report(
            passed=True, backend="llama.cpp", backend_version="0.3.16",
            hardware={"cpu": "Test CPU", "cores": 4, "threads": 4}, prompt="Say hi",
            load_s=0.25, prompt_tokens=5, prompt_tps=300.0, generation_tps=tps, ttft_s=0.05,
            tokens_generated=32, peak_rss_bytes=123456789, output="hi there",
            output_sha256="ab" * 32, log_tail="llama_model_load: done\n", wall_s=1.5,
        ).to_dict()
    return Report(passed=False, failure="load", reason=reason, backend="llama.cpp",
                  backend_version="0.3.16", hardware={"cpu": "Test CPU"},
                  log_tail="error loading model\n").to_dict()


class FakeWorker:
    """The worker's side of one job, through the service layer (as worker/pool.py does)."""

    def __init__(self, service, name: str, digest: str):
        self.service, self.name, self.digest = service, name, digest
        self.mid = manifest_id(service, name, digest)
        self.started = datetime.now(UTC)
        self.job = service.queue.claim(WORKER, ["verify"])
        assert self.job is not None, "no verify job to claim"
        assert self.job.payload == {"manifest_id": self.mid, "digest": digest}, \
            (self.job.payload, self.mid)
        self.target = service.verification.target(self.mid, digest)
        assert self.target is not None and self.target.digest == digest
        service.verification.start(self.mid)

    def finish(self, data: dict) -> dict:
        row = self.service.verification.record(self.target, data, job_id=self.job.id,
                                               worker=WORKER, started_at=self.started)
        assert self.service.queue.complete(self.job.id, WORKER, {"verification": row.get("id")})
        return row


def verify(service, name: str, digest: str, passed: bool = True, reason: str | None = None,
           tps: float = 42.5) -> dict:
    """Claim the verify job of ``digest`` and record a pass or failure; returns the row."""
    return FakeWorker(service, name, digest).finish(report(passed, reason, tps))

