"""``assay webhook add|ls|show|rm|deliveries|redeliver``: outgoing webhooks of an assay
registry.

Each speaks assay's REST API (``/api/v1/webhooks``); failures are one ``error:`` line
(``errors.reported``). REGISTRY is ``HOST[:PORT]`` (loopback over plain HTTP).
"""

from __future__ import annotations

import json
import secrets

import click

from client.account import SHOWN_ONCE, print_secret
from client.errors import reported
from client.registry_client import RegistryClient
from client.rest import JSON, registry_of, response_json
from client.show import render_table


def _events(hook: dict) -> str:
    return ",".join(hook.get("events") or []) or "all"


def run_add(url: str, location: str, secret: str | None, events: tuple[str, ...],
            repository: str | None, insecure: bool, as_json: bool) -> None:
    with reported():
        registry = registry_of(location, insecure, " (use --repository for a filter)")
        generated = secret is None
        secret = secret or secrets.token_hex(32)
        doc = {"url": url, "secret": secret, "events": list(events)}
        if repository:
            doc["repository"] = repository
        body = json.dumps(doc).encode()
        with RegistryClient(registry) as client:
            resp = client.request("POST", "/api/v1/webhooks", what=f"add webhook {url}",
                                  ok=(201,), content=lambda: body,
                                  headers={**JSON, "Content-Type": "application/json"})
            hook = response_json(resp, "add webhook")
        if as_json:
            click.echo(json.dumps(hook | ({"secret": secret} if generated else {}), indent=2))
            if generated:
                click.echo(f"the generated secret is in the JSON; {SHOWN_ONCE}", err=True)
            return
        scope = f", repositories {hook.get('repository')}" if hook.get("repository") else ""
        summary = f"webhook {hook['id']}: {hook['url']} (events: {_events(hook)}{scope})"
        if generated:  # the secret alone on stdout, for $(...)
            click.echo(summary, err=True)
            print_secret(secret, "the secret of its X-Assay-Signature")
        else:
            click.echo(summary)


def _listing(location: str, insecure: bool, path: str, what: str, key: str, as_json: bool,
             empty: str, params: dict | None = None) -> list[dict]:
    """The ``key`` list of ``GET path``; printed as JSON with ``as_json``, or ``empty``
    (``{host}`` filled in) on stderr when there is none. Returns what is left to render
    as a table: nothing in those two cases."""
    registry = registry_of(location, insecure, " (use --repository for a filter)")
    with RegistryClient(registry) as client:
        resp = client.request("GET", path, what=what, headers=JSON, params=params)
        items = response_json(resp, what).get(key, [])
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return []
    if not items:
        click.echo(empty.format(host=registry.host), err=True)
    return items


def run_ls(location: str, insecure: bool, as_json: bool) -> None:
    with reported():
        hooks = _listing(location, insecure, "/api/v1/webhooks", "list webhooks", "webhooks",
                         as_json, "{host}: no webhooks")
        if not hooks:
            return
        rows = []
        for h in hooks:
            d = h.get("deliveries") or {}
            rows.append([str(h["id"]), h["url"], _events(h), h.get("repository") or "*",
                         f"{d.get('delivered', 0)}/{d.get('pending', 0)}/{d.get('dead', 0)}"])
        click.echo(render_table(["ID", "URL", "EVENTS", "REPOSITORY",
                                 "DELIVERED/PENDING/DEAD"], rows))


def run_show(webhook_id: int, location: str, insecure: bool, as_json: bool) -> None:
    with reported():
        registry = registry_of(location, insecure)
        with RegistryClient(registry) as client:
            resp = client.request("GET", f"/api/v1/webhooks/{webhook_id}",
                                  what=f"webhook {webhook_id}", headers=JSON)
            hook = response_json(resp, f"webhook {webhook_id}")
        if as_json:
            click.echo(json.dumps(hook, indent=2))
            return
        d = hook.get("deliveries") or {}
        rows = [("url", hook.get("url")), ("events", _events(hook)),
                ("repository", hook.get("repository") or "*"),
                ("created", (hook.get("created_at") or "-")[:19]),
                ("deliveries", f"{d.get('delivered', 0)} delivered, {d.get('pending', 0)} "
                               f"pending, {d.get('dead', 0)} dead")]
        click.echo(f"webhook {hook['id']}")
        for label, value in rows:
            click.echo(f"  {label:<11}{value}")


def run_rm(webhook_id: int, location: str, insecure: bool) -> None:
    with reported():
        registry = registry_of(location, insecure, " (use --repository for a filter)")
        with RegistryClient(registry) as client:
            client.request("DELETE", f"/api/v1/webhooks/{webhook_id}",
                           what=f"remove webhook {webhook_id}", headers=JSON)
        click.echo(f"removed webhook {webhook_id}")


def run_deliveries(webhook_id: int, location: str, limit: int, insecure: bool,
                   as_json: bool) -> None:
    with reported():
        rows = _listing(location, insecure, f"/api/v1/webhooks/{webhook_id}/deliveries",
                        f"deliveries of webhook {webhook_id}", "deliveries", as_json,
                        f"webhook {webhook_id}: no deliveries", params={"n": limit})
        if not rows:
            return
        table = []
        for d in rows:
            t = d.get("target") or {}
            what = t.get("repository", "")
            if t.get("tag"):
                what += f":{t['tag']}"
            elif t.get("digest"):
                what += f"@{t['digest'][:19]}"
            table.append([str(d["id"]), d["action"], what, d["status"], str(d["attempts"]),
                          str(d.get("last_status_code") or "-"),
                          d.get("last_attempt_at") or "-", (d.get("last_error") or "")[:60]])
        click.echo(render_table(["ID", "ACTION", "TARGET", "STATUS", "ATTEMPTS", "CODE",
                                 "LAST ATTEMPT", "ERROR"], table))


def run_redeliver(webhook_id: int, delivery_id: int, location: str, insecure: bool) -> None:
    with reported():
        registry = registry_of(location, insecure, " (use --repository for a filter)")
        with RegistryClient(registry) as client:
            client.request("POST",
                           f"/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
                           what=f"redeliver {delivery_id}", ok=(202,), headers=JSON)
        click.echo(f"queued delivery {delivery_id} of webhook {webhook_id} again")
