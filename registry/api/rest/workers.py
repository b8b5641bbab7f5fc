"""``GET /api/v1/workers``: the verification worker processes this registry knows of.

The answer is ``WorkerList``: every worker seen in the last week, newest sighting first,
each ``busy`` or ``idle`` (present), ``stopped`` (cleanly) or ``lost`` (not seen within
the job lease: killed, or its machine gone), with its capabilities, labels and what it is
running, and ``presence``: how many are present now.
See ``registry.services.workers``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import service
from registry.api.rest.common import operation
from registry.api.rest.schemas import Answer, WorkerPresence


class Running(Answer):
    job: int
    kind: str = Field(description="verify, verify_remote or mirror_fill.")
    target: str | None = Field(description="What the job is about: REPOSITORY@DIGEST.")
    hw_class: str | None = Field(None, alias="class",
                                 description="The hardware class it runs for (null: any).")


class WorkerInfo(Answer):
    id: str = Field(description="The id it claims jobs under (worker@host:pid:random).")
    hostname: str
    pid: int
    state: Literal["busy", "idle", "stopped", "lost"]
    job: int | None = Field(description="The job it is running.")
    running: Running | None = Field(description="What that job is about (busy workers).")
    capabilities: dict[str, Any] = Field(
        description="What it is and can run, as it announced when it started: backends "
        "(llama.cpp with its build, mlx with its device), accelerator (kind none, cuda or "
        "metal; name, memory_bytes), cpu_model, cores, memory_bytes, os, arch.")
    labels: dict[str, str] = Field(description="Its operator's labels (ASSAY_WORKER_LABELS).")
    classes: list[str] = Field(description="The hardware classes whose selectors it meets.")
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None


class WorkerList(Answer):
    workers: list[WorkerInfo]
    presence: WorkerPresence


def _listing(svc) -> dict:
    return {"workers": svc.workers.listing(), "presence": svc.workers.presence()}


@operation("listWorkers", "verification", "Verification workers: present, busy, last seen",
           WorkerList)
async def list_workers(request: Request) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(_listing, service(request)))
