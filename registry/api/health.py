"""``GET /healthz`` (liveness) and ``GET /readyz`` (readiness), for load balancers and
orchestrators (compose health checks, Kubernetes probes).

- ``/healthz``: the process answers; no I/O, so a slow database never gets a live
  replica restarted. 200 ``{"status": "ok"}``.
- ``/readyz``: the database answers ``SELECT 1`` (``Database.ping``) and the blob store
  is reachable (``BlobStore.ping``), checked concurrently, each within ``CHECK_TIMEOUT``
  seconds.
  200 ``{"status": "ready", "checks": {"database": "ok", "storage": "ok"}}``; otherwise
  503 with ``"status": "unavailable"`` and each failing check's one-line reason in
  ``checks``, so a replica that lost its database stops getting traffic.

Both are public (``guard(PUBLIC)``): probes carry no credentials, and the answers say
nothing beyond "up" or which dependency is down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.guard import PUBLIC, guard

log = logging.getLogger("assay.health")

CHECK_TIMEOUT = 5.0
_NO_STORE = {"Cache-Control": "no-store"}


def _reason(exc: BaseException) -> str:
    """One line: the error's first line, without SQLAlchemy's trailing background link."""
    first = (str(exc).strip().splitlines() or [""])[0].strip()
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _database(request: Request) -> Callable[[], None]:
    return request.app.state.registry.db.ping


def _storage(request: Request) -> Callable[[], None]:
    return request.app.state.registry.store.ping


@guard(PUBLIC)
async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers=_NO_STORE)


@guard(PUBLIC)
async def readyz(request: Request) -> JSONResponse:
    checks: dict[str, str] = {}

    async def run(name: str, check: Callable[[], None]) -> None:
        try:
            with anyio.fail_after(CHECK_TIMEOUT):
                # abandon_on_cancel: a hung connect must not hold the probe past its deadline.
                await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
        except TimeoutError:
            checks[name] = f"no answer within {CHECK_TIMEOUT:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            checks[name] = _reason(exc)
        else:
            checks[name] = "ok"

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "database", _database(request))
        tg.start_soon(run, "storage", _storage(request))
    checks = {name: checks[name] for name in ("database", "storage")}
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks}, headers=_NO_STORE)
    log.warning("not ready: %s", "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"))
    return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503,
                        headers=_NO_STORE)
