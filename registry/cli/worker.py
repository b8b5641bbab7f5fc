"""``assay worker``: verification worker processes for a registry whose ``serve`` runs
with fewer (or no) workers of its own. Imports the worker pool, not the web app."""

from __future__ import annotations

import logging

import click

from registry.cli.config import settings as load_settings
from registry.cli.options import data_dir_option
from registry.db import migrate as run_migrations
from worker.pool import Pool


@click.command()
@click.option("-c", "--concurrency", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes (each runs one verification at a time).")
@data_dir_option("[ASSAY_DATA_DIR]")
@click.option("--log-level", help="[ASSAY_LOG_LEVEL, info]")
def worker(concurrency, data_dir, log_level) -> None:
    """Run verification workers against the configured database and blob store until
    SIGTERM/Ctrl-C (a job in progress is handed back to the queue)."""
    settings = load_settings(data_dir=data_dir, log_level=log_level)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    run_migrations(settings.sqlalchemy_url)
    pool = Pool(settings, concurrency)
    pool.start()
    logging.getLogger("assay").info("%d worker(s): pids %s", concurrency, pool.pids)
    pool.wait()
