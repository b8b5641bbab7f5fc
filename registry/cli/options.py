"""Options several command groups share, and the two command shapes the client's resource
groups (``key``, ``token``, ``webhook``) repeat: list the resource, remove one by id.

The registry, one rule for every command: a command whose argument is a REF
(``HOST[:PORT]/NAME[:TAG|@DIGEST]``: push, pull, inspect, status, rm...) or a location
(``ls [HOST[:PORT][/REPO]]``) finds the registry there. Every other client command
(``login``, ``logout``, ``key``, ``token``, ``webhook``, ``profile``, ``mirror``) takes
it as ``-r/--registry HOST[:PORT]``, by default ``$ASSAY_REGISTRY``, else ``127.0.0.1:5000``;
``login`` and ``logout`` also take it as their argument (``assay login HOST``, as
``docker login HOST``). ``webhook`` and ``profile`` still accept it as a trailing
argument, their earlier spelling, without showing it. Server-side commands (``user``,
``robot``, ``namespace``, ``audit``, ``gc``...) take no registry: they act on the
database of ``--data-dir`` / ``ASSAY_DATA_DIR`` / ``ASSAY_DATABASE_URL``.

Imports nothing but click: every command module uses it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import click

DEFAULT_REGISTRY = "127.0.0.1:5000"
REF_HELP = ("REF is HOST[:PORT]/NAME[:TAG|@DIGEST] (tag default: latest); loopback hosts "
            "are spoken to over plain HTTP, others over HTTPS unless --insecure.")
insecure_option = click.option("--insecure", is_flag=True,
                               help="Use plain HTTP even for a non-loopback registry.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


class _UnlistedArgument(click.Argument):
    """A positional argument that the usage line does not show: an earlier spelling that
    keeps working for the scripts written with it."""

    def get_usage_pieces(self, ctx: click.Context) -> list[str]:
        return []


def resolve_registry(option: str | None, argument: str | None) -> str:
    """The registry a command talks to: ``-r`` or the argument (not two different
    ones), else ``$ASSAY_REGISTRY``, else ``127.0.0.1:5000``."""
    if option and argument and option != argument:
        raise click.UsageError(f"two registries given ({argument} and --registry {option}): "
                               "give one")
    return option or argument or os.environ.get("ASSAY_REGISTRY") or DEFAULT_REGISTRY


def registry_option(*, positional: bool = False, unlisted: bool = False):
    """``-r/--registry HOST[:PORT]`` (see the module docstring); ``positional``: also as
    an optional argument ``[REGISTRY]``; ``unlisted``: also as an argument the usage
    does not show. The command receives one ``registry`` keyword, already resolved."""

    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def command(*args, registry_argument=None, **kwargs):
            kwargs["registry"] = resolve_registry(kwargs.get("registry"), registry_argument)
            return f(*args, **kwargs)

        command = click.option(
            "-r", "--registry", "registry", metavar="HOST[:PORT]",
            help=f"The registry [default: $ASSAY_REGISTRY, else {DEFAULT_REGISTRY}]"
                 + ("; also accepted as the argument REGISTRY." if positional else "."))(command)
        if positional or unlisted:
            command = click.argument("registry_argument", metavar="[REGISTRY]", required=False,
                                     cls=click.Argument if positional else _UnlistedArgument
                                     )(command)
        return command

    return decorate


# A personal access token's scopes and lifetime, on the client and on the server.
scope_option = click.option("--scope", "scopes", multiple=True,
                            help="pull, push, delete, admin, optionally :NAMESPACE "
                                 "(repeatable; default pull and push).")
expires_option = click.option("--expires-days", type=click.FloatRange(min=0, min_open=True),
                              help="The token expires after this many days "
                                   "[default: never].")


def _remember_init(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    ctx.meta["assay.init"] = value
    return value


def data_dir_option(help: str = "[ASSAY_DATA_DIR, ./data]", *, init: bool = True):
    """Server-side commands: where SQLite and the filesystem store live. With ``init``
    (every admin command; not ``migrate``, which always creates), also ``--init``: the
    command may create a new SQLite database (``registry.cli.serverside.service``
    refuses to otherwise). ``--init`` is kept in the click context, not passed."""
    data_dir = click.option("--data-dir", type=click.Path(path_type=Path), help=help)
    if not init:
        return data_dir
    allow = click.option("--init", is_flag=True, expose_value=False, callback=_remember_init,
                         help="Create an empty database if there is none instead of "
                              "refusing (e.g. to add the first admin before the "
                              "registry has ever run).")
    return lambda f: data_dir(allow(f))


def list_command(group: click.Group, run: Callable[[str, bool, bool], None],
                 help: str, **registry) -> click.Command:
    """``assay GROUP ls [--json]``: ``run(registry, insecure, as_json)`` prints the list.
    ``registry``: keywords of ``registry_option``."""

    @group.command(name="ls", help=help)
    @registry_option(**registry)
    @insecure_option
    @json_option
    def command(registry, insecure, as_json) -> None:
        run(registry, insecure, as_json)

    return command


def remove_command(group: click.Group, run: Callable[[int, str, bool], None], help: str, *,
                   name: str = "rm", **registry) -> click.Command:
    """``assay GROUP rm ID``: ``run(id, registry, insecure)`` removes the resource."""

    @group.command(name=name, help=help)
    @click.argument("resource_id", metavar="ID", type=click.IntRange(min=1))
    @registry_option(**registry)
    @insecure_option
    def command(resource_id, registry, insecure) -> None:
        run(resource_id, registry, insecure)

    return command
