"""Review as an operation: requested/overdue events, queue order, assignment, and the queue's health."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ocrflow.cli import app
from ocrflow.doctypes import load_doctypes
from ocrflow.models import FieldResult, Reason, Stage
from ocrflow.review.auth import Accounts
from ocrflow.review.operations import (
    REVIEW_OVERDUE,
    REVIEW_REQUESTED,
    FieldBands,
    announcer,
    health_markdown,
    queue_health,
    sweep,
)
from ocrflow.review.queue import ReviewQueue
from ocrflow.routing import AUDIT_SAMPLE
from ocrflow.settings import ReviewOptions, ReviewRule, Settings
from ocrflow.store import ResultStore
from tests.review_support import VALID_CARD, Clock, needs_review


class Sent(list):
    """Stands in for Prefect's events API: records every event posted (or refuses them while ``down``)."""

    down = False

    def __call__(self, events: list[dict]) -> None:
        if self.down:
            raise ConnectionError("Prefect is down")
        self.extend(
            (e["event"], e["payload"]["item"], e["resource"], e["payload"], e["related"]) for e in events
        )


@pytest.fixture
def queue(database_url: str, tmp_path: Path):
    store = ResultStore(tmp_path / "out", database_url)
    yield ReviewQueue(store, load_doctypes(), lease_seconds=600, clock=Clock())
    store.engine.dispose()


def _receipt(n: int):
    return needs_review(n).model_copy(
        update={"doc_type": "receipt", "fields": {"total": FieldResult(value="9.90")}}
    )


def test_requested_once_per_wait_and_overdue_once_after_the_types_time_limit(queue: ReviewQueue):
    options = ReviewOptions(
        rules={"bank_card": ReviewRule(time_limit_minutes=30, priority=2, assign_to="group:cards")}
    )
    queue.store.save(needs_review(1))
    queue.store.save(_receipt(2))
    sent = Sent()
    sent.down = True
    report = sweep(queue, options, review_url="http://review.test", post=sent)
    assert report.requested == [1, 2] and report.overdue == []  # announced: the events wait in the outbox
    assert (report.delivery.sent, report.delivery.waiting, sent) == (0, 2, [])
    sent.down = False
    report = sweep(queue, options, post=sent)
    assert report.requested == [] and (report.delivery.sent, report.delivery.waiting) == (2, 0)
    name, item, resource, payload, related = sent[0]
    assert (name, item, resource["prefect.resource.id"]) == (REVIEW_REQUESTED, 1, "ocrflow.review-item.1")
    assert payload["review_url"] == "http://review.test/items/1" and payload["assigned_to"] == "group:cards"
    assert related[0]["prefect.resource.id"].startswith("ocrflow.document.")
    card = queue.get(1)
    assert card.priority == 2 and card.due_at == card.created_at + timedelta(minutes=30)
    assert queue.get(2).due_at is None  # a receipt has no time limit

    assert sweep(queue, options, post=sent).requested == []  # once per wait
    queue.clock.current = card.created_at + timedelta(minutes=31)
    assert sweep(queue, options, post=sent).overdue == [1]
    assert sweep(queue, options, post=sent).overdue == []
    assert [name for name, *_ in sent] == [REVIEW_REQUESTED, REVIEW_REQUESTED, REVIEW_OVERDUE]

    queue.store.save(needs_review(1))  # re-queued by a new run: a new wait, announced again
    assert sweep(queue, options, post=sent).requested == [1]


def test_a_run_announces_what_it_queues_in_the_same_transaction(queue: ReviewQueue):
    options = ReviewOptions(rules={"bank_card": ReviewRule(time_limit_minutes=30, priority=2)})
    on_queued = announcer(queue.doctypes, options, review_url="http://review.test")
    queue.store.save(needs_review(1), on_queued=on_queued)
    card = queue.get(1)
    assert card.priority == 2 and card.requested_at is not None
    assert card.due_at == card.created_at + timedelta(minutes=30)
    sent = Sent()
    report = sweep(queue, options, post=sent)
    assert report.requested == [] and report.delivery.sent == 1  # announced by the run, sent by the sweep
    ((name, item, _, payload, _),) = sent
    assert (name, item, payload["priority"]) == (REVIEW_REQUESTED, 1, 2)
    assert payload["review_url"] == "http://review.test/items/1"


