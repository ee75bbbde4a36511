"""Durable outcomes: one JSON file per document plus its database row and review item.

The JSON is written to a temporary file, flushed to disk and renamed into place, so
a reader never sees half a result; the database row and the review-queue item are
written in one transaction after it. A document is identified by the SHA-256 of its
bytes, so storing it again updates its row instead of adding a second one.

The tables are created and changed by the Alembic migrations in ``ocrflow/migrations``,
run when a store is opened; the classes here must match the newest migration (a test
compares them).
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from ocrflow.models import DocumentResult, Status


class Base(DeclarativeBase):
    pass


def now() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator):
    """A timezone-aware datetime on every backend (SQLite drops the zone; it is UTC here)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DocumentRow(Base):
    __tablename__ = "documents"

    document_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    doc_type: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    result_path: Mapped[str] = mapped_column(Text)
    engine: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now, onupdate=now)


class ReviewState:
    """The states of a review item; only pending and claimed are open."""

    PENDING = "pending"
    CLAIMED = "claimed"
    APPROVED = "approved"
    CORRECTED = "corrected"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    """Reprocessing accepted the document before anyone reviewed it."""

    OPEN = (PENDING, CLAIMED)
    DECIDED = (APPROVED, CORRECTED, REJECTED)
    ALL = (PENDING, CLAIMED, APPROVED, CORRECTED, REJECTED, WITHDRAWN)


class ReviewItemRow(Base):
    """One document waiting for (or given) a person's decision.

    ``version`` goes up with every change; every write compares it, so two reviewers
    can never both change an item from the same state (no lost update).
    """

    __tablename__ = "review_items"
    __table_args__ = (Index("ix_review_items_queue_order", "state", "priority", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.document_id"), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=ReviewState.PENDING, index=True)
    doc_type: Mapped[str | None] = mapped_column(String(64))
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now, onupdate=now)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    engine: Mapped[str | None] = mapped_column(String(64))
    extracted_values: Mapped[dict | None] = mapped_column(JSON)
    """The values as the engine read them when the item was queued."""
    final_values: Mapped[dict | None] = mapped_column(JSON)
    """The values a reviewer approved or typed: ground truth for ``ocrflow eval --from-reviews``."""
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Higher first; from the type's review rule when queued, or set by a person."""
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """When the item becomes overdue (queued + the type's ``time_limit_minutes``)."""
    assigned_to: Mapped[str | None] = mapped_column(String(128))
    """A reviewer's name, or ``group:NAME``; they see it first. Anyone may still take it."""
    requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """When ``ocrflow.review.requested`` was sent for the item's current wait."""
    overdue_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """When ``ocrflow.review.overdue`` was sent for the item's current wait."""
    extracted_confidence: Mapped[dict | None] = mapped_column(JSON)
    """Each field's confidence as read, beside ``extracted_values``: accuracy by confidence band."""

    # SQLAlchemy adds "AND version = <as read>" to every UPDATE and raises StaleDataError
    # when another writer got there first.
    __mapper_args__ = {"version_id_col": version}


class ReviewEventRow(Base):
    """The audit trail: who changed an item, when, and its state before and after."""

    __tablename__ = "review_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)


class ReviewerRow(Base):
    __tablename__ = "reviewers"

    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """Set by ``ocrflow review remove-user``: the row stays, since audit events name the reviewer."""
    groups: Mapped[list] = mapped_column(JSON, default=list, server_default="[]")
    """The groups the reviewer belongs to (items assigned to ``group:NAME`` come first for them)."""


class SessionRow(Base):
    """A signed-in browser; the cookie holds a random token, the table only its SHA-256."""

    __tablename__ = "review_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("reviewers.username", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SignInFailureRow(Base):
    """Recent failed sign-ins for one user name or client address (``key``), for throttling.

    In the database rather than in memory, so every app process serving the queue sees the same count.
    """

    __tablename__ = "sign_in_failures"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    first_failed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)


def snapshot(item: ReviewItemRow) -> dict[str, Any]:
    """The part of an item an audit event records before and after a change."""
    return {
        "state": item.state,
        "version": item.version,
        "claimed_by": item.claimed_by,
        "lease_expires_at": item.lease_expires_at.isoformat() if item.lease_expires_at else None,
        "decided_by": item.decided_by,
        "final_values": item.final_values,
    }


