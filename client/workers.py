"""``assay workers``: the verification workers an assay registry knows of, with what each
is and can run, its labels, what it is running and when it was last seen
(``GET /api/v1/workers``, site admins only). Failures are one ``error:`` line."""

from __future__ import annotations

import json

import click

from client.errors import reported
from client.registry_client import RegistryClient
from client.rest import JSON, registry_of, response_json
from client.show import human_size, render_table


def _backends(caps: dict) -> str:
    parts = []
    for name, spec in sorted((caps.get("backends") or {}).items()):
        spec = spec if isinstance(spec, dict) else {}
        how = spec.get("build") or spec.get("device")
        parts.append(f"{name} {spec.get('version') or '?'}" + (f" ({how})" if how else ""))
    return ", ".join(parts) or "-"


def _accelerator(caps: dict) -> str:
    acc = caps.get("accelerator") if isinstance(caps.get("accelerator"), dict) else {}
    kind = acc.get("kind") or "none"
    if kind == "none":
        return "none"
    memory = acc.get("memory_bytes")
    size = f" {human_size(memory)}" if isinstance(memory, int) else ""
    return f"{kind}: {acc.get('name') or '?'}{size}"


def worker_row(w: dict) -> list[str]:
    caps = w.get("capabilities") or {}
    labels = ",".join(f"{k}={v}" for k, v in sorted((w.get("labels") or {}).items()))
    running = w.get("running") or {}
    doing = f"{running.get('kind')} {running.get('target') or ''}".strip() if running else ""
    cpu = f"{caps.get('cores') or '?'} cores"
    if isinstance(caps.get("memory_bytes"), int):
        cpu += f", {human_size(caps['memory_bytes'])}"
    return [w.get("id", ""), w.get("state", ""), f"{caps.get('os') or '?'}/"
            f"{caps.get('arch') or '?'}, {cpu}", _backends(caps), _accelerator(caps),
            labels, doing, w.get("last_seen_at") or ""]


def run_workers(location: str, insecure: bool, as_json: bool) -> None:
    with reported():
        registry = registry_of(location, insecure)
        with RegistryClient(registry) as client:
            resp = client.request("GET", "/api/v1/workers", what="list workers", headers=JSON)
            found = response_json(resp, "list workers")
        if as_json:
            click.echo(json.dumps(found, indent=2))
            return
        workers = found.get("workers", [])
        if not workers:
            click.echo(f"{registry.host}: no worker has been seen", err=True)
            return
        click.echo(render_table(["ID", "STATE", "MACHINE", "BACKENDS", "ACCELERATOR",
                                 "LABELS", "RUNNING", "LAST SEEN"],
                                [worker_row(w) for w in workers]))
        presence = found.get("presence") or {}
        click.echo(f"{presence.get('present', 0)} present, {presence.get('busy', 0)} busy")
