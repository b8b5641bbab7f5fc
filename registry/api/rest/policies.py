"""``/api/v1/policies[/<namespace>]``: the readiness gate and speed floor per namespace.

    GET    /api/v1/policies               {"policies": [...], "default": {...}}
    GET    /api/v1/policies/<namespace>   the policy that applies to that name
    PUT    /api/v1/policies/<namespace>   {"gate": true|false, "min_generation_tps": x|null}
    DELETE /api/v1/policies/<namespace>   back to the default

A namespace applies to the repository of that name and every repository under it
(``team`` covers ``team/gemma3``); the longest match wins; ``_`` stands for "" (all).
"""

from __future__ import annotations

import math

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import service
from registry.api.rest.manifests import json_body
from registry.digests import check_name
from registry.errors import NotFound, RequestInvalid
from registry.services.verification import Policy


def _namespace(request: Request) -> str:
    ns = request.path_params["namespace"].strip("/")
    if ns == "_":
        return ""
    return check_name(ns) if ns else ns  # 400 NAME_INVALID, never a database error


async def list_policies(request: Request) -> JSONResponse:
    svc = service(request).verification
    policies = await run_in_threadpool(svc.policies)
    default = Policy(None, svc.settings.gate, svc.settings.min_generation_tps)
    return JSONResponse({"policies": [p.to_json() for p in policies],
                         "default": default.to_json()})


async def get_policy(request: Request) -> JSONResponse:
    policy = await run_in_threadpool(service(request).verification.policy, _namespace(request))
    return JSONResponse(policy.to_json())


async def put_policy(request: Request) -> JSONResponse:
    body = await json_body(request)
    gate = body.get("gate", True)
    floor = body.get("min_generation_tps")
    if not isinstance(gate, bool):
        raise RequestInvalid('"gate" must be true or false')
    if floor is not None and (isinstance(floor, bool) or not isinstance(floor, int | float)
                              or not math.isfinite(floor) or floor < 0):
        raise RequestInvalid('"min_generation_tps" must be a finite number >= 0, or null')
    policy = await run_in_threadpool(service(request).verification.set_policy,
                                     _namespace(request), gate, floor)
    return JSONResponse(policy.to_json())


async def delete_policy(request: Request) -> JSONResponse:
    ns = _namespace(request)
    if not await run_in_threadpool(service(request).verification.delete_policy, ns):
        raise NotFound(f"no policy for namespace {ns!r}")
    return JSONResponse({"deleted": ns})
