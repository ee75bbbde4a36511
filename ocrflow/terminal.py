"""What every ``ocrflow`` command shares: the consoles, the one way to fail, common options.

A user error is one clear line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True)

OutOption = Annotated[
    Path, typer.Option("--out", "-o", help="Folder for results (and the default SQLite database).")
]
DbOption = Annotated[
    str | None, typer.Option("--db", help="SQLAlchemy URL of the database; default: a SQLite file in --out.")
]


def print_error(message: str) -> None:
    """``error: message`` on stderr, on one line however long."""
    errors.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and end the command with exit code 2."""
    print_error(message)
    raise typer.Exit(2)


def settings_for(out: Path, db: str | None, **overrides):
    """Settings from the environment, with the output folder and database the command was given."""
    from ocrflow.settings import Settings

    values = {"out_dir": out, **overrides}
    if db:
        values["database_url"] = db
    return Settings(**values)
