"""Webhooks, workers and the audit log in the browser (site admin, as over REST).

    GET  /-/admin/webhooks                                   subscriptions; subscribe one
    POST /-/admin/webhooks                                   POST /api/v1/webhooks
    GET  /-/admin/webhooks/<id>?last=<delivery id>           one, with its delivery log
    POST /-/admin/webhooks/<id>/delete                       DELETE /api/v1/webhooks/<id>
    GET  /-/admin/webhooks/<id>/deliveries/<d>               one delivery and the body sent
    POST /-/admin/webhooks/<id>/deliveries/<d>/redeliver     send it again
    GET  /-/admin/workers                                    GET /api/v1/workers
    GET  /-/admin/audit?actor=&action=&n=&before=            GET /api/v1/audit

Mirror namespaces have their page in ``registry.web.admin_mirrors``. Hardware classes
are not part of this registry yet: there is no page for them.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry.api.oci.base import service
from registry.api.rest.accounts import audit_query
from registry.api.rest.webhooks import delivery_paging
from registry.services.events import ACTIONS, MAX_PAGE
from registry.web import session
from registry.web.admin import attempt, back, call, field, fields, show

WEBHOOKS = "/-/admin/webhooks"


def _hook_path(webhook_id: int) -> str:
    return f"{WEBHOOKS}/{webhook_id}"


# ---- webhooks ------------------------------------------------------------------------------

async def webhooks_page(request: Request, *, error: str | None = None, status: int = 200,
                        values: dict | None = None) -> Response:
    hooks = await call(service(request).events.subscriptions)
    return show(request, "admin_webhooks.html", status=status, error=error,
                values=values or {}, webhooks=hooks, actions=ACTIONS)


async def create_webhook(request: Request) -> Response:
    """POST /api/v1/webhooks {"url", "secret", "events", "repository"}: no event ticked
    means every event, as there."""
    data = await session.form(request)
    url, secret, glob = field(data, "url"), data.get("secret"), field(data, "repository")
    events = fields(data, "events")
    events_ = service(request).events
    hook, failed = await attempt(
        request, lambda: events_.create(url, secret if isinstance(secret, str) else "",
                                        events or None, glob or None),
        webhooks_page, values={"url": url, "repository": glob, "events": events})
    if failed:
        return failed
    return back(_hook_path(hook["id"]), f"Subscribed {url} as webhook {hook['id']}.")


async def webhook_page(request: Request) -> Response:
    """GET /api/v1/webhooks/<id> and a page of its deliveries, newest first."""
    wid = request.path_params["id"]
    n, last = delivery_paging(request)
    events = service(request).events
    hook = await call(events.get, wid)
    rows = await call(events.delivery_log, wid, n, last)
    more = rows[-1]["id"] if n and len(rows) == n else None
    return show(request, "admin_webhook.html", hook=hook, deliveries=rows, next_last=more,
                page_size=MAX_PAGE)


async def delete_webhook(request: Request) -> Response:
    await session.form(request)
    wid = request.path_params["id"]
    await call(service(request).events.delete, wid)  # unknown: the 404 page
    return back(WEBHOOKS, f"Webhook {wid} deleted, with its delivery log.")


async def delivery_page(request: Request) -> Response:
    wid, did = request.path_params["id"], request.path_params["delivery_id"]
    row = await call(service(request).events.delivery, wid, did)
    return show(request, "admin_delivery.html", delivery=row)


async def redeliver(request: Request) -> Response:
    await session.form(request)
    wid, did = request.path_params["id"], request.path_params["delivery_id"]
    await call(service(request).events.redeliver, wid, did)
    return back(_hook_path(wid), f"Delivery {did} queued to be sent again.")


# ---- workers and the audit log -----------------------------------------------------------

async def workers_page(request: Request) -> Response:
    workers = service(request).workers
    listing, presence = await call(workers.listing), await call(workers.presence)
    return show(request, "admin_workers.html", workers=listing, presence=presence)


async def audit_page(request: Request) -> Response:
    """The audit log, newest first, filtered and paged as ``GET /api/v1/audit`` is."""
    query = audit_query(request.query_params)
    entries = await call(service(request).audit.entries, **query)
    more = entries[-1]["id"] if len(entries) == query["limit"] else None
    return show(request, "admin_audit.html", entries=entries, next_before=more,
                actor=query["actor"] or "", action=query["action"] or "",
                n=query["limit"])
