"""``assay migrate``: create or upgrade the database schema, without loading the web app
(``serve`` migrates at start too)."""

from __future__ import annotations

import click
from sqlalchemy.engine import make_url

from registry.cli.config import settings as load_settings
from registry.cli.options import data_dir_option
from registry.db import migrate as run_migrations


@click.command()
@data_dir_option("[ASSAY_DATA_DIR]", init=False)
def migrate(data_dir) -> None:
    """Create or upgrade the database schema (serve does this at start too)."""
    settings = load_settings(data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    click.echo("database: "
               f"{make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)}",
               err=True)
    before, after = run_migrations(settings.sqlalchemy_url)
    if before == after:
        click.echo(f"database schema is current (revision {after})")
    else:
        click.echo(f"database schema upgraded from {before or 'empty'} to {after}")
