"""Review as a daily operation: announcing items, noticing overdue ones, and the queue's health.

Two Prefect events tell people (through automations, see ``ocrflow setup``) what needs them::

    event    ocrflow.review.requested     an item waits for a person (sent once per wait)
    event    ocrflow.review.overdue       an item waited past its type's time limit (once per wait)
    resource prefect.resource.id = ocrflow.review-item.<item id>, prefect.resource.name = <file name>
    related  ocrflow.document.<document_id>
    payload  item, document_id, doc_type, reasons, priority, due_at, assigned_to, review_url (if set)

Both go through the outbox (:mod:`ocrflow.outbox`). A run announces an item when it queues
it (:func:`announcer`), setting its priority, due time and assignee from its type's review
rule (``time_limit_minutes``, ``priority``, ``assign_to``); :func:`sweep` announces the
overdue ones and any item not announced yet, then delivers. The scheduled
``review-operations`` deployment runs it, with :func:`queue_health` for its artifact.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ocrflow.doctypes import DocType
from ocrflow.models import DocumentResult
from ocrflow.outbox import Delivery, Post, deliver
from ocrflow.review.queue import ReviewQueue
from ocrflow.routing import AUDIT_SAMPLE, schema_rule
from ocrflow.settings import ReviewOptions
from ocrflow.store import (
    DocumentRow,
    OnQueued,
    ReviewEventRow,
    ReviewItemRow,
    ReviewState,
    add_event,
    now,
)

logger = logging.getLogger(__name__)

REVIEW_REQUESTED = "ocrflow.review.requested"
REVIEW_OVERDUE = "ocrflow.review.overdue"

AGE_BUCKETS = ((timedelta(hours=1), "< 1 h"), (timedelta(hours=4), "1-4 h"), (timedelta(days=1), "4-24 h"))
OLDEST_BUCKET = "> 1 d"
CONFIDENCE_BANDS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0)
TARGET_ACCURACY = 0.98
"""What a suggested threshold keeps: fields at or above it were right this often in reviews."""
MIN_SAMPLES = 20
"""Decided fields a band needs before it suggests anything."""


@dataclass
class SweepReport:
    requested: list[int] = field(default_factory=list)
    """Items announced by this sweep (their event is in the outbox)."""
    overdue: list[int] = field(default_factory=list)
    delivery: Delivery | None = None
    """What the outbox delivery after the sweep sent, and what still waits."""


def announcer(
    doctypes: dict[str, DocType], options: ReviewOptions, review_url: str | None = None
) -> OnQueued:
    """What a run does when it queues a document for a new wait (:meth:`ResultStore.save`'s ``on_queued``).

    The item gets its type rule's priority, due time and assignee, and
    ``ocrflow.review.requested`` goes into the outbox in the same transaction.
    """

    def on_queued(session: Session, item: ReviewItemRow, result: DocumentResult) -> None:
        values = _schedule(item, doctypes, options)
        for name, value in values.items():
            setattr(item, name, value)
        item.requested_at = now()
        session.flush()
        name = Path(result.source).name
        add_event(session, REVIEW_REQUESTED, *_event_parts(item, values, name, review_url))

    return on_queued


def sweep(
    queue: ReviewQueue,
    options: ReviewOptions,
    *,
    review_url: str | None = None,
    post: Post | None = None,
) -> SweepReport:
    """Announce overdue items, and items not announced yet, once per wait; then deliver the outbox.

    An item announced here gets its priority, due time and assignee too; a run announces the
    items it queues itself, so the sweep catches the rest (queued by an older version, or
    without the run's settings). ``post``: see :func:`~ocrflow.outbox.deliver`.
    """
    report = SweepReport()
    current = queue.clock()
    with Session(queue.store.engine) as session:
        waiting = list(
            session.scalars(
                select(ReviewItemRow.id)
                .where(ReviewItemRow.state.in_(ReviewState.OPEN))
                .where((ReviewItemRow.requested_at.is_(None)) | (ReviewItemRow.overdue_at.is_(None)))
                .order_by(ReviewItemRow.id)
            )
        )
    for item_id in waiting:
        with Session(queue.store.engine) as session, session.begin():
            item = session.get(ReviewItemRow, item_id, with_for_update=True)
            if item is None or item.state not in ReviewState.OPEN:
                continue
            name = Path(session.get(DocumentRow, item.document_id).source).name
            values = {"priority": item.priority, "due_at": item.due_at, "assigned_to": item.assigned_to}
            sent: dict[str, datetime] = {}
            if item.requested_at is None:
                values = _schedule(item, queue.doctypes, options)
                sent["requested_at"] = current
                add_event(session, REVIEW_REQUESTED, *_event_parts(item, values, name, review_url))
                report.requested.append(item.id)
            if item.overdue_at is None and values["due_at"] is not None and values["due_at"] <= current:
                sent["overdue_at"] = current
                add_event(session, REVIEW_OVERDUE, *_event_parts(item, values, name, review_url))
                report.overdue.append(item.id)
            if sent:
                # A plain UPDATE outside the item's version: the sweep never races a reviewer's claim.
                session.execute(
                    update(ReviewItemRow)
                    .where(ReviewItemRow.id == item.id)
                    .values(**values, **sent)
                    .execution_options(synchronize_session=False)
                )
    report.delivery = deliver(queue.store.engine, post)
    return report


def _schedule(item: ReviewItemRow, doctypes: dict[str, DocType], options: ReviewOptions) -> dict[str, Any]:
    """An item's priority, due time and assignee from its type's review rule."""
    rule = options.rule_for(item.doc_type, schema_rule(doctypes.get(item.doc_type or "")))
    limit = rule.time_limit_minutes if rule else None
    return {
        "priority": rule.priority if rule else 0,
        "due_at": item.created_at + timedelta(minutes=limit) if limit else None,
        "assigned_to": item.assigned_to or (rule.assign_to if rule else None),
    }


def _event_parts(item: ReviewItemRow, values: dict[str, Any], name: str, review_url: str | None):
    resource = {"prefect.resource.id": f"ocrflow.review-item.{item.id}", "prefect.resource.name": name}
    payload = {
        "item": item.id,
        "document_id": item.document_id,
        "doc_type": item.doc_type,
        "reasons": sorted({r.get("code", "") for r in item.reasons}),
        "priority": values["priority"],
        "due_at": values["due_at"].isoformat() if values["due_at"] else None,
        "assigned_to": values["assigned_to"],
    }
    if review_url:
        payload["review_url"] = f"{review_url.rstrip('/')}/items/{item.id}"
    related = [
        {"prefect.resource.id": f"ocrflow.document.{item.document_id}", "prefect.resource.role": "document"}
    ]
    return resource, payload, related


# --- health ------------------------------------------------------------------------------


@dataclass
class FieldBands:
    """How often reviewers kept a field's machine value, by the confidence it was read with."""

    right: Counter = field(default_factory=Counter)
    total: Counter = field(default_factory=Counter)

    def suggested_threshold(self) -> float | None:
        """The lowest band bottom above which the field was right at least ``TARGET_ACCURACY``."""
        suggestion = None
        for low in reversed(CONFIDENCE_BANDS[:-1]):
            right = sum(self.right[b] for b in CONFIDENCE_BANDS[:-1] if b >= low)
            total = sum(self.total[b] for b in CONFIDENCE_BANDS[:-1] if b >= low)
            if total >= MIN_SAMPLES and right / total >= TARGET_ACCURACY:
                suggestion = low
            elif total >= MIN_SAMPLES:
                break
        return suggestion


@dataclass
class QueueHealth:
    at: datetime
    waiting: dict[str, Counter] = field(default_factory=dict)
    """Open items by document type, then by how long they have waited."""
    overdue: int = 0
    decisions_last_hour: int = 0
    decisions_per_hour: float = 0.0
    """Over the window (default the last 24 hours)."""
    handling_minutes: list[float] = field(default_factory=list)
    """From the last claim to the decision, for each decision in the window."""
    audit_agreed: int = 0
    audit_decided: int = 0
    fields: dict[str, dict[str, FieldBands]] = field(default_factory=dict)
    """By document type and field: reviewers' verdicts on the machine's value, by confidence band."""

    @property
    def audit_agreement(self) -> float | None:
        return self.audit_agreed / self.audit_decided if self.audit_decided else None

    def handling(self) -> tuple[float, float] | None:
        """Median and 90th percentile of the handling time, in minutes."""
        if not self.handling_minutes:
            return None
        ordered = sorted(self.handling_minutes)
        return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def band_labels() -> list[str]:
    """``0-0.5``, ``0.5-0.7``, ... ``0.95-1``: the confidence bands as people read them."""
    return [f"{low:g}-{high:g}" for low, high in zip(CONFIDENCE_BANDS, CONFIDENCE_BANDS[1:], strict=False)]


def band_of(confidence: float) -> float:
    return max(b for b in CONFIDENCE_BANDS[:-1] if confidence >= b) if confidence >= 0 else 0.0


def queue_health(queue: ReviewQueue, window: timedelta = timedelta(days=1)) -> QueueHealth:
    """Waiting by type and age, throughput, handling time, audit agreement, accuracy by confidence."""
    current = queue.clock()
    health = QueueHealth(at=current)
    items = queue.items(states=ReviewState.ALL)
    unconfirmed = queue.unconfirmed_overrides()
    for item in items:
        if item.state in ReviewState.OPEN:
            bucket = next(
                (label for limit, label in AGE_BUCKETS if current - item.created_at < limit), OLDEST_BUCKET
            )
            health.waiting.setdefault(item.doc_type or "unknown", Counter())[bucket] += 1
            health.overdue += item.due_at is not None and item.due_at <= current
            continue
        if item.state not in ReviewState.DECIDED or item.decided_at is None:
            continue
        if current - item.decided_at <= window:
            health.decisions_last_hour += current - item.decided_at <= timedelta(hours=1)
        if any(r.get("code") == AUDIT_SAMPLE for r in item.reasons) and item.state != ReviewState.REJECTED:
            health.audit_decided += 1
            health.audit_agreed += item.state == ReviewState.APPROVED
        if item.final_values is None or item.state == ReviewState.REJECTED:
            continue
        bands = health.fields.setdefault(item.doc_type or "unknown", {})
        confidences = item.extracted_confidence or {}
        for name, read in (item.extracted_values or {}).items():
            if name in unconfirmed.get(item.id, ()) or name not in confidences or read in (None, ""):
                continue
            band = band_of(float(confidences[name]))
            verdict = bands.setdefault(name, FieldBands())
            verdict.total[band] += 1
            verdict.right[band] += str(read).strip() == str(item.final_values.get(name) or "").strip()
    in_window = [i for i in items if i.decided_at is not None and current - i.decided_at <= window]
    health.decisions_per_hour = len(in_window) / (window.total_seconds() / 3600)
    health.handling_minutes = _handling_minutes(queue, in_window)
    return health


def _handling_minutes(queue: ReviewQueue, decided: list[ReviewItemRow]) -> list[float]:
    if not decided:
        return []
    ids = [item.id for item in decided]
    last_claim: dict[int, datetime] = {}
    with Session(queue.store.engine) as session:
        rows = session.execute(
            select(ReviewEventRow.item_id, ReviewEventRow.action, ReviewEventRow.at)
            .where(ReviewEventRow.item_id.in_(ids))
            .order_by(ReviewEventRow.id)
        ).all()
    spans: list[float] = []
    for item_id, action, at in rows:
        if action in ("claimed", "reopened"):
            last_claim[item_id] = at
        elif action in ReviewState.DECIDED and item_id in last_claim:
            spans.append((at - last_claim.pop(item_id)).total_seconds() / 60)
    return spans


def health_markdown(health: QueueHealth) -> str:
    """The queue's health as markdown, for the Prefect artifact (the review app has its own page)."""
    buckets = [label for _, label in AGE_BUCKETS] + [OLDEST_BUCKET]
    lines = [f"# Review queue health ({health.at:%Y-%m-%d %H:%M} UTC)", "", "## Waiting", ""]
    if health.waiting:
        lines += ["| type | " + " | ".join(buckets) + " | all |", "|---|" + "---|" * (len(buckets) + 1)]
        for doc_type, counts in sorted(health.waiting.items()):
            cells = " | ".join(str(counts.get(b, 0)) for b in buckets)
            lines.append(f"| {doc_type} | {cells} | {sum(counts.values())} |")
    else:
        lines.append("Nothing is waiting.")
    handling = health.handling()
    agreement = health.audit_agreement
    lines += [
        "",
        f"- overdue: {health.overdue}",
        f"- decisions: {health.decisions_last_hour} in the last hour, "
        f"{health.decisions_per_hour:.1f} an hour over 24 h",
        "- handling time per item: "
        + (f"median {handling[0]:.1f} min, 90th percentile {handling[1]:.1f} min" if handling else "-"),
        "- audit sample agreement: "
        + (
            f"{100 * agreement:.0f}% of {health.audit_decided}"
            if agreement is not None
            else "no audited item decided"
        ),
        "",
        "## Accuracy of the machine's values by confidence, from reviewers' decisions",
        "",
        f"Suggested threshold: the lowest confidence above which a field was right at least "
        f"{100 * TARGET_ACCURACY:g}% of the time (with {MIN_SAMPLES}+ decided fields).",
        "",
    ]
    bands = CONFIDENCE_BANDS[:-1]
    lines += ["| type | field | " + " | ".join(band_labels()) + " | suggested |"]
    lines += ["|---|---|" + "---|" * (len(bands) + 1)]
    for doc_type, fields in sorted(health.fields.items()):
        for name, verdict in sorted(fields.items()):
            cells = " | ".join(
                f"{100 * verdict.right[b] / verdict.total[b]:.0f}% of {verdict.total[b]}"
                if verdict.total[b]
                else "-"
                for b in bands
            )
            suggestion = verdict.suggested_threshold()
            lines.append(
                f"| {doc_type} | {name} | {cells} | {'-' if suggestion is None else f'{suggestion:g}'} |"
            )
    return "\n".join(lines) + "\n"


def waiting_rows(health: QueueHealth) -> list[dict[str, Any]]:
    """The waiting table for the health page."""
    buckets = [label for _, label in AGE_BUCKETS] + [OLDEST_BUCKET]
    return [
        {"type": doc_type, "cells": [counts.get(b, 0) for b in buckets], "all": sum(counts.values())}
        for doc_type, counts in sorted(health.waiting.items())
    ]


__all__ = [
    "REVIEW_OVERDUE",
    "REVIEW_REQUESTED",
    "QueueHealth",
    "SweepReport",
    "health_markdown",
    "queue_health",
    "sweep",
]
