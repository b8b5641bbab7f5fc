"""Migrations build exactly the schema of ``registry.db.tables``, on SQLite and PostgreSQL,
and every revision downgrades cleanly."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from registry.db import alembic_config, migrate
from registry.db.tables import Base
from tests.support.stacks import DATABASES


def _diff(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


@pytest.fixture(params=DATABASES)
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'assay.db'}"
    return request.getfixturevalue("postgres_server").create_database("assay_migrations")


@pytest.mark.slow  # every migration up and down
def test_head_matches_the_models_and_downgrades(url):
    migrate(url)
    assert _diff(url) == []
    assert "models" in _tables(url)
    command.downgrade(alembic_config(url), "0001")
    assert "models" not in _tables(url)
    migrate(url)
    assert _diff(url) == []
    command.downgrade(alembic_config(url), "base")
    assert _tables(url) == set()


def test_migrating_logs_one_line(tmp_path):
    """A first start on an empty database logs one line for the schema, not one per
    migration step plus Alembic's plugin set-up (a fresh process: Alembic logs on import)."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'assay.db'}"
    code = ("import logging, sys; logging.basicConfig(level=logging.INFO); "
            "from registry.db import migrate; migrate(sys.argv[1]); migrate(sys.argv[1])")
    done = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True,
                          timeout=120, check=True)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("INFO:assay:database schema upgraded from empty to ")
    assert lines[1].startswith("INFO:assay:database schema is current (revision ")
