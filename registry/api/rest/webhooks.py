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
are described in ``registry.services.events``; the OpenAPI description of these
operations is ``webhook_paths`` in ``registry.api.rest.openapi``.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry.api.oci.base import service
from registry.api.rest.manifests import json_body
from registry.errors import PaginationInvalid, RequestInvalid
from registry.services.events import MAX_PAGE

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

