"""The ``assay`` command line: ``serve``, ``gc``, ``migrate``.

Every option can also be set with its ``ASSAY_*`` environment variable; a flag given on
the command line wins.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from registry.settings import Settings


def _settings(**overrides) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@click.group()
def main() -> None:
    """assay: an OCI registry for models that runs every model before it is served."""


@main.command()
@click.option("--host", help="Interface to bind [ASSAY_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [ASSAY_PORT, default 5000].")
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="Where SQLite and the filesystem blob store live [ASSAY_DATA_DIR, ./data].")
@click.option("--log-level", help="uvicorn log level [ASSAY_LOG_LEVEL, info].")
def serve(host, port, data_dir, log_level) -> None:
    """Serve the registry (OCI Distribution API under /v2/)."""
    import uvicorn

    from registry.app import create_app

    settings = _settings(host=host, port=port, data_dir=data_dir, log_level=log_level)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                access_log=settings.log_level == "debug", loop="uvloop", http="httptools",
                proxy_headers=False, server_header=False, date_header=False)


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="[ASSAY_DATA_DIR]")
def migrate(data_dir) -> None:
    """Create or upgrade the database schema (serve does this at start too)."""
    from registry.db import migrate as run

    settings = _settings(data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    run(settings.sqlalchemy_url)
    click.echo("database is at the latest schema")


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="[ASSAY_DATA_DIR]")
@click.option("--grace-seconds", type=int,
              help="Keep unreferenced blobs younger than this [ASSAY_GC_GRACE_SECONDS, 3600].")
@click.option("--dry-run", is_flag=True, help="Report what would be deleted, delete nothing.")
def gc(data_dir, grace_seconds, dry_run) -> None:
    """Delete blobs no manifest refers to, and abandoned uploads; safe while serving."""
    from registry.app import build_service
    from registry.gc import collect

    settings = _settings(data_dir=data_dir, gc_grace_seconds=grace_seconds)
    report = collect(build_service(settings), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {report.blobs} blob(s), {report.bytes} bytes; "
               f"{report.orphans} orphaned object(s); {report.uploads} expired upload(s)")


if __name__ == "__main__":
    sys.exit(main())