def test_queue_order_is_own_first_then_priority_then_due_time_then_age(queue: ReviewQueue):
    for n in range(1, 6):
        queue.store.save(needs_review(n))
    Accounts(queue.store.engine).add_user("alice", "correct horse")
    Accounts(queue.store.engine).set_groups("alice", ["cards"])
    current = queue.clock()
    queue.schedule(2, priority=0, due_at=current + timedelta(hours=1), assigned_to=None)
    queue.schedule(3, priority=5, due_at=None, assigned_to=None)
    queue.schedule(4, priority=0, due_at=None, assigned_to="group:cards")
    queue.assign(5, "lead", "bob")
    assert [i.id for i in queue.items()] == [3, 2, 1, 4, 5]
    assert [i.id for i in queue.items(reviewer="alice")] == [4, 3, 2, 1, 5]  # her group's item first
    assert [i.id for i in queue.items(reviewer="bob")] == [5, 3, 2, 1, 4]
    assert queue.claim("alice").item_id == 4 and queue.claim("bob").item_id == 5
    assert queue.claim("carol").item_id == 3
    assigned = [e for e in queue.events(5) if e.action == "assigned"]
    assert assigned[0].actor == "lead" and assigned[0].after["assigned_to"] == "bob"


def test_health_counts_waiting_throughput_handling_audit_agreement_and_accuracy_by_band(queue: ReviewQueue):
    audit = Reason(stage=Stage.ROUTE, code=AUDIT_SAMPLE, message="picked for the audit sample")
    for n in range(1, 5):
        card = FieldResult(value=VALID_CARD, confidence=0.97)
        queue.store.save(needs_review(n, card_number=card, bank=FieldResult(value="ICBC", confidence=0.92)))
    queue.store.save(needs_review(5).model_copy(update={"reasons": [audit]}))
    queue.store.save(_receipt(6))
    clock = queue.clock
    for item, values in ((1, {}), (2, {}), (3, {"card_number": "6222020200112233453"})):
        queue.claim("alice", item)
        clock.current += timedelta(minutes=4)
        queue.decide(item, "alice", values=values)
    queue.claim("bob", 5)
    queue.decide(5, "bob", override=True, note="as printed")
    clock.current += timedelta(hours=2)
    health = queue_health(queue)
    assert health.waiting == {"bank_card": {"1-4 h": 1}, "receipt": {"1-4 h": 1}}
    assert health.decisions_last_hour == 0 and health.decisions_per_hour == pytest.approx(4 / 24)
    assert len(health.handling_minutes) == 4 and sorted(health.handling_minutes)[-1] == pytest.approx(
        4, abs=0.1
    )
    assert (health.audit_decided, health.audit_agreed) == (1, 1)
    card = health.fields["bank_card"]["card_number"]
    assert (card.total[0.95], card.right[0.95]) == (3, 2)  # item 3's number was corrected
    assert "card_number" not in [n for n, b in health.fields["bank_card"].items() if b.total[0.9]]
    text = health_markdown(health)
    assert "| bank_card | 0 | 1 | 0 | 0 | 1 |" in text and "median 4.0 min" in text
    assert VALID_CARD not in text and "6222" not in text  # no document values in the artifact


def test_a_suggested_threshold_needs_enough_decisions_and_the_target_accuracy():
    verdict = FieldBands()
    verdict.total[0.95], verdict.right[0.95] = 40, 40
    verdict.total[0.9], verdict.right[0.9] = 30, 30
    verdict.total[0.8], verdict.right[0.8] = 30, 20
    assert verdict.suggested_threshold() == 0.9  # at 0.8 and up only 90 of 100 were right
    sparse = FieldBands()
    sparse.total[0.95], sparse.right[0.95] = 5, 5
    assert sparse.suggested_threshold() is None


def test_assign_and_health_from_the_command_line(tmp_path: Path):
    out = tmp_path / "out"
    store = ResultStore(out, Settings(out_dir=out).resolved_database_url())
    store.save(needs_review(1))
    store.engine.dispose()
    runner = CliRunner()
    added = runner.invoke(
        app,
        ["review", "add-user", "alice", "--group", "cards", "--out", str(out), "--password-stdin"],
        input="correct horse\n",
    )
    assert added.exit_code == 0 and "in group(s) cards" in added.output
    assigned = runner.invoke(
        app, ["review", "assign", "1", "--to", "group:cards", "--priority", "3", "--out", str(out)]
    )
    assert assigned.exit_code == 0 and "item 1 assigned to group:cards (priority 3)" in assigned.output
    health = runner.invoke(app, ["review", "health", "--out", str(out)])
    assert health.exit_code == 0 and "| bank_card | 1 | 0 | 0 | 0 | 1 |" in health.output


def test_review_list_is_in_queue_order(tmp_path: Path):
    out = tmp_path / "out"
    store = ResultStore(out, Settings(out_dir=out).resolved_database_url())
    for n in range(1, 4):
        store.save(needs_review(n))
    store.engine.dispose()
    runner = CliRunner()
    assert (
        runner.invoke(
            app, ["review", "assign", "3", "--to", "", "--priority", "9", "--out", str(out)]
        ).exit_code
        == 0
    )
    listing = runner.invoke(app, ["review", "list", "--out", str(out)]).output
    assert listing.index("#3") < listing.index("#1") < listing.index("#2")  # priority first, then age
