"""Database access: the engine, read/write transactions, and migrations.

``Database.read()`` gives a connection in autocommit mode: each statement sees the
latest committed state on its own (no BEGIN round trip; the read paths need no
multi-statement snapshot). ``Database.write()`` gives a connection in a write
transaction that commits on success. On SQLite the write
transaction is ``BEGIN IMMEDIATE`` (take the write lock up front, so two writers
queue on ``busy_timeout`` instead of deadlocking on a lock upgrade), WAL mode is on,
and foreign keys are enforced. On PostgreSQL, row locks (``FOR UPDATE``) do the same.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite

_log = logging.getLogger("assay")


class Database:
    def __init__(self, url: str, *, pool_size: int = 16):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # Short single-row reads may run on the event loop itself: a SQLite reader in WAL
        # mode never waits for the writer, and handing the call to a worker thread costs
        # more than the query (GIL hand-off: ~480 vs ~170 us of CPU per manifest GET).
        # A network database keeps its reads in worker threads.
        self.inline_reads = self.is_sqlite
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=32)
            _configure_sqlite(self.engine)
        else:
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=16,
                                        pool_pre_ping=True)
        self._writer = self.engine.execution_options(assay_write=True)
        # SQLite: the begin hook below emits no BEGIN for readers (pysqlite then runs in
        # autocommit); PostgreSQL: the driver's autocommit mode.
        self._reader = (self.engine if self.is_sqlite
                        else self.engine.execution_options(isolation_level="AUTOCOMMIT"))

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._reader.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self._writer.begin() as conn:
            yield conn

    def ping(self) -> None:
        """Run ``SELECT 1`` on a fresh read connection; raises whatever the driver raises
        when the database cannot be reached or does not answer."""
        with self.read() as conn:
            conn.execute(text("SELECT 1")).scalar_one()

    def insert_ignore(self, table, **kw):
        """An INSERT that does nothing when the primary/unique key already exists."""
        insert = sqlite.insert if self.is_sqlite else postgresql.insert
        return insert(table).values(**kw).on_conflict_do_nothing()

    def upsert(self, table, keys: list[str], update: dict, **kw):
        """INSERT ... ON CONFLICT (keys) DO UPDATE SET update."""
        insert = sqlite.insert if self.is_sqlite else postgresql.insert
        return insert(table).values(**kw).on_conflict_do_update(index_elements=keys, set_=update)

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let us emit BEGIN ourselves (pysqlite's implicit transactions are off).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection):
        if conn.get_execution_options().get("assay_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        # Readers: no BEGIN. Each SELECT is atomic by itself, and in WAL mode it never
        # blocks or is blocked by the writer.


def alembic_config(url: str):
    from alembic.config import Config

    import migrations

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the schema at ``url`` up to ``revision`` (the only way tables are created).

    Returns the schema's revision before and after, and logs them as one line on the
    ``assay`` logger; Alembic's own per-step lines are kept to warnings and above, since a
    fresh database would otherwise print one line per migration at every first start."""
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    alembic_log.setLevel(max(logging.WARNING, level))
    try:
        from alembic import command  # logs its plugin set-up on first import

        before = schema_revision(url)
        command.upgrade(alembic_config(url), revision)
        after = schema_revision(url)
    finally:
        alembic_log.setLevel(level)
    if before == after:
        _log.info("database schema is current (revision %s)", after)
    else:
        _log.info("database schema upgraded from %s to %s", before or "empty", after)
    return before, after


def schema_revision(url: str) -> str | None:
    """The Alembic revision the database at ``url`` is at (None: no schema yet)."""
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
