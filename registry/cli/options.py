"""Options several command groups share, and the two command shapes the client's resource
groups (``key``, ``token``, ``webhook``) repeat: list the resource, remove one by id.

Imports nothing but click: every command module uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

REF_HELP = ("REF is HOST[:PORT]/NAME[:TAG|@DIGEST] (tag default: latest); loopback hosts "
            "are spoken to over plain HTTP, others over HTTPS unless --insecure.")
insecure_option = click.option("--insecure", is_flag=True,
                               help="Use plain HTTP even for a non-loopback registry.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")

# The registry a client command talks to: an optional argument (webhook, login) or an
# option (key, token, whose argument is something else).
registry_argument = click.argument("registry", metavar="[REGISTRY]", required=False,
                                   envvar="ASSAY_REGISTRY", default="127.0.0.1:5000")
registry_option = click.option("--registry", "registry", metavar="HOST[:PORT]",
                               envvar="ASSAY_REGISTRY", default="127.0.0.1:5000",
                               show_default=True, help="The registry [$ASSAY_REGISTRY].")


# A personal access token's scopes and lifetime, on the client and on the server.
scope_option = click.option("--scope", "scopes", multiple=True,
                            help="pull, push, delete, admin, optionally :NAMESPACE "
                                 "(repeatable; default pull and push).")
expires_option = click.option("--expires-days", type=click.FloatRange(min=0, min_open=True),
                              help="The token expires after this many days "
                                   "[default: never].")


def data_dir_option(help: str = "[ASSAY_DATA_DIR, ./data]"):
    """Server-side commands: where SQLite and the filesystem store live."""
    return click.option("--data-dir", type=click.Path(path_type=Path), help=help)


def list_command(group: click.Group, run: Callable[[str, bool, bool], None], help: str, *,
                 registry=registry_option) -> click.Command:
    """``assay GROUP ls [--json]``: ``run(registry, insecure, as_json)`` prints the list."""

    @group.command(name="ls", help=help)
    @registry
    @insecure_option
    @json_option
    def command(registry, insecure, as_json) -> None:
        run(registry, insecure, as_json)

    return command


def remove_command(group: click.Group, run: Callable[[int, str, bool], None], help: str, *,
                   name: str = "rm", registry=registry_option) -> click.Command:
    """``assay GROUP rm ID``: ``run(id, registry, insecure)`` removes the resource."""

    @group.command(name=name, help=help)
    @click.argument("resource_id", metavar="ID", type=click.IntRange(min=1))
    @registry
    @insecure_option
    def command(resource_id, registry, insecure) -> None:
        run(resource_id, registry, insecure)

    return command
