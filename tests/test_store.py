from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocrflow.models import (
    DocumentResult,
    FieldBox,
    FieldEvidence,
    FieldResult,
    Grounding,
    OcrLine,
    PageResult,
    Reason,
    Stage,
    Status,
)
from ocrflow.store import ResultStore, write_json_atomically


def _result(document_id: str, status: Status, **extra) -> DocumentResult:
    reasons = (
        []
        if status is Status.ACCEPTED
        else [Reason(stage=Stage.VALIDATE, code="missing", message="Total was not found", field="total")]
    )
    return DocumentResult(
        document_id=document_id,
        source=f"/in/{document_id[:6]}.png",
        doc_type="receipt",
        status=status,
        reasons=reasons,
        fields={"total": FieldResult(value="9.00", confidence=0.99)},
        **extra,
    )


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> ResultStore:
    store = ResultStore(tmp_path / "out", database_url)
    yield store
    store.engine.dispose()


def test_save_writes_the_json_contract_and_a_row(store: ResultStore):
    path = store.save(_result("a" * 64, Status.ACCEPTED))
    data = json.loads(path.read_text())
    assert path.name == "a" * 64 + ".json"
    assert set(data) >= {
        "document_id",
        "source",
        "doc_type",
        "status",
        "reasons",
        "fields",
        "text",
        "pages",
        "engine",
        "usage",
        "preprocessing",
    }
    assert data["fields"]["total"] == {
        "value": "9.00",
        "confidence": 0.99,
        "errors": [],
        "raw": None,
        "page": None,
    }
    assert store.status_of("a" * 64) is Status.ACCEPTED
    assert store.load("a" * 64).fields["total"].value == "9.00"


def test_a_fields_location_and_evidence_are_stored_and_a_result_without_them_still_loads(store: ResultStore):
    box = [[10.0, 20.0], [90.0, 20.0], [90.0, 34.0], [10.0, 34.0]]
    where = FieldBox(page=1, box=box, line="TOTAL RM 9.00")
    evidence = FieldEvidence(
        outcome=Grounding.NEAR,
        reader="local:PP-OCRv6",
        reading="9.08",
        differs_at=[3],
        page=1,
        boxes=[where],
        reader_score=0.93,
        factors={"grounding": 0.4, "reader_score": 0.93},
    )
    total = FieldResult(value="9.00", confidence=0.4, raw="9.00", page=1, boxes=[where], evidence=evidence)
    result = _result("e" * 64, Status.NEEDS_REVIEW).model_copy(update={"fields": {"total": total}})
    path = store.save(result)
    assert store.load("e" * 64).fields["total"] == total
    written = json.loads(path.read_text())["fields"]["total"]
    assert written["evidence"]["outcome"] == "near" and written["boxes"][0]["line"] == "TOTAL RM 9.00"

    # A result file written before fields had locations and evidence: the fields default.
    old = {"value": "9.00", "confidence": 0.99, "errors": [], "raw": None, "page": None}
    before = json.loads(path.read_text()) | {"fields": {"total": old}}
    path.write_text(json.dumps(before))
    loaded = store.load("e" * 64).fields["total"]
    assert loaded.boxes == [] and loaded.evidence is None and loaded.value == "9.00"
    assert loaded.model_dump() == old, "a field with neither is written as before"


def test_a_pages_independent_lines_are_stored_and_a_page_without_them_is_written_as_before(
    store: ResultStore,
):
    line = OcrLine(
        text="TOTAL RM 9.00", box=[[10.0, 20.0], [90.0, 20.0], [90.0, 34.0], [10.0, 34.0]], score=0.98
    )
    read = PageResult(page_number=1, width=100, height=50, independent_lines=[line])
    path = store.save(_result("f" * 64, Status.ACCEPTED, pages=[read]))
    assert store.load("f" * 64).pages == [read]
    assert json.loads(path.read_text())["pages"][0]["independent_lines"][0]["text"] == "TOTAL RM 9.00"

    # A result file written before pages kept the independent reading: it loads, without one.
    own = PageResult(page_number=1, width=100, height=50, lines=[line])
    store.save(_result("f" * 64, Status.ACCEPTED, pages=[own]))
    page = json.loads(path.read_text())["pages"][0]
    assert set(page) == {"page_number", "width", "height", "lines"}, "written as before"
    assert store.load("f" * 64).pages[0].independent_lines == []


