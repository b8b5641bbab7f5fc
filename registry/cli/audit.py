"""``assay audit``: the audit log, read from the server's database."""

from __future__ import annotations

import json

import click

from registry.cli.options import data_dir_option, json_option
from registry.cli.serverside import call, service, show


@click.command()
@click.option("-n", "limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--actor", help="Only entries by this user.")
@click.option("--action", help="Only this action (push, delete, override, user.add, ...).")
@data_dir_option()
@json_option
def audit(limit, actor, action, data_dir, as_json) -> None:
    """The audit log, newest first: pushes, deletes, permission changes, overrides."""
    entries = call(service(data_dir).audit.entries, limit=limit, actor=actor, action=action)
    show(entries, as_json, [
        f"{e['at'][:19]} {e['actor'] or '-':<16} {e['action']:<24} {e['target']}"
        + (f" {json.dumps(e['detail'])}" if e["detail"] else "") for e in entries])
