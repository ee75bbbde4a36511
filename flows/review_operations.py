"""The ``review_operations`` flow: the review queue run as an operation, on a schedule.

Each run announces newly queued items (``ocrflow.review.requested``) and items past their
type's time limit (``ocrflow.review.overdue``), once per wait, setting a new item's priority,
due time and assignee from its type's review rule; then it publishes the queue's health as
the ``ocrflow-review-health`` artifact: waiting by type and age, decisions an hour, handling
time, the audit sample's agreement rate, and accuracy by confidence band with suggested
thresholds. The plain work is in :mod:`ocrflow.review.operations`.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from ocrflow.doctypes import load_doctypes
from ocrflow.review.operations import health_markdown, queue_health, sweep
from ocrflow.review.queue import ReviewQueue
from ocrflow.settings import Settings
from ocrflow.store import ResultStore


@flow(name="review-operations", validate_parameters=True)
def review_operations(out: str = "ocrflow-out", settings: Settings | None = None) -> dict[str, int]:
    """Send the queue's requested/overdue events and publish its health; returns the counts sent."""
    settings = (settings or Settings()).model_copy(update={"out_dir": Path(out)})
    store = ResultStore(settings.out_dir, settings.resolved_database_url())
    try:
        queue = ReviewQueue(
            store, load_doctypes(settings.schema_dir), lease_seconds=settings.review.lease_seconds
        )
        report = sweep(queue, settings.review, review_url=settings.review_url)
        health = queue_health(queue)
        create_markdown_artifact(
            health_markdown(health),
            key="ocrflow-review-health",
            description="Review queue health (no document values)",
        )
    finally:
        store.engine.dispose()
    get_run_logger().info("%d item(s) announced, %d overdue", len(report.requested), len(report.overdue))
    return {"requested": len(report.requested), "overdue": len(report.overdue)}
