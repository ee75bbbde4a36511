"""Durable outcomes: one JSON file per document, its database row, review item and events.

The database is the source of truth and the result file is derived from it. Every change
to a document's result goes the same way, under a per-document lock (``<out>/.locks``):

1. *stage*: the new JSON is written and fsynced beside its final name, as
   ``.<id>.json.staged``; nobody reads it yet;
2. *commit*: one transaction writes the row (marked ``staged_sha256``), the review item,
   the audit event and any outbox event (:class:`OutboxRow`);
3. *publish*: the staged file is renamed into place and the mark cleared.

A crash before 2 leaves only a staged file no row marks: it is deleted (rolled back). A
crash after 2 leaves a marked row: the staged file is renamed (rolled forward). Opening a
store does this for every document (:meth:`ResultStore.reconcile`), and every write does
it for its own document first; readers take a marked row's staged file, so what they see
is always what was committed. A document is identified by the SHA-256 of its bytes, so
storing it again updates its row instead of adding a second one.

Runs claim a document before working on it (:meth:`ResultStore.claim`), so two runs over
the same folders never read one document twice; a claim whose process died, or whose lease
ran out, is taken over.

The tables are created and changed by the Alembic migrations in ``ocrflow/migrations``,
run when a store is opened; the classes here must match the newest migration (a test
compares them).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
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
    delete,
    event,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from ocrflow.crash import crash_point
from ocrflow.models import DocumentResult, FieldResult, Reread, Status

log = logging.getLogger(__name__)


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
    staged_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    """Set while the committed result waits in ``.<id>.json.staged`` to be renamed into place."""


class DocumentClaimRow(Base):
    """A run working on a document; other runs leave it alone until the claim is released or stale."""

    __tablename__ = "document_claims"

    document_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    """``<host>:<pid>`` of the claiming process."""
    claimed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OutboxRow(Base):
    """A Prefect event, written in the transaction of the change it reports and sent later.

    ``event_id`` is the event's id at Prefect, fixed when it is written: the server stores an
    id once, so a delivery repeated after a crash is not a second event.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    event: Mapped[str] = mapped_column(String(64))
    resource: Mapped[dict] = mapped_column(JSON)
    payload: Mapped[dict] = mapped_column(JSON)
    related: Mapped[list] = mapped_column(JSON)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)


def add_event(
    session: Session,
    event: str,
    resource: dict[str, str],
    payload: dict[str, Any],
    related: list[dict[str, str]] | None = None,
) -> OutboxRow:
    """Put an event in the outbox inside the caller's transaction: it is sent if and only if that commits."""
    row = OutboxRow(
        event_id=str(uuid.uuid4()),
        event=event,
        resource=resource,
        payload=payload,
        related=related or [],
        occurred_at=now(),
    )
    session.add(row)
    return row


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


OnQueued = Callable[[Session, ReviewItemRow, DocumentResult], None]
"""Runs in the transaction that puts a document in the queue for a new wait."""


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


