"""``/api/v1/policies[/<namespace>]``: the readiness gate and speed floor per namespace.

    GET    /api/v1/policies               {"policies": [...], "default": {...}}
    GET    /api/v1/policies/<namespace>   the policy that applies to that name
    PUT    /api/v1/policies/<namespace>   {"gate": true|false, "min_generation_tps": x|null}
    DELETE /api/v1/policies/<namespace>   back to the default

A namespace applies to the repository of that name and every repository under it
(``team`` covers ``team/gemma3``); the longest match wins; ``_`` stands for "" (all).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import service
from registry.api.rest.common import namespace_param, operation, read_body
from registry.api.rest.schemas import NAMESPACE_PARAM, Answer, Body
from registry.errors import NotFound
from registry.services.verification import Policy as StoredPolicy


class Policy(Answer):
    namespace: str | None = Field(description="null: the defaults.")
    gate: bool
    min_generation_tps: float | None


class PolicyRequest(Body):
    gate: bool = True
    min_generation_tps: Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=0)] | None = None


class PolicyList(Answer):
    policies: list[Policy]
    default: Policy


class PolicyDeleted(Answer):
    deleted: str


@operation("listPolicies", "policies", "Readiness-gate policies per namespace and the defaults",
           PolicyList)
async def list_policies(request: Request) -> JSONResponse:
    svc = service(request).verification
    policies = await run_in_threadpool(svc.policies)
    default = StoredPolicy(None, svc.settings.gate, svc.settings.min_generation_tps)
    return JSONResponse({"policies": [p.to_json() for p in policies],
                         "default": default.to_json()})


@operation("getPolicy", "policies", "The policy that applies to a name", Policy,
           params={"namespace": NAMESPACE_PARAM}, problems=(400, 404))
async def get_policy(request: Request) -> JSONResponse:
    policy = await run_in_threadpool(service(request).verification.policy, namespace_param(request))
    return JSONResponse(policy.to_json())


@operation("putPolicy", "policies", "Set a namespace's policy", Policy,
           body=PolicyRequest, body_required=False, params={"namespace": NAMESPACE_PARAM},
           problems=(400, 404))
async def put_policy(request: Request) -> JSONResponse:
    body = await read_body(request, PolicyRequest)
    policy = await run_in_threadpool(service(request).verification.set_policy,
                                     namespace_param(request), body.gate, body.min_generation_tps)
    return JSONResponse(policy.to_json())


@operation("deletePolicy", "policies", "Back to the default", PolicyDeleted,
           params={"namespace": NAMESPACE_PARAM}, problems=(404,))
async def delete_policy(request: Request) -> JSONResponse:
    ns = namespace_param(request)
    if not await run_in_threadpool(service(request).verification.delete_policy, ns):
        raise NotFound(f"no policy for namespace {ns!r}")
    return JSONResponse({"deleted": ns})
