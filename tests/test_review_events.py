"""A decision tells Prefect: ``ocrflow.review.completed`` reaches a real Prefect server.

The event's shape is a contract with the ``finalize-review`` deployment; without a
configured API the decision still stands and a warning says the event was not sent.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from ocrflow.doctypes import load_doctypes
from ocrflow.review.events import REVIEW_COMPLETED, flush_events
from ocrflow.review.queue import ReviewQueue
from ocrflow.store import ResultStore
from tests.review_support import needs_review


@pytest.fixture
def queue(tmp_path: Path):
    store = ResultStore(tmp_path / "out", f"sqlite:///{tmp_path / 'q.sqlite3'}")
    yield ReviewQueue(store, load_doctypes())
    store.engine.dispose()


def _events_about(document_id: str, since: datetime) -> list[dict]:
    # The server is shared by the session, and other tests decide documents with the same id.
    body = {
        "filter": {
            "event": {"name": [REVIEW_COMPLETED]},
            "resource": {"id": [f"ocrflow.document.{document_id}"]},
            "occurred": {"since": since.isoformat()},
        },
        "limit": 10,
    }
    response = httpx.post(f"{PREFECT_API_URL.value()}/events/filter", json=body, timeout=30)
    response.raise_for_status()
    return response.json()["events"]


def test_a_decision_emits_review_completed_to_the_prefect_server(prefect_server, queue: ReviewQueue):
    queue.store.save(needs_review(1, source=Path("/in/scans/card 1.png")))
    since = datetime.now(UTC)
    claim = queue.claim("alice")
    outcome = queue.decide(claim.item_id, "alice", values={"card_number": "6222020200112233446"})
    assert outcome.event_sent
    flush_events()
    deadline = time.monotonic() + 30
    while not (events := _events_about(claim.document_id, since)) and time.monotonic() < deadline:
        time.sleep(0.5)
    (event,) = events
    assert event["event"] == REVIEW_COMPLETED
    assert event["resource"] == {
        "prefect.resource.id": f"ocrflow.document.{claim.document_id}",
        "prefect.resource.name": "card 1.png",
    }
    assert event["payload"] == {
        "document_id": claim.document_id,
        "status": "accepted",
        "decision": "corrected",
        "result": str(outcome.result_path.resolve()),
        "reviewer": "alice",
    }
    assert Path(event["payload"]["result"]).is_absolute()


def test_without_a_prefect_api_the_decision_stands_and_a_warning_says_so(
    queue: ReviewQueue, caplog: pytest.LogCaptureFixture
):
    queue.store.save(needs_review(1))
    claim = queue.claim("alice")
    with temporary_settings(restore_defaults={PREFECT_API_URL}), caplog.at_level(logging.WARNING):
        outcome = queue.decide(claim.item_id, "alice", reject=True, note="blurred")
    assert not outcome.event_sent
    assert queue.get(claim.item_id).state == "rejected"
    assert queue.store.load(claim.document_id).status.value == "rejected"
    assert any(REVIEW_COMPLETED in r.getMessage() and "not sent" in r.getMessage() for r in caplog.records)