def write_json_atomically(path: Path, payload: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename itself is durable only once the folder's entry is on disk.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def open_database(database_url: str) -> Engine:
    """An engine for ``database_url`` with the schema migrated to the newest revision."""
    from ocrflow.migrations import upgrade

    if database_url.startswith("sqlite"):
        _create_private_sqlite_file(database_url)
        engine = create_engine(database_url, connect_args={"timeout": 60})
        _serialize_sqlite_writers(engine)
    else:
        engine = create_engine(database_url, pool_size=10, max_overflow=20)
    upgrade(engine)
    return engine


def _create_private_sqlite_file(database_url: str) -> None:
    # The database holds full ID and card numbers, password hashes and session tokens, so only
    # its owner may read it, like the result files. SQLite would create it with the umask (often
    # 644); created here first, it stays 600, and SQLite gives its -wal and -shm files its mode.
    name = make_url(database_url).database
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    with suppress(FileExistsError, FileNotFoundError):  # a missing folder is SQLite's to report
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _serialize_sqlite_writers(engine: Engine) -> None:
    # pysqlite starts a transaction lazily as a reader and upgrades it to a writer at the first
    # change; two such upgrades at once fail with "database is locked" without waiting.
    # BEGIN IMMEDIATE takes the write lock up front, so writers queue (up to the timeout).
    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        # Write-ahead logging: a commit is one append and one fsync, not a rollback journal's three.
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class ResultStore:
    """Results on disk and in any SQLAlchemy database (SQLite by default)."""

    def __init__(self, out_dir: Path, database_url: str) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = open_database(database_url)

    def result_path(self, document_id: str) -> Path:
        return self.out_dir / f"{document_id}.json"

    def save(self, result: DocumentResult, *, actor: str = "pipeline") -> Path:
        """Write the result file, then its row (and review item) in one transaction."""
        path = self.write_result(result)
        with Session(self.engine) as session, session.begin():
            self.record(session, result, path)
            self._queue(session, result, actor)
        return path

    def write_result(self, result: DocumentResult) -> Path:
        path = self.result_path(result.document_id)
        write_json_atomically(path, result.model_dump_json(indent=2))
        return path

    def record(self, session: Session, result: DocumentResult, path: Path) -> DocumentRow:
        """Insert or update the document's row inside the caller's transaction."""
        row = session.get(DocumentRow, result.document_id)
        if row is None:
            row = DocumentRow(document_id=result.document_id)
            session.add(row)
        row.source = result.source
        row.doc_type = result.doc_type
        row.status = result.status.value
        row.reasons = [r.model_dump(mode="json") for r in result.reasons]
        row.result_path = str(path)
        row.engine = result.engine
        session.flush()
        return row

    def _queue(self, session: Session, result: DocumentResult, actor: str) -> None:
        """Open, refresh or withdraw the document's review item, with an audit event."""
        item = session.scalars(
            select(ReviewItemRow).where(ReviewItemRow.document_id == result.document_id).with_for_update()
        ).one_or_none()
        reasons = [r.model_dump(mode="json") for r in result.reasons]
        if result.status is Status.NEEDS_REVIEW:
            before = snapshot(item) if item is not None else None
            if item is None:
                item = ReviewItemRow(document_id=result.document_id)
                session.add(item)
            item.doc_type = result.doc_type
            item.reasons = reasons
            item.engine = result.engine
            item.extracted_values = {name: field.value for name, field in result.fields.items()}
            item.extracted_confidence = {name: field.confidence for name, field in result.fields.items()}
            # A claimed item keeps its reviewer and lease; they see the refreshed reading.
            if item.state != ReviewState.CLAIMED:
                item.requested_at = item.overdue_at = item.due_at = None  # a new wait: announced again
                item.state = ReviewState.PENDING
                item.claimed_by = item.lease_expires_at = None
                item.decided_by = item.decided_at = None
                item.final_values = None
            session.flush()
            action = "queued" if before is None else "requeued"
            session.add(
                ReviewEventRow(
                    item_id=item.id, action=action, actor=actor, before=before, after=snapshot(item)
                )
            )
        elif item is not None and item.state in ReviewState.OPEN:
            before = snapshot(item)
            item.state = ReviewState.WITHDRAWN
            item.claimed_by = item.lease_expires_at = None
            session.flush()
            session.add(
                ReviewEventRow(
                    item_id=item.id, action="withdrawn", actor=actor, before=before, after=snapshot(item)
                )
            )

    def status_of(self, document_id: str) -> Status | None:
        with Session(self.engine) as session:
            row = session.get(DocumentRow, document_id)
            return Status(row.status) if row else None

    def load(self, document_id: str) -> DocumentResult | None:
        path = self.result_path(document_id)
        if not path.exists():
            with Session(self.engine) as session:
                row = session.get(DocumentRow, document_id)
                if row is None:
                    return None
                path = Path(row.result_path)
        return DocumentResult.model_validate(json.loads(path.read_text(encoding="utf-8")))

    def sources(self, document_ids: list[str]) -> dict[str, str]:
        """The source path of each document, by id, in one query."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(DocumentRow.document_id, DocumentRow.source).where(
                    DocumentRow.document_id.in_(document_ids)
                )
            ).all()
        return dict(rows)

    def load_in(self, session: Session, document_id: str) -> DocumentResult | None:
        """Like :meth:`load`, inside the caller's transaction."""
        row = session.get(DocumentRow, document_id)
        path = self.result_path(document_id)
        if not path.exists() and row is not None:
            path = Path(row.result_path)
        if not path.exists():
            return None
        return DocumentResult.model_validate(json.loads(path.read_text(encoding="utf-8")))

    def find(self, prefix: str) -> str | None:
        """The one document id starting with ``prefix`` (ids are long; people type a few characters)."""
        with Session(self.engine) as session:
            ids = session.scalars(
                select(DocumentRow.document_id).where(DocumentRow.document_id.startswith(prefix)).limit(2)
            ).all()
        return ids[0] if len(ids) == 1 else None

    def review_items(self, state: str | None = ReviewState.PENDING) -> list[ReviewItemRow]:
        with Session(self.engine) as session:
            query = select(ReviewItemRow).order_by(ReviewItemRow.created_at, ReviewItemRow.id)
            if state:
                query = query.where(ReviewItemRow.state == state)
            return list(session.scalars(query).all())

    def counts(self) -> dict[str, int]:
        with Session(self.engine) as session:
            rows = session.execute(select(DocumentRow.status)).scalars().all()
        return {status.value: sum(1 for r in rows if r == status.value) for status in Status}
