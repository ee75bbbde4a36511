"""The review queue: claims with leases, decisions, and an audit event for every change.

States::

    pending ──claim──> claimed ──approve / correct / reject──> approved | corrected | rejected
       ^                  │
       └──release─────────┘   (or the lease runs out: anyone may claim it again)

Two reviewers never hold one item: a claim is an UPDATE guarded by the item's version
(and on PostgreSQL a row lock taken with SKIP LOCKED, so claimers pass each other by), and
a decision needs the caller's own unexpired lease. An item is decided exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from ocrflow.doctypes import DocType
from ocrflow.errors import ClaimConflict, InvalidDecision, ItemNotFound, ReviewError
from ocrflow.models import DocumentResult
from ocrflow.outbox import deliver
from ocrflow.review.decisions import (
    Decision,
    changed_fields,
    decision_for,
    final_result,
    invalid_fields,
    normalize_values,
    read_again_as,
    reopened_result,
    with_new_reading,
    with_overrides,
)
from ocrflow.review.events import REVIEW_COMPLETED, review_completed
from ocrflow.store import ResultStore, ReviewerRow, ReviewEventRow, ReviewItemRow, ReviewState, now, snapshot

logger = logging.getLogger(__name__)

MIN_ID_PREFIX = 4
"""Characters of a document id that may name its item (fewer would match too much)."""
MAX_ITEM_ID = 2**31 - 1
"""Item numbers are 32-bit on PostgreSQL; a larger number names no item."""


@dataclass(frozen=True)
class Claim:
    item_id: int
    document_id: str
    reviewer: str
    expires_at: datetime


@dataclass(frozen=True)
class Outcome:
    """A stored decision: the final result, where it was written, whether Prefect has its event yet."""

    item_id: int
    decision: Decision
    result: DocumentResult
    result_path: Path
    event_sent: bool


class ReviewQueue:
    def __init__(
        self,
        store: ResultStore,
        doctypes: dict[str, DocType],
        *,
        lease_seconds: int = 900,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self.store = store
        self.doctypes = doctypes
        self.lease = timedelta(seconds=lease_seconds)
        self.clock = clock

    # --- reading -------------------------------------------------------------------------

    def items(
        self,
        *,
        states: tuple[str, ...] = ReviewState.OPEN,
        doc_type: str | None = None,
        reason: str | None = None,
        older_than: timedelta | None = None,
        newer_than: timedelta | None = None,
        reviewer: str | None = None,
    ) -> list[ReviewItemRow]:
        """Items in queue order (see :meth:`queue_order`), filtered by state, type, reason code and age."""
        query = select(ReviewItemRow).order_by(*self.queue_order(reviewer))
        if states:
            query = query.where(ReviewItemRow.state.in_(states))
        if doc_type:
            query = query.where(ReviewItemRow.doc_type == doc_type)
        current = self.clock()
        if older_than is not None:
            query = query.where(ReviewItemRow.created_at <= current - older_than)
        if newer_than is not None:
            query = query.where(ReviewItemRow.created_at >= current - newer_than)
        with Session(self.store.engine) as session:
            rows = list(session.scalars(query).all())
        if reason:
            # Reasons are a JSON list; filtering here keeps the query the same on every backend.
            rows = [row for row in rows if any(r.get("code") == reason for r in row.reasons)]
        return rows

    def queue_order(self, reviewer: str | None = None) -> list[Any]:
        """The order items are offered in: a reviewer's own first, then by priority, due time, age.

        Own means assigned to ``reviewer`` or to a group of theirs; items without a due time
        come after those with one.
        """
        keys: list[Any] = []
        if reviewer:
            mine = [reviewer, *(f"group:{g}" for g in self.groups_of(reviewer))]
            keys.append(case((ReviewItemRow.assigned_to.in_(mine), 0), else_=1))
        return [
            *keys,
            ReviewItemRow.priority.desc(),
            ReviewItemRow.due_at.is_(None),
            ReviewItemRow.due_at,
            ReviewItemRow.created_at,
            ReviewItemRow.id,
        ]

    def groups_of(self, reviewer: str) -> list[str]:
        with Session(self.store.engine) as session:
            row = session.get(ReviewerRow, reviewer)
        return list(row.groups or []) if row is not None else []

    def facets(self) -> tuple[list[str], list[str]]:
        """Every document type and reason code in the queue, for the list's filters."""
        with Session(self.store.engine) as session:
            rows = session.execute(select(ReviewItemRow.doc_type, ReviewItemRow.reasons)).all()
        types = sorted({doc_type for doc_type, _ in rows if doc_type})
        reasons = sorted({r.get("code", "") for _, found in rows for r in found})
        return types, reasons

    def get(self, item_id: int) -> ReviewItemRow:
        if not 1 <= item_id <= MAX_ITEM_ID:
            raise ItemNotFound(f"there is no review item {item_id}")
        with Session(self.store.engine) as session:
            item = session.get(ReviewItemRow, item_id)
        if item is None:
            raise ItemNotFound(f"there is no review item {item_id}")
        return item

    def for_document(self, document_id: str) -> ReviewItemRow:
        """The review item of one document (by its full id)."""
        with Session(self.store.engine) as session:
            item = session.scalars(
                select(ReviewItemRow).where(ReviewItemRow.document_id == document_id)
            ).one_or_none()
        if item is None:
            raise ItemNotFound(f"document {document_id[:12]} has no review item")
        return item

    def find(self, ref: str) -> ReviewItemRow:
        """An item by its number (``12`` or ``#12``) or by its document id's first characters.

        Never a guess between the two: an all-digit ``ref`` that is both an item's number and
        the start of another item's document id is refused, and the message says how to say
        which (``#12`` for the item, more characters for the document).
        """
        text = ref.strip()
        if text.startswith("#"):
            number = item_number(text[1:])
            if number is None:
                raise ItemNotFound(f"{ref!r} is not an item number")
            return self.get(number)
        number = item_number(text)
        by_number = None
        if number is not None:
            try:
                by_number = self.get(number)
            except ItemNotFound:
                pass
        prefix = text.lower()
        by_document: list[ReviewItemRow] = []
        if len(prefix) >= MIN_ID_PREFIX and all(c in "0123456789abcdef" for c in prefix):
            with Session(self.store.engine) as session:
                by_document = list(
                    session.scalars(
                        select(ReviewItemRow).where(ReviewItemRow.document_id.startswith(prefix)).limit(2)
                    )
                )
        if by_number is not None and by_document and by_document[0].id != by_number.id:
            raise ItemNotFound(
                f"{text} is item {by_number.id} and also the start of document "
                f"{by_document[0].document_id[:12]} (item {by_document[0].id}); "
                f"write #{by_number.id} for the item, or more of the document id",
                code="ambiguous",
            )
        if by_number is not None:
            return by_number
        if len(by_document) == 1:
            return by_document[0]
        if len(by_document) > 1:
            raise ItemNotFound(
                f"several documents start with {text}; give more of the document id", code="ambiguous"
            )
        if number is not None:
            raise ItemNotFound(f"there is no review item {number}; 'ocrflow review list' shows them")
        raise ItemNotFound(f"no review item matches {ref!r}; 'ocrflow review list' shows them")

    def events(self, item_id: int) -> list[ReviewEventRow]:
        with Session(self.store.engine) as session:
            query = select(ReviewEventRow).where(ReviewEventRow.item_id == item_id)
            return list(session.scalars(query.order_by(ReviewEventRow.id)).all())

    def is_held_by(self, item: ReviewItemRow, reviewer: str) -> bool:
        return (
            item.state == ReviewState.CLAIMED
            and item.claimed_by == reviewer
            and item.lease_expires_at is not None
            and item.lease_expires_at > self.clock()
        )

    # --- claims --------------------------------------------------------------------------

    def claim(
        self, reviewer: str, item_id: int | None = None, *, doc_type: str | None = None
    ) -> Claim | None:
        """Claim ``item_id``, or the oldest free item; ``None`` when nothing is free.

        Claiming an item one already holds renews the lease. Raises :class:`ClaimConflict`
        when ``item_id`` is held by someone else or decided.
        """
        for _ in range(50):
            current = self.clock()
            free = or_(
                ReviewItemRow.state == ReviewState.PENDING,
                and_(ReviewItemRow.state == ReviewState.CLAIMED, ReviewItemRow.lease_expires_at <= current),
            )
            if item_id is not None:
                free = or_(
                    free,
                    and_(ReviewItemRow.state == ReviewState.CLAIMED, ReviewItemRow.claimed_by == reviewer),
                )
                query = select(ReviewItemRow).where(ReviewItemRow.id == item_id)
            else:
                query = select(ReviewItemRow).where(free).order_by(*self.queue_order(reviewer))
                if doc_type:
                    query = query.where(ReviewItemRow.doc_type == doc_type)
            try:
                with Session(self.store.engine) as session, session.begin():
                    item = session.scalars(
                        query.limit(1).with_for_update(skip_locked=item_id is None)
                    ).first()
                    if item is None:
                        if item_id is not None:
                            raise ItemNotFound(f"there is no review item {item_id}")
                        return None
                    if (
                        item_id is not None
                        and not session.scalars(
                            select(ReviewItemRow.id).where(ReviewItemRow.id == item_id, free)
                        ).first()
                    ):
                        raise ClaimConflict(_held_message(item, current))
                    before = snapshot(item)
                    action = (
                        "renewed"
                        if item.claimed_by == reviewer and item.state == ReviewState.CLAIMED
                        else "claimed"
                    )
                    item.state = ReviewState.CLAIMED
                    item.claimed_by = reviewer
                    item.lease_expires_at = current + self.lease
                    session.flush()
                    session.add(self._event(item, action, reviewer, before))
                    return Claim(item.id, item.document_id, reviewer, item.lease_expires_at)
            except StaleDataError:
                continue  # another reviewer changed it between our read and write: look again
        raise ClaimConflict("the queue is too busy to claim an item; try again")

    def release(self, item_id: int, reviewer: str) -> None:
        """Give a claimed item back to the queue."""
        with Session(self.store.engine) as session, session.begin():
            item = session.get(ReviewItemRow, item_id, with_for_update=True)
            if item is None:
                raise ItemNotFound(f"there is no review item {item_id}")
            if not self.is_held_by(item, reviewer):
                raise ClaimConflict(f"item {item_id} is not held by {reviewer}")
            before = snapshot(item)
            item.state = ReviewState.PENDING
            item.claimed_by = item.lease_expires_at = None
            session.flush()
            session.add(self._event(item, "released", reviewer, before))

    # --- scheduling ----------------------------------------------------------------------

    def schedule(
        self, item_id: int, *, priority: int, due_at: datetime | None, assigned_to: str | None
    ) -> ReviewItemRow:
        """Set an item's priority, due time and assignee (the sweep does, from the type's rule).

        A plain UPDATE outside the item's version: it never races a reviewer's claim.
        """
        with Session(self.store.engine) as session, session.begin():
            session.execute(
                update(ReviewItemRow)
                .where(ReviewItemRow.id == item_id)
                .values(priority=priority, due_at=due_at, assigned_to=assigned_to)
                .execution_options(synchronize_session=False)
            )
        return self.get(item_id)

    def mark_sent(self, item_id: int, **sent_at: datetime) -> None:
        """Record that ``requested_at`` / ``overdue_at`` events went out for the item's wait."""
        with Session(self.store.engine) as session, session.begin():
            session.execute(
                update(ReviewItemRow)
                .where(ReviewItemRow.id == item_id)
                .values(**sent_at)
                .execution_options(synchronize_session=False)
            )

    def assign(
        self, item_id: int, actor: str, to: str | None, *, priority: int | None = None
    ) -> ReviewItemRow:
        """Assign an open item to a reviewer or ``group:NAME`` (None: to nobody); audited."""
        if to is not None and not to.strip():
            to = None
        with Session(self.store.engine) as session, session.begin():
            item = session.get(ReviewItemRow, item_id, with_for_update=True)
            if item is None:
                raise ItemNotFound(f"there is no review item {item_id}")
            if item.state not in ReviewState.OPEN:
                raise ClaimConflict(f"item {item_id} is {item.state}: only open items are assigned")
            before = snapshot(item)
            item.assigned_to = to.strip() if to else None
            if priority is not None:
                item.priority = priority
            session.flush()
            extra = {"assigned_to": item.assigned_to or "nobody", "priority": item.priority}
            session.add(self._event(item, "assigned", actor, before, **extra))
        return self.get(item_id)

    # --- decisions -----------------------------------------------------------------------

    def decide(
        self,
        item_id: int,
        reviewer: str,
        *,
        reject: bool = False,
        values: dict[str, Any] | None = None,
        note: str = "",
        override: bool = False,
    ) -> Outcome:
        """Approve (values unchanged), correct (some changed) or reject a held item.

        Values that fail validation block an approval or correction (:class:`InvalidDecision`)
        unless ``override`` is set with a ``note`` saying why: each such field is then marked
        overridden in the result and the audit event, and kept out of ground truth until
        another reviewer confirms it (:meth:`confirm`).

        The final result, its row, the item's state and the audit event are one change
        (:meth:`ResultStore.changing`): after a crash all of it is there or none of it. The
        Prefect event follows the commit.
        """
        note = note.strip()
        try:
            with self.store.changing(self.get(item_id).document_id) as session:
                item = self._held(session, item_id, reviewer)
                result = self._result_in(session, item)
                changes = {} if reject else changed_fields(result, normalize_values(values or {}))
                decision = decision_for(reject, changes)
                doctype = self.doctypes.get(result.doc_type or "")
                final = final_result(result, decision, changes, doctype, reviewer, note)
                invalid = invalid_fields(final, doctype) if decision is not Decision.REJECTED else {}
                if invalid and not override:
                    raise InvalidDecision(_invalid_message(invalid), invalid)
                if invalid and not note:
                    raise InvalidDecision("to keep invalid values, write a note saying why", invalid)
                if invalid:
                    final = with_overrides(final, invalid, reviewer, note)
                before = snapshot(item)
                item.state = decision.value
                item.decided_by = reviewer
                item.decided_at = self.clock()
                item.lease_expires_at = None
                if decision is not Decision.REJECTED:
                    item.final_values = {name: field.value for name, field in final.fields.items()}
                session.flush()
                overridden = {name: final.fields[name].value for name in invalid}
                session.add(
                    self._event(
                        item,
                        decision.value,
                        reviewer,
                        before,
                        note=note,
                        changes=changes,
                        overridden=overridden,
                    )
                )
                path = self.store.stage(session, final)
                review_completed(
                    session,
                    document_id=final.document_id,
                    source=final.source,
                    status=final.status.value,
                    decision=decision.value,
                    result_path=path,
                    reviewer=reviewer,
                )
        except StaleDataError:
            raise ClaimConflict(f"item {item_id} was changed by someone else; reload it") from None
        delivery = deliver(self.store.engine)
        sent = delivery.problem is None
        if not sent:
            logger.warning(
                "%s for %s not sent yet (%s); it waits in the outbox",
                REVIEW_COMPLETED,
                final.document_id[:12],
                delivery.problem,
            )
        return Outcome(item_id, decision, final, path, sent)

    def reopen(self, item_id: int, reviewer: str, reason: str, *, take_new_reading: bool = False) -> Claim:
        """Take a decided item back into review, held by ``reviewer``, to decide it again.

        The reason is required and goes into the audit trail and the document's reasons; the
        document is ``needs_review`` again and its decided values are the form's start. Its
        values are no ground truth until the item is decided again. ``take_new_reading``
        starts the form from the machine's newer reading (:attr:`DocumentResult.reread`,
        stored by re-processing) instead: the one way a machine's reading replaces a decision.
        """
        reason = reason.strip()
        if not reason:
            raise ReviewError("say why the decision is reopened (a reason is required)")
        try:
            with self.store.changing(self.get(item_id).document_id) as session:
                item = session.get(ReviewItemRow, item_id, with_for_update=True)
                if item.state not in ReviewState.DECIDED:
                    raise ClaimConflict(f"item {item_id} is {item.state}, not decided: nothing to reopen")
                result = self._result_in(session, item)
                if take_new_reading:
                    result = with_new_reading(result)
                before = snapshot(item)
                item.state = ReviewState.CLAIMED
                item.claimed_by = reviewer
                item.lease_expires_at = self.clock() + self.lease
                item.decided_by = item.decided_at = None
                item.final_values = None
                session.flush()
                session.add(
                    self._event(
                        item, "reopened", reviewer, before, note=reason, took_new_reading=take_new_reading
                    )
                )
                self.store.stage(session, reopened_result(result, reviewer, reason))
                return Claim(item.id, item.document_id, reviewer, item.lease_expires_at)
        except StaleDataError:
            raise ClaimConflict(f"item {item_id} was changed by someone else; reload it") from None

    def choose_type(
        self, item_id: int, reviewer: str, doc_type: str, *, min_confidence: float = 0.9
    ) -> DocumentResult:
        """Give a held item's document the type ``doc_type`` and extract its fields for it.

        The fields come from the stored reading (no new OCR, no cost); the item stays held
        and is reviewed as usual. What was extracted counts as the machine's reading.
        """
        doctype = self.doctypes.get(doc_type)
        if doctype is None:
            raise ReviewError(
                f"unknown document type {doc_type!r}; one of {', '.join(sorted(self.doctypes))}"
            )
        try:
            with self.store.changing(self.get(item_id).document_id) as session:
                item = self._held(session, item_id, reviewer)
                result = self._result_in(session, item)
                typed = read_again_as(result, doctype, min_confidence)
                before = snapshot(item)
                item.doc_type = doctype.name
                item.reasons = [r.model_dump(mode="json") for r in typed.reasons]
                item.extracted_values = {name: field.value for name, field in typed.fields.items()}
                item.extracted_confidence = {name: field.confidence for name, field in typed.fields.items()}
                session.flush()
                session.add(
                    self._event(
                        item,
                        "typed",
                        reviewer,
                        before,
                        doc_type=doctype.name,
                        was=result.doc_type or "unknown",
                    )
                )
                self.store.stage(session, typed)
        except StaleDataError:
            raise ClaimConflict(f"item {item_id} was changed by someone else; reload it") from None
        return typed

    def confirm(self, item_id: int, reviewer: str, note: str = "") -> list[str]:
        """A second reviewer confirms a decision's overridden values: they become ground truth.

        Returns the confirmed fields. The reviewer who overrode cannot confirm their own override.
        """
        with self.store.changing(self.get(item_id).document_id) as session:
            item = session.get(ReviewItemRow, item_id, with_for_update=True)
            result = self._result_in(session, item)
            waiting = [n for n, f in result.fields.items() if f.override and not f.override.confirmed_by]
            if item.state not in ReviewState.DECIDED or not waiting:
                raise ReviewError(f"item {item_id} has no overridden values waiting for confirmation")
            if any(result.fields[name].override.reviewer == reviewer for name in waiting):
                raise ReviewError("another reviewer must confirm an override, not the one who made it")
            fields = {name: field.model_copy(deep=True) for name, field in result.fields.items()}
            for name in waiting:
                fields[name].override.confirmed_by = reviewer
            before = snapshot(item)
            item.updated_at = self.clock()
            session.flush()
            session.add(
                self._event(item, "confirmed", reviewer, before, note=note.strip(), confirmed=waiting)
            )
            self.store.stage(session, result.model_copy(update={"fields": fields}))
        return waiting

    def unconfirmed_overrides(self) -> dict[int, set[str]]:
        """Fields kept by override and not yet confirmed, by item: not ground truth."""
        found: dict[int, set[str]] = {}
        with Session(self.store.engine) as session:
            events = session.scalars(
                select(ReviewEventRow)
                .where(ReviewEventRow.action.in_(("approved", "corrected", "reopened", "confirmed")))
                .order_by(ReviewEventRow.id)
            ).all()
        for event in events:
            after = event.after or {}
            if event.action == "confirmed" or event.action == "reopened":
                found.pop(event.item_id, None)
            elif after.get("overridden"):
                found[event.item_id] = set(after["overridden"])
            else:
                found.pop(event.item_id, None)
        return found

    # --- helpers -------------------------------------------------------------------------

    def _event(
        self, item: ReviewItemRow, action: str, actor: str, before: dict | None, **extra: Any
    ) -> ReviewEventRow:
        """An audit event at the queue's clock: what changed, who did it, the item before and after."""
        after = {**snapshot(item), **{k: v for k, v in extra.items() if v}}
        return ReviewEventRow(
            item_id=item.id, action=action, actor=actor, before=before, after=after, at=self.clock()
        )

    def _held(self, session: Session, item_id: int, reviewer: str) -> ReviewItemRow:
        """The item, locked, if ``reviewer`` holds it; else the error that says why not."""
        item = session.get(ReviewItemRow, item_id, with_for_update=True)
        if item is None:
            raise ItemNotFound(f"there is no review item {item_id}")
        if not self.is_held_by(item, reviewer):
            raise ClaimConflict(_decide_refusal(item, reviewer, self.clock()))
        return item

    def _result_in(self, session: Session, item: ReviewItemRow) -> DocumentResult:
        # Read through this transaction's session: a second connection would wait on the
        # SQLite write lock this one holds.
        result = self.store.load_in(session, item.document_id)
        if result is None:
            raise ItemNotFound(f"the result of document {item.document_id[:12]} is missing")
        return result


