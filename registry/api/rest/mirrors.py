"""``/api/v1/mirrors[/<namespace>]``: namespaces that mirror an upstream registry.

    GET    /api/v1/mirrors              {"mirrors": [...]}
    GET    /api/v1/mirrors/<namespace>  one mirror
    PUT    /api/v1/mirrors/<namespace>  {"kind": "ollama"|"oci"|"hf", "url", "username",
                                         "password", "refresh_seconds", "verify_first",
                                         "keep_days"}
    DELETE /api/v1/mirrors/<namespace>  stop mirroring (what was cached stays)

Site admins only: a mirror makes the registry connect to an upstream and holds its
credentials. The password is stored sealed and never returned (``password_set`` says
whether one is). See ``registry.services.mirrors``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import service
from registry.api.rest.common import operation, read_body
from registry.api.rest.schemas import Answer, Body, path_param
from registry.services.mirrors import DEFAULT_REFRESH, KINDS

MIRROR_PARAM = path_param("namespace", {"type": "string", "maxLength": 255},
                          "The mirror namespace (one name segment).", "mirror")


class Mirror(Answer):
    namespace: str
    kind: Literal[KINDS]
    url: str = Field(description="The upstream; its path is the upstream's name prefix.")
    username: str | None
    password_set: bool = Field(description="Whether a password or token is stored.")
    refresh_seconds: int = Field(description="A tag is re-checked upstream after this long.")
    verify_first: bool = Field(description="true: a first pull waits until the model is "
                                           "verified; false: served at once, then verified.")
    keep_days: int | None = Field(description="Retention: tags not pulled for this many days "
                                              "are removed (null: kept).")
    created_at: datetime
    updated_at: datetime


class MirrorRequest(Body):
    kind: Literal[KINDS]
    url: str = Field("", max_length=2048, description="Default for kind ollama: "
                                                      "https://registry.ollama.ai.")
    username: Annotated[str, Field(max_length=255)] | None = None
    password: Annotated[str, Field(max_length=4096)] | None = Field(
        None, description="Omitted: the stored one is kept (same username); \"\": removed.")
    refresh_seconds: Annotated[int, Field(ge=0, le=366 * 86400)] = DEFAULT_REFRESH
    verify_first: bool = False
    keep_days: Annotated[int, Field(ge=1, le=36500)] | None = None


class MirrorList(Answer):
    mirrors: list[Mirror]


class MirrorDeleted(Answer):
    deleted: str


def _namespace(request: Request) -> str:
    return request.path_params["namespace"]


@operation("listMirrors", "mirrors", "Mirror namespaces and their upstreams", MirrorList)
async def list_mirrors(request: Request) -> JSONResponse:
    found = await run_in_threadpool(service(request).mirrors.list)
    return JSONResponse({"mirrors": [m.to_json() for m in found]})


@operation("getMirror", "mirrors", "One mirror namespace", Mirror,
           params={"namespace": MIRROR_PARAM}, problems=(404,))
async def get_mirror(request: Request) -> JSONResponse:
    m = await run_in_threadpool(service(request).mirrors.get, _namespace(request))
    return JSONResponse(m.to_json())


@operation("putMirror", "mirrors", "Make a namespace a mirror of an upstream (or change it)",
           Mirror, body=MirrorRequest, params={"namespace": MIRROR_PARAM}, problems=(400,))
async def put_mirror(request: Request) -> JSONResponse:
    body = await read_body(request, MirrorRequest)
    m = await run_in_threadpool(lambda: service(request).mirrors.set(
        _namespace(request), kind=body.kind, url=body.url, username=body.username,
        password=body.password, refresh_seconds=body.refresh_seconds,
        verify_first=body.verify_first, keep_days=body.keep_days))
    return JSONResponse(m.to_json())


@operation("deleteMirror", "mirrors", "Stop mirroring (cached content stays)", MirrorDeleted,
           params={"namespace": MIRROR_PARAM}, problems=(404,))
async def delete_mirror(request: Request) -> JSONResponse:
    ns = _namespace(request)
    await run_in_threadpool(service(request).mirrors.delete, ns)
    return JSONResponse({"deleted": ns.strip("/")})