def _write_ahead_logging(dbapi_connection, patience: float = 60.0) -> None:
    """Put the database in WAL mode: a commit is one append and one fsync, not a rollback journal's three.

    The mode is kept in the file, so this is a read once a database has it. Switching needs
    the database to itself, and SQLite refuses at once (no busy wait) while another process
    opens it, as runs started together do: try again for up to ``patience`` seconds.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            if dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                dbapi_connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _serialize_sqlite_writers(engine: Engine) -> None:
    # pysqlite starts a transaction lazily as a reader and upgrades it to a writer at the first
    # change; two such upgrades at once fail with "database is locked" without waiting.
    # BEGIN IMMEDIATE takes the write lock up front, so writers queue (up to the timeout).
    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        _write_ahead_logging(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class DocumentLocks:
    """One writer at a time per document, across threads and processes on this machine.

    ``flock`` on one of 256 files in ``<out>/.locks`` (by the id's first two characters);
    the kernel drops a dead process's locks, so a crash never leaves one held.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def hold(self, document_id: str, *, wait: bool = True) -> Iterator[bool]:
        """Hold the document's lock; yields False at once instead of waiting when ``wait`` is off."""
        fd = os.open(self.folder / f"{document_id[:2]}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing drops the lock


CLAIM_LEASE = timedelta(minutes=30)
"""How long a run's claim on a document holds without the run finishing it (a process on another
machine cannot be checked for life)."""

MACHINERY_CODES = frozenset({"internal_error"})
"""Reason codes that say the machinery failed, not that anything is wrong with the document."""


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_is_gone(owner: str) -> bool:
    """Whether the process named by ``owner`` is known to be dead (only on this machine)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ResultStore:
    """Results on disk and in any SQLAlchemy database (SQLite by default); see the module's docstring."""

    def __init__(self, out_dir: Path, database_url: str) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = open_database(database_url)
        self.locks = DocumentLocks(self.out_dir / ".locks")
        self.reconcile()

    def result_path(self, document_id: str) -> Path:
        return self.out_dir / f"{document_id}.json"

    # --- the write path ------------------------------------------------------------------

    @contextmanager
    def changing(self, document_id: str) -> Iterator[Session]:
        """A transaction that may change ``document_id``'s result (:meth:`stage`), published after commit.

        Holds the document's lock from before the transaction until the file is in place;
        nothing may take the lock inside a transaction, so the two never wait on each other.
        """
        with self.locks.hold(document_id):
            self._settle(document_id)
            try:
                with Session(self.engine) as session, session.begin():
                    yield session
            except BaseException:
                self.staged_path(document_id).unlink(missing_ok=True)  # rolled back
                raise
            crash_point("committed")
            self._settle(document_id)

    def stage(self, session: Session, result: DocumentResult) -> Path:
        """Make ``result`` the document's result in ``session`` (inside :meth:`changing`).

        The file is written and fsynced under its staged name; the row names it, so the
        commit decides whether it becomes the result.
        """
        payload = result.model_dump_json(indent=2).encode("utf-8")
        staged = self.staged_path(result.document_id)
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_folder(self.out_dir)
        path = self.result_path(result.document_id)
        row = self.record(session, result, path)
        row.staged_sha256 = hashlib.sha256(payload).hexdigest()
        session.flush()
        crash_point("staged")
        return path

    def staged_path(self, document_id: str) -> Path:
        return self.out_dir / f".{document_id}.json.staged"

    def _settle(self, document_id: str) -> None:
        """Finish or roll back an interrupted write of ``document_id`` (its lock held)."""
        with Session(self.engine) as session:
            sha = session.scalar(
                select(DocumentRow.staged_sha256).where(DocumentRow.document_id == document_id)
            )
        staged, path = self.staged_path(document_id), self.result_path(document_id)
        if sha is None:
            staged.unlink(missing_ok=True)  # never committed
            return
        if sha256_of(staged) == sha:
            os.replace(staged, path)
            _fsync_folder(self.out_dir)
            crash_point("renamed")
        elif sha256_of(path) != sha:
            log.error("the committed result of %s is missing; run the document again", document_id[:12])
            return
        else:
            staged.unlink(missing_ok=True)
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(DocumentRow)
                .where(DocumentRow.document_id == document_id, DocumentRow.staged_sha256 == sha)
                .values(staged_sha256=None, updated_at=DocumentRow.updated_at)
                .execution_options(synchronize_session=False)
            )

    def reconcile(self) -> list[str]:
        """Finish or roll back every write a crash interrupted; the documents settled.

        Documents another process is writing right now are left to it.
        """
        with Session(self.engine) as session:
            marked = session.scalars(
                select(DocumentRow.document_id).where(DocumentRow.staged_sha256.is_not(None))
            ).all()
        # Another output folder may share the database: its documents are settled from there.
        ours = [id_ for id_ in marked if self.staged_path(id_).exists() or self.result_path(id_).exists()]
        staged = [path.name[1 : -len(".json.staged")] for path in self.out_dir.glob(".*.json.staged")]
        settled = []
        for document_id in sorted({*ours, *staged}):
            with self.locks.hold(document_id, wait=False) as held:
                if held:
                    self._settle(document_id)
                    settled.append(document_id)
        if settled:
            log.warning("finished or rolled back %d interrupted write(s) in %s", len(settled), self.out_dir)
        return settled

    def save(
        self, result: DocumentResult, *, actor: str = "pipeline", on_queued: OnQueued | None = None
    ) -> Path:
        """Store a run's outcome: result file, row, review item, audit event, in one change.

        A person's decision is kept: a re-read of a decided document is stored beside it
        (:attr:`DocumentResult.reread`). A failure of the machinery never replaces a better
        outcome. ``on_queued`` runs in the transaction when the document starts a new wait
        for review (to schedule and announce it). The run's claim on the document is released.
        """
        with self.changing(result.document_id) as session:
            stored = self._stored(session, result)
            if stored is not None:
                result = stored
            if stored is None or stored.reread is not None:
                self.stage(session, result)
            if stored is None:
                self._queue(session, result, actor, on_queued)
            session.execute(
                delete(DocumentClaimRow).where(
                    DocumentClaimRow.document_id == result.document_id,
                    DocumentClaimRow.owner == process_owner(),
                )
            )
        return self.result_path(result.document_id)

    def _stored(self, session: Session, result: DocumentResult) -> DocumentResult | None:
        """What stays the document's result instead of ``result``, if anything does."""
        item = session.scalars(
            select(ReviewItemRow).where(ReviewItemRow.document_id == result.document_id).with_for_update()
        ).one_or_none()
        current = self.load_in(session, result.document_id)
        if current is None:
            return None
        if item is not None and item.state in ReviewState.DECIDED:
            differs = sorted(
                name
                for name in {*result.fields, *current.fields}
                if (result.fields.get(name) or FieldResult()).value
                != (current.fields.get(name) or FieldResult()).value
            )
            reread = Reread(
                status=result.status,
                engine=result.engine,
                reasons=result.reasons,
                fields=result.fields,
                differs=differs,
            )
            before = snapshot(item)
            session.add(
                ReviewEventRow(
                    item_id=item.id,
                    action="reread",
                    actor="pipeline",
                    before=before,
                    after={**snapshot(item), "status": result.status.value, "differs": differs},
                )
            )
            log.warning(
                "%s was decided by %s; the decision stays, the new reading is stored beside it%s",
                Path(result.source).name,
                item.decided_by,
                f" (differs in {', '.join(differs)})" if differs else "",
            )
            return current.model_copy(update={"reread": reread})
        machinery = result.status is Status.REJECTED and any(
            r.code in MACHINERY_CODES for r in result.reasons
        )
        if machinery and current.status in (Status.ACCEPTED, Status.NEEDS_REVIEW):
            log.warning(
                "%s: processing failed (%s); its earlier outcome %s stays",
                Path(result.source).name,
                "; ".join(r.message for r in result.reasons if r.code in MACHINERY_CODES),
                current.status.value,
            )
            return current
        return None

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

    def _queue(
        self, session: Session, result: DocumentResult, actor: str, on_queued: OnQueued | None
    ) -> None:
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
            new_wait = item.state != ReviewState.CLAIMED
            if new_wait:
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
            if new_wait and on_queued is not None:
                on_queued(session, item, result)
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

    # --- runs' claims --------------------------------------------------------------------

    def claim(self, document_id: str, lease: timedelta = CLAIM_LEASE) -> bool:
        """Claim a document for this process's run; False while another live run holds it.

        A claim is released when the document's outcome is saved (:meth:`save`) or by
        :meth:`release`; one whose process died, or whose lease ran out, is taken over.
        """
        owner = process_owner()
        for _ in range(3):
            try:
                with Session(self.engine) as session, session.begin():
                    claim = session.get(DocumentClaimRow, document_id, with_for_update=True)
                    current = now()
                    if claim is None:
                        claim = DocumentClaimRow(document_id=document_id)
                        session.add(claim)
                    elif (
                        claim.owner != owner
                        and claim.expires_at > current
                        and not _owner_is_gone(claim.owner)
                    ):
                        return False
                    claim.owner = owner
                    claim.claimed_at = current
                    claim.expires_at = current + lease
                return True
            except IntegrityError:
                continue  # another run inserted its claim between our read and write: look again
        return False

    def release(self, document_ids: Iterable[str]) -> None:
        """Give up this process's claims on ``document_ids`` (documents it did not finish)."""
        ids = list(document_ids)
        if not ids:
            return
        with Session(self.engine) as session, session.begin():
            session.execute(
                delete(DocumentClaimRow).where(
                    DocumentClaimRow.document_id.in_(ids), DocumentClaimRow.owner == process_owner()
                )
            )

    # --- reading -------------------------------------------------------------------------

    def status_of(self, document_id: str) -> Status | None:
        with Session(self.engine) as session:
            row = session.get(DocumentRow, document_id)
            return Status(row.status) if row else None

    def stored_at(self, document_id: str) -> datetime | None:
        """When the document's outcome was last stored, if ever."""
        with Session(self.engine) as session:
            return session.scalar(
                select(DocumentRow.updated_at).where(DocumentRow.document_id == document_id)
            )

    def load(self, document_id: str) -> DocumentResult | None:
        """The document's committed result (a staged one when its write is still being finished)."""
        with Session(self.engine) as session:
            return self.load_in(session, document_id)

    def load_in(self, session: Session, document_id: str) -> DocumentResult | None:
        """Like :meth:`load`, inside the caller's transaction."""
        row = session.get(DocumentRow, document_id)
        candidates = [self.result_path(document_id)]
        if row is not None and row.staged_sha256 is not None:
            candidates.insert(0, self.staged_path(document_id))
        if row is not None:
            candidates.append(Path(row.result_path))  # written from another working folder
        for candidate in candidates:
            try:
                text = candidate.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue  # a staged file renamed into place meanwhile: the next one is it
            return DocumentResult.model_validate(json.loads(text))
        return None

    def sources(self, document_ids: list[str]) -> dict[str, str]:
        """The source path of each document, by id, in one query."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(DocumentRow.document_id, DocumentRow.source).where(
                    DocumentRow.document_id.in_(document_ids)
                )
            ).all()
        return dict(rows)

    def documents(self, statuses: Collection[str] = ()) -> list[DocumentRow]:
        """Every document's row (only those with one of ``statuses`` if given), oldest first."""
        with Session(self.engine) as session:
            query = select(DocumentRow).order_by(DocumentRow.created_at, DocumentRow.document_id)
            if statuses:
                query = query.where(DocumentRow.status.in_(list(statuses)))
            return list(session.scalars(query).all())

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
