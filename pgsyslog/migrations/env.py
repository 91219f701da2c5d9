"""Alembic environment: online only, one connection, under lock_timeout and an advisory lock.

The advisory lock makes two receivers that start at once run the migrations one after the
other (the second finds nothing left to do). Day partitions are made at run time, not by
migrations, so autogenerate is told to look past them.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from pgsyslog.storage import locks
from pgsyslog.storage.database import make_engine
from pgsyslog.storage.partitions import is_partition_name
from pgsyslog.storage.schema import SCHEMA, metadata

LOCK_TIMEOUT = "5s"


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    if type_ == "schema":
        return name == SCHEMA
    if type_ == "table":
        return name is not None and not is_partition_name(name)
    return True


def run_migrations_online() -> None:
    dsn = context.config.attributes["dsn"]
    engine = make_engine(dsn)
    with engine.connect() as connection:
        connection.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": locks.MIGRATIONS})
        connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                include_schemas=True,
                include_name=include_name,
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": locks.MIGRATIONS})
            connection.commit()
    engine.dispose()


run_migrations_online()
