"""``assay audit``: the audit log, read from the server's database: a table, or JSON with
``--json``."""

from __future__ import annotations

import json

import click

from registry.cli.options import data_dir_option, json_option
from registry.cli.serverside import call, service, show_table


@click.command()
@click.option("-n", "limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--actor", help="Only entries by this user.")
@click.option("--action", help="Only this action (push, delete, override, user.add, ...).")
@data_dir_option()
@json_option
def audit(limit, actor, action, data_dir, as_json) -> None:
    """The audit log, newest first: pushes, deletes, permission changes, overrides."""
    entries = call(service(data_dir).audit.entries, limit=limit, actor=actor, action=action)
    show_table(entries, as_json, ["AT", "ACTOR", "ACTION", "TARGET", "DETAIL"],
               ([e["at"][:19], e["actor"] or "-", e["action"], e["target"] or "",
                 json.dumps(e["detail"]) if e["detail"] else ""] for e in entries),
               "no audit entries" + (" match" if actor or action else ""))
