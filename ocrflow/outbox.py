"""Events for Prefect, kept in the database until Prefect has them: the outbox.

An event is written (:func:`ocrflow.store.add_event`) in the transaction of the change it
reports, so it exists if and only if the change does: a decision made while Prefect is down
is announced when it comes back, never lost and never sent for a change that did not happen.

:func:`deliver` posts what waits to the server's ``POST /api/events``, oldest first, and
marks it sent in the transaction that locked it (``SKIP LOCKED`` on PostgreSQL; SQLite has
one writer at a time), so two deliverers never send one event twice. A crash between the
server's answer and that commit sends it again with the same event id, which the server
stores once. It runs after each decision, at the end of ``ocrflow run``, in ``ocrflow setup``,
when ``ocrflow serve`` starts, and in every scheduled sweep (``review-operations``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from ocrflow.crash import crash_point
from ocrflow.prefect_setup import prefect_server_configured
from ocrflow.settings import Settings
from ocrflow.store import OutboxRow, now, open_database

logger = logging.getLogger(__name__)

BATCH = 100
"""Events posted in one request."""

Post = Callable[[list[dict[str, Any]]], None]
"""Hands a batch of events to Prefect; raises if Prefect did not take them."""


@dataclass(frozen=True)
class Delivery:
    sent: int
    """Events delivered by this call."""
    waiting: int
    """Events still in the outbox afterwards."""
    problem: str | None = None
    """Why delivery stopped early (no server configured, the server unreachable)."""


def as_prefect_event(row: OutboxRow) -> dict[str, Any]:
    return {
        "id": row.event_id,
        "occurred": row.occurred_at.isoformat(),
        "event": row.event,
        "resource": row.resource,
        "related": row.related,
        "payload": row.payload,
    }


def post_to_prefect(events: list[dict[str, Any]]) -> None:
    """``POST /api/events`` through Prefect's own client (its URL, auth and TLS settings).

    The client retries a refused connection only once it has connected before, so a server
    that is down fails this at once rather than holding the outbox's lock.
    """
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        # The sync client has no public method for this route; its HTTP client raises on >= 400.
        client._client.post("/events", json=events)


def _prefect_api_configured() -> bool:
    """Whether Prefect has a server to post to, without importing Prefect (~1.4 CPU-s) for an inline run.

    Once Prefect is imported its settings context may differ from the environment (a flow
    run, a test harness), so it is asked; before, only the environment and settings files count.
    """
    if "prefect" not in sys.modules:
        return prefect_server_configured()
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def waiting(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None)))


def deliver(engine: Engine, post: Post | None = None) -> Delivery:
    """Send every waiting event, oldest first; stop at the first batch Prefect does not take.

    Without ``post``, events go to ``PREFECT_API_URL``; with none configured they wait
    (no temporary server is started for them).
    """
    if post is None:
        if not waiting(engine):
            return Delivery(0, 0)  # nothing to send: no need to import Prefect (a one-file run never does)
        if not _prefect_api_configured():
            return Delivery(0, waiting(engine), "no Prefect API configured (PREFECT_API_URL)")
        post = post_to_prefect
    sent, problem = 0, None
    while problem is None:
        with Session(engine) as session, session.begin():
            rows = session.scalars(
                select(OutboxRow)
                .where(OutboxRow.sent_at.is_(None))
                .order_by(OutboxRow.id)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                break
            try:
                post([as_prefect_event(row) for row in rows])
            except Exception as exc:  # noqa: BLE001 - an unsent event waits for the next delivery
                problem = f"{type(exc).__name__}: {exc}"[:500]
            else:
                crash_point("delivered")
            for row in rows:
                row.attempts += 1
                row.last_error = problem
                row.sent_at = None if problem else now()
            sent += 0 if problem else len(rows)
    left = waiting(engine)
    if problem:
        logger.warning("%d Prefect event(s) wait in the outbox: %s", left, problem)
    return Delivery(sent, left, problem)


def deliver_configured(settings: Settings) -> Delivery | None:
    """Deliver the outbox of the database ``settings`` name; None when it does not exist yet."""
    url = settings.resolved_database_url()
    if url.startswith("sqlite") and not Path(make_url(url).database or "").is_file():
        return None
    engine = open_database(url)
    try:
        return deliver(engine)
    finally:
        engine.dispose()
