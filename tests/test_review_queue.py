"""The review queue on SQLite and PostgreSQL: leases, states, audit trail, decisions, concurrency."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from ocrflow.doctypes import load_doctypes
from ocrflow.errors import ClaimConflict, ItemNotFound, ReviewError
from ocrflow.migrations import current_revision, head_revision
from ocrflow.models import Status
from ocrflow.review.queue import ReviewQueue
from ocrflow.store import ResultStore, ReviewState
from tests.review_support import CARD, VALID_CARD, Clock, needs_review, untyped_from_an_api_engine


@pytest.fixture
def store(database_url: str, tmp_path: Path):
    store = ResultStore(tmp_path / "out", database_url)
    yield store
    store.engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(store: ResultStore, clock: Clock) -> ReviewQueue:
    return ReviewQueue(store, load_doctypes(), lease_seconds=60, clock=clock)


def test_migrations_bring_a_new_database_to_the_newest_revision(store: ResultStore):
    assert current_revision(store.engine) == head_revision()
    tables = set(inspect(store.engine).get_table_names())
    assert {
        "documents",
        "review_items",
        "review_events",
        "reviewers",
        "review_sessions",
        "sign_in_failures",
    } <= tables


def test_a_claim_is_exclusive_until_its_lease_runs_out(queue: ReviewQueue, store: ResultStore, clock: Clock):
    store.save(needs_review(1))
    claim = queue.claim("alice")
    assert claim is not None and claim.reviewer == "alice"
    assert queue.claim("bob") is None
    with pytest.raises(ClaimConflict, match="claimed by alice"):
        queue.claim("bob", claim.item_id)
    with pytest.raises(ClaimConflict):
        queue.decide(claim.item_id, "bob")

    clock.advance(61)  # alice walked away
    with pytest.raises(ClaimConflict, match="ran out"):
        queue.decide(claim.item_id, "alice")
    taken = queue.claim("bob")
    assert taken is not None and taken.item_id == claim.item_id
    outcome = queue.decide(claim.item_id, "bob", override=True, note="the card prints this number")
    assert outcome.decision == "approved"
    actions = [(e.action, e.actor) for e in queue.events(claim.item_id)]
    assert actions == [("queued", "pipeline"), ("claimed", "alice"), ("claimed", "bob"), ("approved", "bob")]


def test_release_gives_the_item_back(queue: ReviewQueue, store: ResultStore):
    store.save(needs_review(1))
    claim = queue.claim("alice")
    queue.release(claim.item_id, "alice")
    assert queue.get(claim.item_id).state == ReviewState.PENDING
    assert queue.claim("bob").item_id == claim.item_id


def test_every_change_is_an_audit_event_with_before_and_after(queue: ReviewQueue, store: ResultStore):
    store.save(needs_review(1))
    claim = queue.claim("alice")
    queue.decide(claim.item_id, "alice", values={"card_number": VALID_CARD, "bank": "中国工商银行"})
    events = queue.events(claim.item_id)
    assert [e.action for e in events] == ["queued", "claimed", "corrected"]
    decided = events[-1]
    assert decided.actor == "alice" and decided.at is not None
    assert decided.before["state"] == "claimed" and decided.before["claimed_by"] == "alice"
    assert decided.after["state"] == "corrected" and decided.after["decided_by"] == "alice"
    assert decided.after["changes"] == {"card_number": VALID_CARD}
    assert decided.after["version"] == decided.before["version"] + 1


def test_a_correction_writes_the_final_result_like_an_accepted_document(
    queue: ReviewQueue, store: ResultStore
):
    store.save(needs_review(1))
    claim = queue.claim("alice")
    outcome = queue.decide(claim.item_id, "alice", values={"card_number": f" {VALID_CARD} "})
    data = json.loads(outcome.result_path.read_text())
    assert outcome.result_path == store.result_path(claim.document_id)
    assert data["status"] == "accepted" and data["reasons"] == []
    assert data["fields"]["card_number"]["value"] == VALID_CARD
    assert data["fields"]["card_number"]["errors"] == []
    assert data["fields"]["bank"]["value"] == "中国工商银行"  # untouched fields stay
    assert data["pages"][0]["lines"][0]["text"] == CARD  # what OCR saw is kept
    assert store.status_of(claim.document_id) is Status.ACCEPTED
    item = queue.get(claim.item_id)
    assert item.state == "corrected" and item.final_values["card_number"] == VALID_CARD
    assert item.extracted_values["card_number"] == CARD


def test_a_type_chosen_for_an_api_engines_document_is_read_from_its_independent_reading(
    queue: ReviewQueue, store: ResultStore
):
    document = untyped_from_an_api_engine(1)
    store.save(document)
    claim = queue.claim("alice")
    typed = queue.choose_type(claim.item_id, "alice", "bank_card")
    card = typed.fields["card_number"]
    assert card.value == VALID_CARD and not card.errors
    # Located where the embedded engine read it, with its score behind the confidence.
    assert [(box.page, box.line) for box in card.boxes] == [(1, VALID_CARD)]
    assert card.boxes[0].box == document.pages[0].independent_lines[1].box
    assert 0 < card.confidence <= 0.98
    assert typed.pages == document.pages and typed.engine == document.engine  # the reading is kept
    assert store.load(claim.document_id).fields["card_number"].value == VALID_CARD


def test_a_rejection_keeps_the_reasons_and_adds_the_reviewers(queue: ReviewQueue, store: ResultStore):
    store.save(needs_review(1))
    claim = queue.claim("alice")
    outcome = queue.decide(claim.item_id, "alice", reject=True, note="not a bank card")
    assert outcome.result.status is Status.REJECTED
    assert [r.code for r in outcome.result.reasons] == ["invalid_checksum", "rejected_in_review"]
    assert "not a bank card" in outcome.result.reasons[-1].message
    with pytest.raises(ClaimConflict, match="rejected by alice"):
        queue.claim("bob", claim.item_id)


def test_a_missing_result_file_is_an_error_not_a_hang(queue: ReviewQueue, store: ResultStore):
    store.save(needs_review(1))
    claim = queue.claim("alice")
    store.result_path(claim.document_id).unlink()
    with pytest.raises(ItemNotFound, match="missing"):
        queue.decide(claim.item_id, "alice")
    assert queue.get(claim.item_id).state == ReviewState.CLAIMED


def test_filters_by_type_reason_and_age(queue: ReviewQueue, store: ResultStore, clock: Clock):
    store.save(needs_review(1))
    store.save(needs_review(2))
    assert len(queue.items(doc_type="bank_card")) == 2
    assert queue.items(doc_type="receipt") == []
    assert len(queue.items(reason="invalid_checksum")) == 2
    assert queue.items(reason="missing") == []
    assert len(queue.items(newer_than=timedelta(hours=1))) == 2
    assert queue.items(older_than=timedelta(hours=1)) == []
    clock.advance(2 * 3600)
    assert len(queue.items(older_than=timedelta(hours=1))) == 2


def test_reprocessing_a_reviewed_document_keeps_the_decision_and_stores_the_new_reading_beside_it(
    queue: ReviewQueue, store: ResultStore
):
    store.save(needs_review(1))
    claim = queue.claim("alice")
    queue.decide(claim.item_id, "alice", values={"card_number": VALID_CARD})
    reread = needs_review(1)
    store.save(reread)  # what `ocrflow run --reprocess` stores
    item = queue.get(claim.item_id)
    assert (item.state, item.final_values["card_number"]) == (ReviewState.CORRECTED, VALID_CARD)
    kept = store.load(claim.document_id)
    assert (kept.status, kept.fields["card_number"].value) == (Status.ACCEPTED, VALID_CARD)
    assert kept.reread.status is Status.NEEDS_REVIEW
    assert kept.reread.fields["card_number"].value == CARD
    assert kept.reread.differs == ["card_number"]
    assert store.status_of(claim.document_id) is Status.ACCEPTED
    event = queue.events(claim.item_id)[-1]
    assert (event.action, event.actor, event.after["differs"]) == ("reread", "pipeline", ["card_number"])


def test_only_a_deliberate_reopen_puts_the_newer_reading_in_place_of_the_decision(
    queue: ReviewQueue, store: ResultStore
):
    store.save(needs_review(1))
    claim = queue.claim("alice")
    queue.decide(claim.item_id, "alice", values={"card_number": VALID_CARD})
    with pytest.raises(ReviewError, match="no newer reading"):
        queue.reopen(claim.item_id, "bob", "try the machine", take_new_reading=True)
    store.save(needs_review(1))
    queue.reopen(claim.item_id, "bob", "the rescan is right", take_new_reading=True)
    reopened = store.load(claim.document_id)
    assert (reopened.status, reopened.fields["card_number"].value) == (Status.NEEDS_REVIEW, CARD)
    assert reopened.reread is None
    event = queue.events(claim.item_id)[-1]
    assert (event.action, event.after["took_new_reading"]) == ("reopened", True)


def test_a_rerun_that_accepts_the_document_withdraws_its_open_item(queue: ReviewQueue, store: ResultStore):
    store.save(needs_review(1))
    claim = queue.claim("alice")
    store.save(needs_review(1).model_copy(update={"status": Status.ACCEPTED, "reasons": []}))
    item = queue.get(claim.item_id)
    assert (item.state, item.claimed_by) == ("withdrawn", None)
    withdrawn = queue.events(claim.item_id)[-1]
    assert (withdrawn.action, withdrawn.actor, withdrawn.before["state"]) == (
        "withdrawn",
        "pipeline",
        "claimed",
    )
    with pytest.raises(ClaimConflict):
        queue.decide(claim.item_id, "alice")


def test_migrations_go_down_and_up_again(store: ResultStore):
    from ocrflow.migrations import FOUNDATION, downgrade, upgrade

    store.save(needs_review(1))
    downgrade(store.engine, FOUNDATION)
    assert current_revision(store.engine) == FOUNDATION
    assert "review_events" not in inspect(store.engine).get_table_names()
    upgrade(store.engine)
    assert current_revision(store.engine) == head_revision()
    assert [item.state for item in store.review_items()] == ["pending"]


def test_twenty_reviewers_decide_two_hundred_items_each_exactly_once(
    queue: ReviewQueue, store: ResultStore, clock: Clock
):
    for n in range(200):
        store.save(needs_review(n))
    queue.lease = timedelta(hours=1)  # the fake clock stands still; no lease may run out here
    decided: list[tuple[str, int, str]] = []
    conflicts = Counter()
    failures: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def reviewer(name: str) -> None:
        rng = random.Random(name)
        try:
            start.wait()
            while (claim := queue.claim(name)) is not None:
                # Try to steal a random item first: it must never work.
                victim = rng.randrange(1, 201)
                if victim != claim.item_id:
                    try:
                        queue.decide(victim, name, reject=True)
                    except ClaimConflict:
                        with lock:
                            conflicts[name] += 1
                    else:
                        raise AssertionError(f"{name} decided item {victim} without holding it")
                typed = f"{claim.item_id:019d}"  # a per-item value, so a lost update would show
                outcome = queue.decide(
                    claim.item_id, name, values={"card_number": typed}, override=True, note="load test"
                )
                with lock:
                    decided.append((name, claim.item_id, outcome.result.fields["card_number"].value))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=reviewer, args=(f"reviewer-{i:02d}",)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not failures, failures[:3]
    assert sorted(item for _, item, _ in decided) == list(range(1, 201))  # each exactly once
    assert len({name for name, _, _ in decided}) > 1  # the work really was shared
    assert sum(conflicts.values()) > 0
    items = {item.id: item for item in queue.items(states=ReviewState.ALL)}
    for name, item_id, value in decided:
        item = items[item_id]
        assert (item.state, item.decided_by, item.final_values["card_number"]) == ("corrected", name, value)
        data = json.loads(store.result_path(item.document_id).read_text())
        assert data["fields"]["card_number"]["value"] == value == f"{item_id:019d}"
        actions = [e.action for e in queue.events(item_id)]
        assert actions.count("corrected") == 1 and actions.count("claimed") == 1
    assert store.counts()["accepted"] == 200


def test_failed_sign_ins_counted_at_once_are_all_counted(store: ResultStore):
    from ocrflow.review.auth import SignInThrottle
    from ocrflow.settings import ReviewOptions
    from ocrflow.store import SignInFailureRow

    throttle = SignInThrottle(
        store.engine, ReviewOptions(sign_in_attempts=12, sign_in_attempts_per_address=100)
    )
    start = threading.Barrier(12)

    def guess() -> None:
        start.wait()
        throttle.failed("alice", "10.0.0.7")

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with Session(store.engine) as session:
        rows = {row.key: row for row in session.scalars(select(SignInFailureRow))}
    assert {key: row.failures for key, row in rows.items()} == {"user:alice": 12, "addr:10.0.0.7": 12}
    assert rows["user:alice"].locked_until is not None and rows["addr:10.0.0.7"].locked_until is None
    assert throttle.locked_until("alice", "10.0.0.8") is not None
    assert throttle.locked_until("bob", "10.0.0.7") is None
