"""The click groups of ``assay``: failures as one ``error:`` line, and a root group that
imports a command's module only when that command runs.

Invariant: ``assay --help`` imports no command module (it lists the summaries of the
table, ``registry.cli.COMMANDS``), and ``assay CMD ...`` imports only the module that
declares CMD. A command module may therefore import at its top whatever its commands
need (the server, the client) without slowing any other command.
"""

from __future__ import annotations

import copy
import importlib
import sys
from dataclasses import dataclass

import click


class Group(click.Group):
    """Usage errors (a missing argument, a bad option) as one ``error:`` line, like every
    other failure of the CLI, instead of click's usage block."""

    def main(self, *args, **kwargs):
        if not kwargs.pop("standalone_mode", True):
            return super().main(*args, standalone_mode=False, **kwargs)  # embedding caller
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)


@dataclass(frozen=True)
class Lazy:
    """Where a command is declared (``module:attribute``) and the first sentence of its
    help, which the group's help lists without importing the module. A unit test holds
    the summary equal to the command's own."""

    target: str
    summary: str


class LazyGroup(Group):
    """A group whose commands are imported on first use (click's "lazily loading
    subcommands" pattern), from a ``{name: Lazy}`` table."""

    def __init__(self, *args, lazy: dict[str, Lazy], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attribute = self.lazy[cmd_name].target.partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, from the table's summaries: listing loads nothing."""
        shown = [(name, command) for name in self.list_commands(ctx)
                 if not (command := self._summary(ctx, name)).hidden]
        if not shown:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in shown)
        rows = [(name, command.get_short_help_str(limit)) for name, command in shown]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _summary(self, ctx: click.Context, name: str) -> click.Command:
        if name in self.lazy and name not in self.commands:
            return click.Command(name, help=self.lazy[name].summary)
        return self.get_command(ctx, name)


def alias(group: click.Group, command: click.Command, name: str) -> click.Command:
    """Register ``command`` under ``name`` too, hidden from help: an earlier verb
    (``token create``, now ``token add``) that scripts written with it keep using."""
    hidden = copy.copy(command)
    hidden.hidden, hidden.name = True, name
    group.add_command(hidden, name)
    return hidden


def command_at(ctx: click.Context, *path: str) -> click.Command:
    """The command at ``path`` under the root group (``"user", "token", "add"``), loaded
    on demand: a client command hands over to a server-side one this way, so that its
    module need not import the server-side module (and the server with it)."""
    command = ctx.find_root().command
    for name in path:
        command = command.get_command(ctx, name)
    return command