def test_saving_the_same_document_again_updates_its_one_record(store: ResultStore):
    store.save(_result("b" * 64, Status.NEEDS_REVIEW))
    store.save(_result("b" * 64, Status.NEEDS_REVIEW))
    assert store.counts() == {"accepted": 0, "needs_review": 1, "rejected": 0}
    assert len(store.review_items()) == 1
    store.save(_result("b" * 64, Status.ACCEPTED))
    assert store.counts() == {"accepted": 1, "needs_review": 0, "rejected": 0}
    assert store.review_items() == []


def test_review_item_carries_the_reasons(store: ResultStore):
    store.save(_result("c" * 64, Status.NEEDS_REVIEW))
    (item,) = store.review_items()
    assert item.state == "pending"
    assert item.reasons[0]["code"] == "missing" and item.reasons[0]["field"] == "total"


def test_find_by_prefix_is_unambiguous(store: ResultStore):
    store.save(_result("abc1" + "0" * 60, Status.ACCEPTED))
    store.save(_result("abc2" + "0" * 60, Status.ACCEPTED))
    assert store.find("abc1") == "abc1" + "0" * 60
    assert store.find("abc") is None
    assert store.find("zzz") is None


def test_atomic_write_leaves_no_partial_file(tmp_path: Path):
    target = tmp_path / "doc.json"
    write_json_atomically(target, '{"ok": 1}')

    with pytest.raises(TypeError):
        write_json_atomically(target, 12345)  # not text: the write fails midway
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_the_migrations_build_exactly_the_tables_the_code_uses(store: ResultStore):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from ocrflow.store import Base

    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_a_database_from_before_migrations_is_upgraded_in_place(tmp_path: Path):
    from sqlalchemy import create_engine, inspect

    from ocrflow.migrations import current_revision, head_revision

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    old = create_engine(url)
    with old.begin() as connection:  # the foundation's schema, as create_all made it
        connection.exec_driver_sql(
            "CREATE TABLE documents (document_id VARCHAR(64) PRIMARY KEY, source TEXT NOT NULL,"
            " doc_type VARCHAR(64), status VARCHAR(16) NOT NULL, reasons JSON NOT NULL,"
            " result_path TEXT NOT NULL, engine VARCHAR(64),"
            " created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL)"
        )
        connection.exec_driver_sql(
            "CREATE TABLE review_items (id INTEGER PRIMARY KEY, document_id VARCHAR(64) NOT NULL UNIQUE"
            " REFERENCES documents (document_id), state VARCHAR(16) NOT NULL, doc_type VARCHAR(64),"
            " reasons JSON NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL)"
        )
        connection.exec_driver_sql(
            "INSERT INTO documents VALUES ('d1', '/in/a.png', 'receipt', 'needs_review', '[]',"
            " '/out/d1.json', NULL, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
        connection.exec_driver_sql(
            "INSERT INTO review_items VALUES (1, 'd1', 'pending', 'receipt', '[]',"
            " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
    old.dispose()
    store = ResultStore(tmp_path / "out", url)
    assert current_revision(store.engine) == head_revision()
    (item,) = store.review_items()
    assert (item.document_id, item.state, item.version) == ("d1", "pending", 0)
    assert "review_events" in inspect(store.engine).get_table_names()
    store.engine.dispose()


def test_a_new_sqlite_database_and_its_journal_files_are_readable_by_their_owner_only(tmp_path: Path):
    database = tmp_path / "ocrflow.sqlite3"
    store = ResultStore(tmp_path / "out", f"sqlite:///{database}")
    try:
        store.save(_result("c" * 64, Status.NEEDS_REVIEW))
        files = [database, *tmp_path.glob("ocrflow.sqlite3-*")]
        assert {path.name for path in files} >= {"ocrflow.sqlite3", "ocrflow.sqlite3-wal"}
        assert {path.name: oct(path.stat().st_mode & 0o777) for path in files} == {
            path.name: "0o600" for path in files
        }
    finally:
        store.engine.dispose()


def test_a_store_opened_while_another_process_writes_a_new_database_waits_to_switch_it_to_wal(tmp_path: Path):
    import sqlite3
    import threading

    path = tmp_path / "db.sqlite3"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # rollback journal, writing
    other.execute("CREATE TABLE held (x)")
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.5, other.execute, args=("COMMIT",)).start()
    store = ResultStore(tmp_path / "out", f"sqlite:///{path}")  # SQLite refuses the switch at once
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.engine.dispose()
    other.close()
