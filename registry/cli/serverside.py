"""What the commands that work on the server's database and store in this process share
(``user``, ``robot``, ``namespace``, ``audit``, ``gc``, ``scrub``, ``retention``): the
database they act on, said on stderr and never created by accident; the service, built
from the settings and acting as ``local:<os user>`` in the audit log; service errors as
one ``error:`` line; JSON or a table.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from client.show import render_table
from registry.app import build_service
from registry.cli.config import settings
from registry.errors import RegistryError
from registry.services.audit import Actor, current_actor
from registry.settings import Settings


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (absolute); None for other databases and in-memory."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).resolve()


def located(configured: Settings) -> Settings:
    """Say on stderr which database the command acts on (a PostgreSQL password masked),
    and refuse, before anything is written, to create a new SQLite file unless the
    command was given ``--init`` (``options.data_dir_option``): an admin command run from
    the wrong directory would otherwise make a fresh, empty registry there."""
    url = configured.sqlalchemy_url
    click.echo(f"database: {make_url(url).render_as_string(hide_password=True)}", err=True)
    path = sqlite_file(url)
    ctx = click.get_current_context(silent=True)
    init = bool(ctx and ctx.meta.get("assay.init"))
    if path is not None and not path.exists() and not init:
        raise click.ClickException(
            f"no database at {path}; run this where the registry runs, set ASSAY_DATA_DIR "
            "or ASSAY_DATABASE_URL, or pass --init to create one")
    return configured


def service(data_dir, **overrides):
    """The registry's services on the configured database and store (``--data-dir`` wins
    over ``ASSAY_DATA_DIR``; ``located`` checks it), acting as the local OS user."""
    configured = located(settings(data_dir=data_dir, **overrides))
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


def show_table(items: list, as_json: bool, header: list[str], rows, empty: str) -> None:
    """``items`` as JSON, or a table (``rows``: one list of strings per item) under
    ``header``; ``empty`` on stderr when there are none."""
    if as_json:
        click.echo(json.dumps(items, indent=2))
    elif not items:
        click.echo(empty, err=True)
    else:
        click.echo(render_table(header, [list(row) for row in rows]))
