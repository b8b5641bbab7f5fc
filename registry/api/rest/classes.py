"""``/api/v1/classes[/<name>]``: hardware classes, named selectors over workers.

    GET    /api/v1/classes         {"classes": [...]}
    GET    /api/v1/classes/<name>  one class
    PUT    /api/v1/classes/<name>  {"selector": {"accelerator": "cuda", ...}}
    DELETE /api/v1/classes/<name>

Reading is for signed-in users (profiles name classes); changing them is for site admins.
See ``registry.services.classes`` and ``registry.capabilities`` (the selector keys).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import service
from registry.api.rest.common import operation, read_body
from registry.api.rest.schemas import Answer, Body, path_param
from registry.capabilities import SELECTOR_KEYS

CLASS_PARAM = path_param("class_name", {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
                         "The class's name.", "cuda")
SELECTOR_HELP = "Every key must hold: " + "; ".join(
    f"{key}: {what}" for key, what in SELECTOR_KEYS.items()) + ". {} selects every worker."


class HardwareClass(Answer):
    name: str
    selector: dict[str, Any] = Field(description=SELECTOR_HELP)
    created_at: datetime
    updated_at: datetime


class ClassRequest(Body):
    selector: dict[str, Any] = Field(description=SELECTOR_HELP)


class ClassList(Answer):
    classes: list[HardwareClass]


class ClassDeleted(Answer):
    deleted: str


@operation("listClasses", "verification", "Hardware classes", ClassList)
async def list_classes(request: Request) -> JSONResponse:
    found = await run_in_threadpool(service(request).classes.list)
    return JSONResponse({"classes": [c.to_json() for c in found]})


@operation("getClass", "verification", "One hardware class", HardwareClass,
           params={"class_name": CLASS_PARAM}, problems=(404,))
async def get_class(request: Request) -> JSONResponse:
    found = await run_in_threadpool(service(request).classes.get, request.path_params["class_name"])
    return JSONResponse(found.to_json())


@operation("putClass", "verification", "Define or change a hardware class", HardwareClass,
           body=ClassRequest, params={"class_name": CLASS_PARAM}, problems=(400,))
async def put_class(request: Request) -> JSONResponse:
    body = await read_body(request, ClassRequest)
    found = await run_in_threadpool(service(request).classes.set,
                                    request.path_params["class_name"], body.selector)
    return JSONResponse(found.to_json())


@operation("deleteClass", "verification", "Remove a hardware class", ClassDeleted,
           params={"class_name": CLASS_PARAM}, problems=(404,))
async def delete_class(request: Request) -> JSONResponse:
    name = request.path_params["class_name"]
    await run_in_threadpool(service(request).classes.delete, name)
    return JSONResponse({"deleted": name})
