"""The one Prefect event a review decision sends, for deployments to react to.

It goes through the outbox (:mod:`ocrflow.outbox`): written with the decision, delivered
once whenever a Prefect server is reachable.

Its shape is a contract (the ``finalize-review`` deployment is triggered by it)::

    event    ocrflow.review.completed
    resource prefect.resource.id = ocrflow.document.<document_id>, prefect.resource.name = <file name>
    payload  document_id, status, decision, result (absolute path), reviewer
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.orm import Session

from ocrflow.store import add_event

logger = logging.getLogger(__name__)

REVIEW_COMPLETED = "ocrflow.review.completed"


def review_completed(
    session: Session,
    *,
    document_id: str,
    source: str,
    status: str,
    decision: str,
    result_path: Path,
    reviewer: str,
) -> None:
    """Put the event in the outbox, in the decision's transaction (sent by :func:`ocrflow.outbox.deliver`)."""
    add_event(
        session,
        REVIEW_COMPLETED,
        resource={
            "prefect.resource.id": f"ocrflow.document.{document_id}",
            "prefect.resource.name": Path(source).name,
        },
        payload={
            "document_id": document_id,
            "status": status,
            "decision": decision,
            "result": str(Path(result_path).resolve()),
            "reviewer": reviewer,
        },
    )


def flush_events(timeout: float = 10.0) -> None:
    """Wait for queued events to reach the server (a short-lived CLI process would drop them)."""
    from prefect.events.worker import EventsWorker

    try:
        EventsWorker.drain_all(timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - same rule as emitting: log, never fail
        logger.warning("could not flush Prefect events: %s", exc)
