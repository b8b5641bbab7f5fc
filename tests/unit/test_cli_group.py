"""The lazily loaded ``assay`` group: the listing's summaries match the commands, every
command has a help text, and a client command or the listing never imports the server."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from registry.cli import COMMANDS, main

HUGE = 10_000  # a short-help width that truncates nothing


def walk(command: click.Command, ctx: click.Context):
    yield ctx.command_path, command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            yield from walk(sub, click.Context(sub, parent=ctx, info_name=name))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_summary_is_the_commands_first_sentence(name):
    command = main.get_command(click.Context(main, info_name="assay"), name)
    assert command.name == name
    listed = click.Command(name, help=COMMANDS[name].summary).get_short_help_str(HUGE)
    assert listed == command.get_short_help_str(HUGE)


def test_every_command_has_help():
    commands = list(walk(main, click.Context(main, info_name="assay")))
    assert len(commands) > len(COMMANDS)
    assert [path for path, command in commands if not (command.help or "").strip()] == []


def imported_by(*args: str) -> set[str]:
    """The modules a fresh interpreter has imported after ``assay ARGS``."""
    code = ("import json, sys\nfrom registry.cli import main\n"
            f"main({list(args)!r}, standalone_mode=False)\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


SERVER = ("starlette", "sqlalchemy", "uvicorn", "registry.app", "registry.services")


def test_listing_imports_no_command_module():
    modules = imported_by("--help")
    assert {m for m in modules if m.startswith("registry.cli.")} == {"registry.cli.group"}
    assert not {m for m in modules if m.startswith(SERVER)}


@pytest.mark.parametrize("args", [("pull", "--help"), ("token", "ls", "--help"),
                                  ("webhook", "--help")])
def test_client_commands_import_no_server(args):
    modules = imported_by(*args)
    assert not {m for m in modules if m.startswith(SERVER)}
