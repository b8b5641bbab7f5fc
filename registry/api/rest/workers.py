"""``GET /api/v1/workers``: the verification worker processes this registry knows of.

The answer is ``WorkerList``: every worker seen in the last week, newest sighting first,
each ``busy`` or ``idle`` (present), ``stopped`` (cleanly) or ``lost`` (not seen within
the job lease: killed, or its machine gone), and ``presence``: how many are present now.
See ``registry.services.workers``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import service
from registry.api.rest.common import operation
from registry.api.rest.schemas import Answer, WorkerPresence


class WorkerInfo(Answer):
    id: str = Field(description="The id it claims jobs under (worker@host:pid:random).")
    hostname: str
    pid: int
    state: Literal["busy", "idle", "stopped", "lost"]
    job: int | None = Field(description="The job it is running.")
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