def _invalid_message(invalid: dict[str, list[str]]) -> str:
    listed = "; ".join(f"{name}: {', '.join(messages)}" for name, messages in invalid.items())
    return f"invalid values block the approval ({listed}); correct them, or override with a note"


def _held_message(item: ReviewItemRow, current: datetime) -> str:
    if item.state in ReviewState.DECIDED:
        return f"item {item.id} was {item.state} by {item.decided_by}"
    if item.state == ReviewState.CLAIMED:
        minutes = max(1, round((item.lease_expires_at - current).total_seconds() / 60))
        return f"item {item.id} is claimed by {item.claimed_by} for about {minutes} more minute(s)"
    return f"item {item.id} is {item.state}"


def _decide_refusal(item: ReviewItemRow, reviewer: str, current: datetime) -> str:
    if item.state == ReviewState.CLAIMED and item.claimed_by == reviewer:
        return f"your claim on item {item.id} ran out; claim it again"
    if item.state == ReviewState.PENDING:
        return f"item {item.id} is not claimed; claim it first"
    return _held_message(item, current)


def item_number(text: str) -> int | None:
    """An item number as typed (digits only), or None when it cannot name an item."""
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ITEM_ID else None


def waited(item: ReviewItemRow, current: datetime) -> timedelta:
    """How long an item waited for its decision: until now while open, until the decision after."""
    end = item.decided_at if item.decided_at is not None and item.state in ReviewState.DECIDED else current
    return max(end - item.created_at, timedelta(0))


def age_text(delta: timedelta) -> str:
    """``12 min``, ``5 h``, ``3 d``: a waiting time as people read it in a list."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"
