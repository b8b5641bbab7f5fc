"""Alembic environment: runs migrations against the URL set by ``registry.db.migrate``."""

from alembic import context
from sqlalchemy import create_engine, pool

from registry.db.tables import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Registry replicas and workers start together and each migrates: one at a
            # time (the lock is the transaction's; the others then find nothing to do).
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7277616173)")
        # render_as_batch lets ALTERs work on SQLite (table rebuilds).
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        if connection.in_transaction():
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
