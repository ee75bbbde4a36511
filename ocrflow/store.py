"""Durable outcomes: one JSON file per document plus its database row and review item.

The JSON is written to a temporary file, flushed to disk and renamed into place, so
a reader never sees half a result; the database row and the review-queue item are
written in one transaction after it. A document is identified by the SHA-256 of its
bytes, so storing it again updates its row instead of adding a second one.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from ocrflow.models import DocumentResult, Status


class Base(DeclarativeBase):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


class DocumentRow(Base):
    __tablename__ = "documents"

    document_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    doc_type: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    result_path: Mapped[str] = mapped_column(Text)
    engine: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


class ReviewItemRow(Base):
    __tablename__ = "review_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.document_id"), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    doc_type: Mapped[str | None] = mapped_column(String(64))
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


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


class ResultStore:
    """Results on disk and in any SQLAlchemy database (SQLite by default)."""

    def __init__(self, out_dir: Path, database_url: str) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(database_url, future=True)
        Base.metadata.create_all(self.engine)

    def result_path(self, document_id: str) -> Path:
        return self.out_dir / f"{document_id}.json"

    def save(self, result: DocumentResult) -> Path:
        """Write the result file, then its row (and review item) in one transaction."""
        path = self.result_path(result.document_id)
        write_json_atomically(path, result.model_dump_json(indent=2))
        reasons = [r.model_dump(mode="json") for r in result.reasons]
        with Session(self.engine) as session, session.begin():
            row = session.get(DocumentRow, result.document_id)
            if row is None:
                row = DocumentRow(document_id=result.document_id)
                session.add(row)
            row.source = result.source
            row.doc_type = result.doc_type
            row.status = result.status.value
            row.reasons = reasons
            row.result_path = str(path)
            row.engine = result.engine
            item = session.scalars(
                select(ReviewItemRow).where(ReviewItemRow.document_id == result.document_id)
            ).one_or_none()
            if result.status is Status.NEEDS_REVIEW:
                if item is None:
                    session.flush()
                    session.add(ReviewItemRow(document_id=result.document_id))
                    item = session.scalars(
                        select(ReviewItemRow).where(ReviewItemRow.document_id == result.document_id)
                    ).one()
                item.doc_type = result.doc_type
                item.reasons = reasons
                if item.state not in ("pending", "claimed"):
                    item.state = "pending"
            elif item is not None and item.state in ("pending", "claimed"):
                session.delete(item)
        return path

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

    def find(self, prefix: str) -> str | None:
        """The one document id starting with ``prefix`` (ids are long; people type a few characters)."""
        with Session(self.engine) as session:
            ids = session.scalars(
                select(DocumentRow.document_id).where(DocumentRow.document_id.startswith(prefix)).limit(2)
            ).all()
        return ids[0] if len(ids) == 1 else None

    def review_items(self, state: str | None = "pending") -> list[ReviewItemRow]:
        with Session(self.engine) as session:
            query = select(ReviewItemRow).order_by(ReviewItemRow.created_at, ReviewItemRow.id)
            if state:
                query = query.where(ReviewItemRow.state == state)
            return list(session.scalars(query).all())

    def counts(self) -> dict[str, int]:
        with Session(self.engine) as session:
            rows = session.execute(select(DocumentRow.status)).scalars().all()
        return {status.value: sum(1 for r in rows if r == status.value) for status in Status}
