"""What the commands that work on the server's database and store in this process share
(``user``, ``robot``, ``namespace``, ``audit``, ``retention``): the service, built from
the settings and acting as ``local:<os user>`` in the audit log; service errors as one
``error:`` line; JSON or text.
"""

from __future__ import annotations

import getpass
import json

import click

from registry.app import build_service
from registry.cli.config import settings
from registry.errors import RegistryError
from registry.services.audit import Actor, current_actor


def service(data_dir):
    """The registry's services on the configured database and store (``--data-dir`` wins
    over ``ASSAY_DATA_DIR``), acting as the local OS user."""
    configured = settings(data_dir=data_dir)
    current_actor.set(Actor(f"local:{getpass.getuser()}"[:64]))
    return build_service(configured)


def call(fn, *args, **kwargs):
    """Call a service; its errors become one ``error:`` line and exit status 1."""
    try:
        return fn(*args, **kwargs)
    except RegistryError as exc:
        raise click.ClickException(exc.message) from None


def show(value, as_json: bool, lines) -> None:
    """``value`` as indented JSON, or the text ``lines``."""
    if as_json:
        click.echo(json.dumps(value, indent=2))
    else:
        for line in lines:
            click.echo(line)
