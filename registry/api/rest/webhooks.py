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
``verification.succeeded``, ``verification.failed``, ``verification.regressed``); absent or
``[]`` means all of them.
``repository`` is an fnmatch glob over repository names. The envelope and the signature
are described in ``registry.services.events``, which also checks the values (URL,
secret, glob); the body's shape is ``WebhookRequest``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import service
from registry.api.rest.common import operation, path_id, read_body
from registry.api.rest.schemas import Answer, Body, absent, integer_id, query_param
from registry.errors import PaginationInvalid
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

Action = Literal[ACTIONS]
WEBHOOK_ID = integer_id("id", "Subscription id.")
DELIVERY_ID = integer_id("delivery_id", "Delivery id.")


class WebhookRequest(Body):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Where events are POSTed (http:// or https://).",
                     json_schema_extra={"maxLength": MAX_URL, "pattern": "^https?://[^\\s/]+"})
    secret: str = Field(description="Key of the X-Assay-Signature HMAC-SHA256.",
                        json_schema_extra={"minLength": 1, "maxLength": MAX_SECRET})
    events: list[Action] | None = Field(
        None, description="Actions to send; absent, null or [] means all.")
    repository: str | None = Field(None, description="fnmatch glob over repository names.",
                                   json_schema_extra={"maxLength": MAX_PATTERN})


class Webhook(Answer):
    id: int
    url: str
    events: list[Action]
    repository: str | None
    active: bool
    secret: str = Field(description="Masked.")
    created_at: datetime | None
    deliveries: dict[str, int] = Field(description="Counts by delivery status.")


class WebhookList(Answer):
    webhooks: list[Webhook]


class WebhookDeleted(Answer):
    deleted: int


class Delivery(Answer):
    id: int
    webhook: int
    event_id: str
    action: str
    status: Literal[PENDING, DELIVERED, DEAD]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime | None
    target: dict[str, Any] | None
    body: str = absent("The exact JSON sent (one delivery).")
    job: int = absent("The delivery job (redeliver).")


class DeliveryList(Answer):
    deliveries: list[Delivery]


LOCATION = {"Location": {"description": "The subscription.", "schema": {"type": "string"}}}
LINK = {"Link": {"$ref": "#/components/headers/Link"}}
PAGE = {"n": query_param("n", {"type": "integer", "minimum": 0},
                         f"Page size (more than {MAX_PAGE} is taken as {MAX_PAGE})."),
        "last": query_param("last", {"type": "integer", "minimum": 0},
                            "Deliveries older than this id.")}


@operation("createWebhook", "webhooks", "Subscribe a URL to events (signed with the secret)",
           Webhook, status=201, answer_text="Subscribed", body=WebhookRequest,
           headers=LOCATION, problems=(400,))
async def create(request: Request) -> JSONResponse:
    body = await read_body(request, WebhookRequest)
    hook = await run_in_threadpool(service(request).events.create, body.url, body.secret,
                                   body.events, body.repository)
    return JSONResponse(hook, status_code=201,
                        headers={"Location": f"/api/v1/webhooks/{hook['id']}"})


@operation("listWebhooks", "webhooks", "Every subscription", WebhookList)
async def list_webhooks(request: Request) -> JSONResponse:
    hooks = await run_in_threadpool(service(request).events.subscriptions)
    return JSONResponse({"webhooks": hooks})


@operation("getWebhook", "webhooks", "One subscription, with delivery counts", Webhook,
           params={"id": WEBHOOK_ID}, problems=(404,))
async def get_webhook(request: Request) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(service(request).events.get, path_id(request)))


@operation("deleteWebhook", "webhooks", "Unsubscribe (its delivery log goes with it)",
           WebhookDeleted, params={"id": WEBHOOK_ID}, problems=(404,))
async def delete_webhook(request: Request) -> JSONResponse:
    wid = path_id(request)
    await run_in_threadpool(service(request).events.delete, wid)
    return JSONResponse({"deleted": wid})


def delivery_paging(request: Request) -> tuple[int, int | None]:
    """``n`` (at most MAX_PAGE) and ``last`` of a delivery log's page; PaginationInvalid."""
    n, last = request.query_params.get("n"), request.query_params.get("last")
    if n is not None and not (n.isascii() and n.isdigit()):
        raise PaginationInvalid(f"n must be a non-negative integer, not {n!r}")
    if last is not None and not (last.isascii() and last.isdigit()):
        raise PaginationInvalid(f"last must be a delivery id, not {last!r}")
    return (MAX_PAGE if n is None else min(int(n), MAX_PAGE),
            None if last is None else int(last))


@operation("listDeliveries", "webhooks", "The delivery log, newest first", DeliveryList,
           params={"id": WEBHOOK_ID, **PAGE}, headers=LINK, problems=(400, 404))
async def deliveries(request: Request) -> JSONResponse:
    wid = path_id(request)
    n, last = delivery_paging(request)
    rows = await run_in_threadpool(service(request).events.delivery_log, wid, n, last)
    headers = {}
    if n and len(rows) == n:
        headers["Link"] = (f'</api/v1/webhooks/{wid}/deliveries?n={n}&last={rows[-1]["id"]}>; '
                           'rel="next"')
    return JSONResponse({"deliveries": rows}, headers=headers)


@operation("getDelivery", "webhooks", "One delivery, with the body sent", Delivery,
           params={"id": WEBHOOK_ID, "delivery_id": DELIVERY_ID}, problems=(404,))
async def delivery(request: Request) -> JSONResponse:
    row = await run_in_threadpool(service(request).events.delivery, path_id(request),
                                  path_id(request, "delivery_id"))
    return JSONResponse(row)


@operation("redeliver", "webhooks", "Send a delivery again (same body and event id)",
           Delivery, status=202, answer_text="Queued",
           params={"id": WEBHOOK_ID, "delivery_id": DELIVERY_ID}, problems=(404,))
async def redeliver(request: Request) -> JSONResponse:
    row = await run_in_threadpool(service(request).events.redeliver, path_id(request),
                                  path_id(request, "delivery_id"))
    return JSONResponse(row, status_code=202)

