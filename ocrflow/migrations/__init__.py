"""The database schema's history as Alembic migrations, shipped inside the package.

:func:`upgrade` brings any database to the newest revision; a store calls it when it
opens. A database made before migrations existed (tables, no ``alembic_version``) is
first marked as being at the foundation revision it already matches.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

FOUNDATION = "0001"
_MIGRATION_LOCK = 0x6F6372666C6F77  # "ocrflow"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate ``engine``'s database up to ``revision``; cheap when it is there already."""
    if revision == "head" and current_revision(engine) == head_revision():
        return
    _run(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate ``engine``'s database down to ``revision`` (undoing the later migrations)."""
    _run(engine, command.downgrade, revision)


def _run(engine: Engine, step, revision: str) -> None:
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Processes starting together would race to create the same tables; SQLite's
            # BEGIN IMMEDIATE (see ocrflow.store) already serialises them.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        config = alembic_config()
        config.attributes["connection"] = connection
        context = MigrationContext.configure(connection)
        if context.get_current_revision() is None and inspect(connection).has_table("documents"):
            command.stamp(config, FOUNDATION)
        step(config, revision)
