"""``/api/v1/webhooks``: outgoing webhook subscriptions and their delivery log.

    POST   /api/v1/webhooks                 {"url", "secret", "events": [...]?, "repository": glob?}
                                            -> 201, the subscription (secret masked)
    GET    /api/v1/webhooks                 {"webhooks": [...]}
    GET    /api/v1/webhooks/<id>            one subscription, with counts of its deliveries
    DELETE /api/v1/webhooks/<id>            unsubscribe (its delivery log goes with it)
    GET    /api/v1/webhooks/<id>/deliveries?n=<max>&last=<delivery id>
                                            {"deliveries": [...]}, newest first; a full
                                            page carries ``Link: <...>; rel="next"``
    GET    /api/v1/webhooks/<id>/deliveries/<delivery id>      one, with the body sent
    POST   /api/v1/webhooks/<id>/deliveries/<delivery id>/redeliver   -> 202, sent again

``events`` lists actions (``push``, ``delete``, ``tag``, ``verification.started``,
``verification.succeeded``, ``verification.failed``); absent or ``[]`` means all of them.
``repository`` is an fnmatch glob over repository names. The envelope and the signature
are described in ``registry.services.events``.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import service
from registry.api.rest.manifests import json_body
from registry.errors import PaginationInvalid, RequestInvalid
from registry.services.events import (
    ACTIONS,
    DEAD,
    DELIVERED,
    MAX_PAGE,
    MAX_PATTERN,
    MAX_SECRET,
    MAX_URL,
    PENDING,
)

_FIELDS = {"url", "secret", "events", "repository"}


def _id(request: Request, key: str = "id") -> int:
    return int(request.path_params[key])


async def create(request: Request) -> JSONResponse:
    body = await json_body(request)
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise RequestInvalid(f"unknown field(s) {', '.join(map(repr, unknown))}; a webhook "
                             f"has {', '.join(sorted(_FIELDS))}")
    hook = await run_in_threadpool(service(request).events.create, body.get("url"),
                                   body.get("secret"), body.get("events"),
                                   body.get("repository"))
    return JSONResponse(hook, status_code=201,
                        headers={"Location": f"/api/v1/webhooks/{hook['id']}"})


async def list_webhooks(request: Request) -> JSONResponse:
    hooks = await run_in_threadpool(service(request).events.subscriptions)
    return JSONResponse({"webhooks": hooks})


async def get_webhook(request: Request) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(service(request).events.get, _id(request)))


async def delete_webhook(request: Request) -> JSONResponse:
    wid = _id(request)
    await run_in_threadpool(service(request).events.delete, wid)
    return JSONResponse({"deleted": wid})


def _page(request: Request) -> tuple[int, int | None]:
    n, last = request.query_params.get("n"), request.query_params.get("last")
    if n is not None and not (n.isascii() and n.isdigit()):
        raise PaginationInvalid(f"n must be a non-negative integer, not {n!r}")
    if last is not None and not (last.isascii() and last.isdigit()):
        raise PaginationInvalid(f"last must be a delivery id, not {last!r}")
    return (MAX_PAGE if n is None else min(int(n), MAX_PAGE),
            None if last is None else int(last))


async def deliveries(request: Request) -> JSONResponse:
    wid = _id(request)
    n, last = _page(request)
    rows = await run_in_threadpool(service(request).events.delivery_log, wid, n, last)
    headers = {}
    if n and len(rows) == n:
        headers["Link"] = (f'</api/v1/webhooks/{wid}/deliveries?n={n}&last={rows[-1]["id"]}>; '
                           'rel="next"')
    return JSONResponse({"deliveries": rows}, headers=headers)


async def delivery(request: Request) -> JSONResponse:
    row = await run_in_threadpool(service(request).events.delivery, _id(request),
                                  _id(request, "delivery_id"))
    return JSONResponse(row)


async def redeliver(request: Request) -> JSONResponse:
    row = await run_in_threadpool(service(request).events.redeliver, _id(request),
                                  _id(request, "delivery_id"))
    return JSONResponse(row, status_code=202)


# ---- OpenAPI (registry.api.rest.openapi merges this section) ------------------------------

def openapi_paths() -> dict:
    """This module's operations for ``/api/v1/openapi.json``; self-contained apart from the
    shared ``Problem<status>`` responses."""
    time = {"type": "string", "format": "date-time"}

    def maybe(schema: dict) -> dict:
        return {"anyOf": [schema, {"type": "null"}]}

    action = {"type": "string", "enum": list(ACTIONS)}
    webhook = {
        "type": "object",
        "required": ["id", "url", "events", "repository", "active", "secret", "created_at",
                     "deliveries"],
        "properties": {
            "id": {"type": "integer"}, "url": {"type": "string"},
            "events": {"type": "array", "items": action,
                       "description": "Actions sent; empty: every action."},
            "repository": maybe({"type": "string", "description": "fnmatch glob"}),
            "active": {"type": "boolean"},
            "secret": {"type": "string", "description": "Masked: never the secret."},
            "created_at": time,
            "deliveries": {"type": "object", "required": [PENDING, DELIVERED, DEAD],
                           "properties": {s: {"type": "integer"}
                                          for s in (PENDING, DELIVERED, DEAD)}},
        },
    }
    delivery_props = {
        "id": {"type": "integer"}, "webhook": {"type": "integer"},
        "event_id": {"type": "string"}, "action": action,
        "status": {"type": "string", "enum": [PENDING, DELIVERED, DEAD]},
        "attempts": {"type": "integer"},
        "last_status_code": maybe({"type": "integer"}),
        "last_error": maybe({"type": "string"}),
        "last_attempt_at": maybe(time), "delivered_at": maybe(time), "created_at": time,
        "target": maybe({"type": "object", "properties": {
            "repository": {"type": "string"}, "digest": {"type": "string"},
            "tag": {"type": "string"}}}),
    }
    delivery = {"type": "object", "required": list(delivery_props),
                "properties": delivery_props}
    create_body = {
        "type": "object", "required": ["url", "secret"], "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "pattern": r"^https?://[^\s/?#]+", "maxLength": MAX_URL,
                    "description": "An http:// or https:// URL with a host."},
            "secret": {"type": "string", "minLength": 1, "maxLength": MAX_SECRET,
                       "pattern": r"^[^\x00-\x1f\x7f]+$",
                       "description": "Key of the X-Assay-Signature HMAC-SHA256."},
            "events": maybe({"type": "array", "items": action,
                             "description": "Actions to send; absent, null or []: all."}),
            "repository": maybe({"type": "string", "maxLength": MAX_PATTERN,
                                 "description": "fnmatch glob over repository names"}),
        },
    }

    def problems(*statuses: int) -> dict:
        return {str(s): {"$ref": f"#/components/responses/Problem{s}"} for s in statuses}

    def ok(schema: dict, status: int = 200, description: str = "OK", **extra) -> dict:
        return {str(status): {"description": description,
                              "content": {"application/json": {"schema": schema}}, **extra}}

    def path_id(name: str, description: str) -> dict:
        return {"name": name, "in": "path", "required": True, "description": description,
                "schema": {"type": "integer", "minimum": 1}, "example": 1}

    hook_id = path_id("id", "A webhook id.")
    delivery_id = path_id("delivery_id", "A delivery id (of that webhook).")
    by_id = {"id": "$response.body#/id"}
    tags = ["webhooks"]
    base = "/api/v1/webhooks"
    return {
        base: {
            "post": {"operationId": "createWebhook", "tags": tags,
                     "summary": "Subscribe a URL to signed events",
                     "requestBody": {"required": True, "content": {
                         "application/json": {"schema": create_body}}},
                     "responses": {**ok(webhook, 201, "Subscribed", links={
                         "GetWebhook": {"operationId": "getWebhook", "parameters": by_id},
                         "ListDeliveries": {"operationId": "listDeliveries",
                                            "parameters": by_id},
                         "DeleteWebhook": {"operationId": "deleteWebhook",
                                           "parameters": by_id}}),
                         **problems(400)}},
            "get": {"operationId": "listWebhooks", "tags": tags,
                    "summary": "Every subscription (secrets masked)",
                    "responses": ok({"type": "object", "required": ["webhooks"],
                                     "properties": {"webhooks": {"type": "array",
                                                                 "items": webhook}}})},
        },
        base + "/{id}": {
            "get": {"operationId": "getWebhook", "tags": tags, "summary": "One subscription",
                    "parameters": [hook_id],
                    "responses": {**ok(webhook), **problems(404)}},
            "delete": {"operationId": "deleteWebhook", "tags": tags,
                       "summary": "Unsubscribe (the delivery log goes with it)",
                       "parameters": [hook_id],
                       "responses": {**ok({"type": "object", "required": ["deleted"],
                                           "properties": {"deleted": {"type": "integer"}}}),
                                     **problems(404)}},
        },
        base + "/{id}/deliveries": {"get": {
            "operationId": "listDeliveries", "tags": tags,
            "summary": "The delivery log, newest first",
            "parameters": [hook_id,
                           {"name": "n", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 0},
                            "description": f"Page size (at most {MAX_PAGE})."},
                           {"name": "last", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 0},
                            "description": "Only deliveries older than this id."}],
            "responses": {**ok({"type": "object", "required": ["deliveries"],
                                "properties": {"deliveries": {"type": "array",
                                                              "items": delivery}}},
                               headers={"Link": {"description": "The next page, when this "
                                                                "one is full.",
                                                 "schema": {"type": "string"}}}),
                          **problems(400, 404)},
        }},
        base + "/{id}/deliveries/{delivery_id}": {"get": {
            "operationId": "getDelivery", "tags": tags,
            "summary": "One delivery, with the exact body sent",
            "parameters": [hook_id, delivery_id],
            "responses": {**ok({**delivery, "required": [*delivery["required"], "body"],
                                "properties": {**delivery_props,
                                               "body": {"type": "string"}}}),
                          **problems(404)},
        }},
        base + "/{id}/deliveries/{delivery_id}/redeliver": {"post": {
            "operationId": "redeliver", "tags": tags,
            "summary": "Send a delivery again (pending, with a new job)",
            "parameters": [hook_id, delivery_id],
            "responses": {**ok({**delivery, "required": [*delivery["required"], "job"],
                                "properties": {**delivery_props,
                                               "job": {"type": "integer"}}}, 202, "Queued"),
                          **problems(404)},
        }},
    }
