"""A real ``prefect server start`` and a fresh PostgreSQL database, for tests and bench scripts.

No pytest here: bench scripts run without it. Failures raise ``ServerDidNotStart`` or
``PostgresUnreachable`` with what a reader needs (the server log's tail, the URL); tests turn
them into ``pytest.fail`` where they must.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

# The one definition of the test PostgreSQL server (tests/conftest.py imports it from here).
POSTGRES_URL = os.environ.get(
    "OCRFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BIN = Path(sys.executable).parent
LOG_TAIL_CHARS = 3000


class ServerDidNotStart(RuntimeError):
    """The Prefect server exited or did not answer /health in time; the message ends with its log."""


class PostgresUnreachable(RuntimeError):
    """The PostgreSQL server at POSTGRES_URL refused to create a database."""


@dataclass(frozen=True)
class PrefectServer:
    url: str  # the API, ending in /api
    env: dict[str, str]  # the server's environment plus PREFECT_API_URL, for clients and workers
    database_url: str
    process: subprocess.Popen
    log: Path

    @property
    def kind(self) -> str:
        return "sqlite" if self.database_url.startswith("sqlite") else "postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGINT first so the process shuts down cleanly; kill it if it is still there after ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def fresh_postgres_database(prefix: str, admin_url: str = POSTGRES_URL) -> Iterator[str]:
    """A new uuid-named database on ``admin_url``'s server as a Prefect (asyncpg) URL, dropped afterwards."""
    import sqlalchemy

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with _created(admin_url, f'CREATE DATABASE "{name}"', f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'):
        url = sqlalchemy.engine.make_url(admin_url).set(drivername="postgresql+asyncpg", database=name)
        yield url.render_as_string(hide_password=False)


@contextlib.contextmanager
def fresh_postgres_schema(prefix: str, admin_url: str = POSTGRES_URL) -> Iterator[str]:
    """A new uuid-named schema in ``admin_url``'s database, as a URL that works in it; dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with _created(admin_url, f'CREATE SCHEMA "{schema}"', f'DROP SCHEMA "{schema}" CASCADE'):
        yield f"{admin_url}?options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def _created(admin_url: str, create: str, drop: str) -> Iterator[None]:
    """``create`` run on the server, ``drop`` afterwards; autocommit, as CREATE DATABASE needs."""
    import sqlalchemy

    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(create)
    except sqlalchemy.exc.OperationalError as exc:
        admin.dispose()
        raise PostgresUnreachable(f"PostgreSQL at {admin_url} is not reachable: {exc}") from exc
    try:
        yield
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(drop)
        admin.dispose()


@contextlib.contextmanager
def prefect_server(
    home: Path,
    database_url: str | None = None,
    *,
    extra_env: Mapping[str, str] | None = None,
    log_level: str = "INFO",
    start_seconds: float = 240,
) -> Iterator[PrefectServer]:
    """A real Prefect server on a free 127.0.0.1 port with its own home (and SQLite unless a URL is given).

    The caller's PREFECT_* variables are left out so no profile or outside API leaks in;
    ``extra_env`` (e.g. PREFECT_WORKER_QUERY_SECONDS, OCRFLOW_HOME) goes to the server and to ``env``.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    database_url = database_url or f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    server_env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_API_DATABASE_CONNECTION_URL=database_url,
        PREFECT_LOGGING_LEVEL=log_level,
        **(extra_env or {}),
    )
    log = home / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_healthy(url, process, log, start_seconds)
        yield PrefectServer(url, {**server_env, "PREFECT_API_URL": url}, database_url, process, log)
    finally:
        stop(process)


def _wait_until_healthy(url: str, process: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise ServerDidNotStart(f"prefect server exited:\n{log.read_text()[-LOG_TAIL_CHARS:]}")
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if httpx.get(f"{url}/health", timeout=2).json() is True:
                return
        if time.monotonic() > deadline:
            raise ServerDidNotStart(
                f"prefect server did not start in {seconds:g} s:\n{log.read_text()[-LOG_TAIL_CHARS:]}"
            )
        time.sleep(1)
