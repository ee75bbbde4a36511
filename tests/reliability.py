"""Crash and concurrency checks of real ``ocrflow`` processes, shared by the tests and bench/reliability.py.

No pytest here (the bench script runs without it). A check opens the store the way the next
process would (which finishes or rolls back what a crash interrupted) and returns the
problems it finds, as sentences; an empty list means the store is consistent:

- every result file has its row and every row its file, saying the same status; no staged
  file or staged mark is left;
- every review decision is whole: the item's state, its audit event, the file's status and
  values, and exactly one ``ocrflow.review.completed`` in the outbox per decision event.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.review_support import VALID_CARD

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXAMPLES = ROOT / "examples"
DOCUMENTS = (
    "bank_card_valid.png",
    "bank_card_bad_luhn.png",
    "cn_id_card_valid.png",
    "cn_id_card_bad_checksum.png",
    "receipt_valid.png",
    "invoice_valid.png",
)
DECISION_ACTIONS = ("approved", "corrected", "rejected")
CRASH_POINTS = ("staged", "committed", "renamed")
"""The write path's steps a child can be killed at (``OCRFLOW_CRASH_AT``, see :mod:`ocrflow.crash`)."""
REVIEW_COMMANDS = [
    ("corrected", ["review", "correct", "1", "--set", f"card_number={VALID_CARD}"]),
    ("rejected", ["review", "reject", "2", "--note", "blurred"]),
    ("approved", ["review", "approve", "3", "--override", "--note", "the card prints this number"]),
    ("typed", ["review", "type", "4", "bank_card"]),
    ("reopened", ["review", "reopen", "1", "--reason", "the bank name is wrong"]),
    ("confirmed", ["review", "confirm", "3", "--reviewer", "bob"]),
]
"""Each review command that changes a document, and the audit event it leaves, in an order that
works over :func:`review_queue`'s items (the item number is the command's third word)."""
SUMMARY = re.compile(r"(\d+) accepted, (\d+) needs_review, (\d+) rejected")


def review_queue(out: Path, database_url: str):
    """A store holding items 1 to 3 that need review and an untyped item 4; the caller disposes its engine."""
    from ocrflow.doctypes import load_doctypes
    from ocrflow.review.queue import ReviewQueue
    from ocrflow.store import ResultStore
    from tests.review_support import needs_review, untyped

    store = ResultStore(out, database_url)
    for n in (1, 2, 3):
        store.save(needs_review(n))
    store.save(untyped(4))
    return ReviewQueue(store, load_doctypes())


def inbox(folder: Path, names: tuple[str, ...] = DOCUMENTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(EXAMPLES / name, folder / name)
    return folder


def environment(**extra: str) -> dict[str, str]:
    """The environment of an ``ocrflow`` child: no Prefect server (runs inline), the checkout importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OCRFLOW_"))}
    env.update(PYTHONPATH=str(ROOT), OCRFLOW_REVIEWER="alice", **extra)
    return env


def ocrflow(
    args: list[str], *, crash_at: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    env = environment(**({"OCRFLOW_CRASH_AT": crash_at} if crash_at else {}))
    return subprocess.run(
        [str(BIN / "ocrflow"), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "ocrflow"), *args],
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_args(inbox_dir: Path, out: Path, database_url: str) -> list[str]:
    return ["run", str(inbox_dir), "--out", str(out), "--db", database_url, "--runner", "inline"]


def killed(done: subprocess.CompletedProcess | subprocess.Popen) -> bool:
    return done.returncode == -signal.SIGKILL


def concluded(stdout: str) -> int:
    """Documents a run concluded, from its summary line (accepted + needs_review + rejected)."""
    found = SUMMARY.search(stdout)
    if found is None:
        raise AssertionError(f"no summary line in the run's output:\n{stdout[-2000:]}")
    return sum(int(n) for n in found.groups())


@dataclass
class State:
    statuses: dict[str, str]
    """Each document's status, from its row."""
    stored_at: dict[str, str]
    problems: list[str]


def check(out: Path, database_url: str) -> State:
    """Open the store (reconciling it) and list every disagreement between files, rows, items and events."""
    from ocrflow.review.events import REVIEW_COMPLETED
    from ocrflow.store import DocumentRow, OutboxRow, ResultStore, ReviewEventRow, ReviewItemRow, ReviewState

    store = ResultStore(out, database_url)
    problems: list[str] = []
    try:
        files = {
            path.stem: json.loads(path.read_text()) for path in out.glob("*.json") if len(path.stem) == 64
        }
        with Session(store.engine) as session:
            rows = {row.document_id: row for row in session.scalars(select(DocumentRow))}
            items = {item.document_id: item for item in session.scalars(select(ReviewItemRow))}
            events = list(session.scalars(select(ReviewEventRow).order_by(ReviewEventRow.id)))
            outbox = Counter(
                row.payload["document_id"]
                for row in session.scalars(select(OutboxRow).where(OutboxRow.event == REVIEW_COMPLETED))
            )
        problems += [f"file {d[:12]} has no row" for d in files.keys() - rows.keys()]
        problems += [f"row {d[:12]} has no file" for d in rows.keys() - files.keys()]
        problems += [
            f"{d[:12]}: file says {files[d]['status']}, row says {rows[d].status}"
            for d in files.keys() & rows.keys()
            if files[d]["status"] != rows[d].status
        ]
        problems += [f"{d[:12]}: staged mark left" for d, row in rows.items() if row.staged_sha256]
        problems += [f"staged file left: {p.name}" for p in out.glob(".*.staged")]
        decisions = Counter()
        last: dict[int, str] = {}
        for event in events:
            if event.action in DECISION_ACTIONS:
                decisions[event.item_id] += 1
                last[event.item_id] = event.action
            elif event.action in ("reopened", "claimed", "released", "queued", "requeued", "withdrawn"):
                last[event.item_id] = event.action
        for document_id, item in items.items():
            status = rows[document_id].status if document_id in rows else None
            if item.state in ReviewState.DECIDED:
                expected = "rejected" if item.state == ReviewState.REJECTED else "accepted"
                if status != expected:
                    problems.append(f"item {item.id} is {item.state} but its document is {status}")
                if last.get(item.id) != item.state:
                    problems.append(f"item {item.id} is {item.state} without its audit event")
                values = files.get(document_id, {}).get("fields", {})
                if item.final_values and {k: v["value"] for k, v in values.items()} != item.final_values:
                    problems.append(f"item {item.id}: the file's values are not the decided ones")
            elif item.state in ReviewState.OPEN and status != "needs_review":
                problems.append(f"item {item.id} is {item.state} but its document is {status}")
            elif (
                item.state in ReviewState.OPEN and files.get(document_id, {}).get("doc_type") != item.doc_type
            ):
                problems.append(f"item {item.id} is a {item.doc_type}, its document's file says otherwise")
            if outbox[document_id] != decisions[item.id]:
                problems.append(
                    f"item {item.id}: {decisions[item.id]} decision(s), "
                    f"{outbox[document_id]} {REVIEW_COMPLETED} event(s) in the outbox"
                )
        statuses = {d: row.status for d, row in rows.items()}
        stored_at = {d: row.updated_at.isoformat() for d, row in rows.items()}
    finally:
        store.engine.dispose()
    return State(statuses, stored_at, problems)
