"""``/api/v1/profiles[/<namespace>]``: the verification profile per namespace.

    GET    /api/v1/profiles               {"profiles": [...], "default": {...}}
    GET    /api/v1/profiles/<namespace>   the profile that applies to that name
    PUT    /api/v1/profiles/<namespace>   a profile document, JSON or YAML (registry.profiles)

A name the routes cannot match (a control character in it) is 404, as on every route.
    DELETE /api/v1/profiles/<namespace>   back to a shorter namespace's, or the default

Each answer carries the profile with every default spelled out and its ``sha256``, the
identity results record. As for the policies, a namespace applies to the repository of
that name and every repository under it, the longest match wins, and ``_`` is "" (all).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import read_limited, service
from registry.api.rest.common import json_body, namespace_param, operation
from registry.api.rest.schemas import NAMESPACE_PARAM, Answer
from registry.errors import BodyTooLarge
from registry.profiles import (
    MAX_PROFILE_BYTES,
    Profile,
    parse_profile,
    validate_profile,
)


def _too_large(_declared: int | None) -> BodyTooLarge:
    return BodyTooLarge(f"a profile may be at most {MAX_PROFILE_BYTES} bytes")


class NamespaceProfile(Answer):
    namespace: str | None = Field(description="null: the built-in default.")
    sha256: str = Field(description="sha256 of the profile's canonical JSON.")
    updated_at: str | None
    profile: dict[str, Any] = Field(description="The profile, every default spelled out.")


class ProfileList(Answer):
    profiles: list[NamespaceProfile]
    default: NamespaceProfile


class ProfileDeleted(Answer):
    deleted: str


@operation("listProfiles", "profiles", "Verification profiles per namespace and the default",
           ProfileList)
async def list_profiles(request: Request) -> JSONResponse:
    profiles = service(request).profiles
    listed = await run_in_threadpool(profiles.profiles)
    return JSONResponse({"profiles": [p.to_json() for p in listed],
                         "default": profiles.default().to_json()})


@operation("getProfile", "profiles", "The profile that applies to a name", NamespaceProfile,
           params={"namespace": NAMESPACE_PARAM}, problems=(400, 404))
async def get_profile(request: Request) -> JSONResponse:
    applied = await run_in_threadpool(service(request).profiles.applies,
                                      namespace_param(request))
    return JSONResponse(applied.to_json())


@operation("putProfile", "profiles", "Set a namespace's profile (JSON or YAML)", NamespaceProfile,
           body=Profile, body_required=False, params={"namespace": NAMESPACE_PARAM},
           problems=(400, 404))
async def put_profile(request: Request) -> JSONResponse:
    namespace = namespace_param(request)
    # A JSON body is read as every JSON body is (registry.jsontext's limits and messages);
    # anything else as YAML: `assay profile set` sends a YAML file as it is, so an error
    # names the field as its author wrote it.
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        profile = validate_profile(await json_body(request))
    else:
        profile = parse_profile(await read_limited(request, MAX_PROFILE_BYTES, _too_large))
    applied = await run_in_threadpool(service(request).profiles.set, namespace, profile)
    return JSONResponse(applied.to_json())


@operation("deleteProfile", "profiles", "Back to a shorter namespace's profile or the default",
           ProfileDeleted, params={"namespace": NAMESPACE_PARAM}, problems=(400, 404))
async def delete_profile(request: Request) -> JSONResponse:
    namespace = namespace_param(request)
    await run_in_threadpool(service(request).profiles.delete, namespace)
    return JSONResponse({"deleted": namespace})
