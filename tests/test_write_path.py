"""The write path on SQLite and PostgreSQL: a process killed (SIGKILL) at each step loses nothing.

Each test kills a real child process at a crash point (``OCRFLOW_CRASH_AT``) while it stores
an outcome or a decision, then opens the store as the next process would and checks that
the file and the row agree and that a decision is all there or not there at all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ocrflow.doctypes import load_doctypes
from ocrflow.models import Reason, Stage, Status
from ocrflow.review.queue import ReviewQueue
from ocrflow.store import DocumentClaimRow, DocumentRow, ResultStore, ReviewState, now, open_database
from tests.conftest import ROOT
from tests.review_support import VALID_CARD, needs_review

CHILD = """
import sys
from pathlib import Path
from ocrflow.doctypes import load_doctypes
from ocrflow.review.queue import ReviewQueue
from ocrflow.store import ResultStore
from tests.review_support import needs_review

out, url, what = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
store = ResultStore(out, url)
if what == "save":
    store.save(needs_review(1))
else:
    queue = ReviewQueue(store, load_doctypes())
    queue.decide(1, "alice", values={"card_number": "6222020200112233446"})
"""


def run_child(out: Path, url: str, what: str, crash_at: str) -> int:
    env = {**os.environ, "OCRFLOW_CRASH_AT": crash_at, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(out), url, what], env=env, cwd=ROOT, timeout=120, check=False
    )
    return done.returncode


def consistent(store: ResultStore) -> dict[str, str]:
    """Every result file has its row and every row its file, with the same status; no staged leftovers."""
    files = {p.stem: json.loads(p.read_text())["status"] for p in store.out_dir.glob("*.json")}
    with Session(store.engine) as session:
        rows = dict(session.execute(select(DocumentRow.document_id, DocumentRow.status)).all())
        marked = session.scalars(
            select(DocumentRow.staged_sha256).where(DocumentRow.staged_sha256.is_not(None))
        )
        assert list(marked) == []
    assert files == rows
    assert list(store.out_dir.glob(".*.staged")) == []
    return files


@pytest.mark.parametrize("point", ["staged", "committed", "renamed"])
def test_a_run_killed_while_storing_leaves_the_file_and_the_row_in_agreement(
    tmp_path: Path, database_url: str, point: str
):
    out = tmp_path / "out"
    assert run_child(out, database_url, "save", point) == -signal.SIGKILL
    store = ResultStore(out, database_url)  # opening finishes or rolls back the write
    try:
        files = consistent(store)
        assert files == ({} if point == "staged" else {needs_review(1).document_id: "needs_review"})
        assert [item.state for item in store.review_items(None)] == ([] if point == "staged" else ["pending"])
    finally:
        store.engine.dispose()


@pytest.mark.parametrize("point", ["staged", "committed", "renamed"])
def test_a_decision_killed_midway_is_all_there_or_not_there(tmp_path: Path, database_url: str, point: str):
    out = tmp_path / "out"
    store = ResultStore(out, database_url)
    queue = ReviewQueue(store, load_doctypes())
    store.save(needs_review(1))
    claim = queue.claim("alice")
    store.engine.dispose()
    assert run_child(out, database_url, "decide", point) == -signal.SIGKILL
    store = ResultStore(out, database_url)
    queue = ReviewQueue(store, load_doctypes())
    try:
        files = consistent(store)
        item = queue.get(claim.item_id)
        actions = [event.action for event in queue.events(claim.item_id)]
        if point == "staged":  # killed before the commit: nothing of the decision
            assert files == {claim.document_id: "needs_review"}
            assert (item.state, item.claimed_by, actions[-1]) == (ReviewState.CLAIMED, "alice", "claimed")
            outcome = queue.decide(claim.item_id, "alice", values={"card_number": VALID_CARD})
            assert outcome.decision.value == "corrected"  # the correction is recorded as one
        else:  # killed after it: all of it, and the file says what the row says
            assert files == {claim.document_id: "accepted"}
            assert (item.state, actions[-1]) == (ReviewState.CORRECTED, "corrected")
            assert store.load(claim.document_id).fields["card_number"].value == VALID_CARD
    finally:
        store.engine.dispose()


def test_a_reader_sees_the_committed_result_before_its_file_is_in_place(tmp_path: Path):
    url, out = f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path / "out"
    assert run_child(out, url, "save", "committed") == -signal.SIGKILL
    reader = object.__new__(ResultStore)  # a store that has not reconciled yet
    reader.out_dir, reader.engine = out, open_database(url)
    document_id = needs_review(1).document_id
    assert not reader.result_path(document_id).exists()
    assert reader.load(document_id).status is Status.NEEDS_REVIEW
    reader.engine.dispose()


def test_a_claimed_document_is_left_to_its_run_until_that_run_is_gone_or_its_lease_ran_out(
    tmp_path: Path, database_url: str
):
    store = ResultStore(tmp_path / "out", database_url)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    owners = {
        "a" * 64: ("elsewhere:1", now() + timedelta(minutes=5)),  # another machine's live run
        "b" * 64: ("elsewhere:1", now() - timedelta(seconds=1)),  # its lease ran out
        "c" * 64: (f"{os.uname().nodename}:{dead.stdout.strip()}", now() + timedelta(minutes=5)),  # died
    }
    with Session(store.engine) as session, session.begin():
        for document_id, (owner, expires_at) in owners.items():
            session.add(
                DocumentClaimRow(
                    document_id=document_id, owner=owner, claimed_at=now(), expires_at=expires_at
                )
            )
    try:
        assert [store.claim(document_id) for document_id in owners] == [False, True, True]
        assert store.claim("d" * 64) and store.claim("d" * 64)  # a run may claim again what it holds
        result = needs_review(1).model_copy(update={"document_id": "d" * 64})
        store.save(result)  # storing the outcome releases the claim
        with Session(store.engine) as session:
            assert session.get(DocumentClaimRow, "d" * 64) is None
    finally:
        store.engine.dispose()


def test_a_failure_of_the_machinery_never_replaces_a_better_outcome(tmp_path: Path, database_url: str):
    store = ResultStore(tmp_path / "out", database_url)
    accepted = needs_review(1).model_copy(update={"status": Status.ACCEPTED, "reasons": []})
    store.save(accepted)
    broken = accepted.model_copy(
        update={
            "status": Status.REJECTED,
            "fields": {},
            "reasons": [
                Reason(stage=Stage.ROUTE, code="internal_error", message="processing failed unexpectedly")
            ],
        }
    )
    try:
        store.save(broken)
        kept = store.load(accepted.document_id)
        assert kept.status is Status.ACCEPTED
        assert kept.fields["card_number"].value == accepted.fields["card_number"].value
        assert store.status_of(accepted.document_id) is Status.ACCEPTED
        assert consistent(store) == {accepted.document_id: "accepted"}
    finally:
        store.engine.dispose()
