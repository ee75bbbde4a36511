"""The one Prefect event a review decision sends, for deployments to react to.

Its shape is a contract (the ``finalize-review`` deployment is triggered by it)::

    event    ocrflow.review.completed
    resource prefect.resource.id = ocrflow.document.<document_id>, prefect.resource.name = <file name>
    payload  document_id, status, decision, result (absolute path), reviewer
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

REVIEW_COMPLETED = "ocrflow.review.completed"


def emit_review_completed(
    *, document_id: str, source: str, status: str, decision: str, result_path: Path, reviewer: str
) -> bool:
    """Send the event; True if it was handed to Prefect.

    A decision is already durable when this runs, so no failure here undoes it: without a
    configured Prefect API (``PREFECT_API_URL``) or on any error, a warning is logged.
    """
    from prefect.events import emit_event
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        # Without this check Prefect would start a temporary server in-process for one event.
        logger.warning(
            "no Prefect API configured (PREFECT_API_URL); %s for %s not sent", REVIEW_COMPLETED, document_id
        )
        return False
    try:
        sent = emit_event(
            event=REVIEW_COMPLETED,
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
    except Exception as exc:  # noqa: BLE001 - any failure to notify must leave the decision standing
        logger.warning("%s for %s not sent: %s", REVIEW_COMPLETED, document_id, exc)
        return False
    if sent is None:
        logger.warning("Prefect did not accept %s for %s", REVIEW_COMPLETED, document_id)
        return False
    return True


def flush_events(timeout: float = 10.0) -> None:
    """Wait for queued events to reach the server (a short-lived CLI process would drop them)."""
    from prefect.events.worker import EventsWorker

    try:
        EventsWorker.drain_all(timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - same rule as emitting: log, never fail
        logger.warning("could not flush Prefect events: %s", exc)
