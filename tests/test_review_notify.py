"""The example review automations on a real ``prefect server start``: made by ``ocrflow setup``,
and a requested item really posts to the webhook they name."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ocrflow.doctypes import load_doctypes
from ocrflow.review.operations import sweep
from ocrflow.review.queue import ReviewQueue
from ocrflow.settings import ReviewOptions, ReviewRule
from ocrflow.store import ResultStore
from tests.prefect_servers import ServerDidNotStart, prefect_server
from tests.review_support import needs_review

BIN = Path(sys.executable).parent


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).received.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args) -> None:
        return


def test_setup_makes_the_review_automations_and_a_requested_item_is_posted_to_the_webhook(tmp_path: Path):
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{hook.server_address[1]}/review-hook"
    try:
        with prefect_server(tmp_path / "prefect", start_seconds=240) as server:
            env = {**server.env, "OCRFLOW_REVIEW__NOTIFY_WEBHOOK_URL": url}
            first = subprocess.run(
                [BIN / "ocrflow", "setup"], env=env, capture_output=True, text=True, timeout=300
            )
            assert first.returncode == 0, first.stderr
            assert "created   notification block ocrflow-review-notify" in first.stdout
            assert "created   automation ocrflow: review requested" in first.stdout
            assert "created   automation ocrflow: review overdue" in first.stdout
            second = subprocess.run(
                [BIN / "ocrflow", "setup"], env=env, capture_output=True, text=True, timeout=300
            )
            assert (
                second.returncode == 0 and "created" not in second.stdout and "updated" not in second.stdout
            )

            from prefect.settings import PREFECT_API_URL, temporary_settings

            from ocrflow.review.events import flush_events

            store = ResultStore(tmp_path / "out", f"sqlite:///{tmp_path / 'out.sqlite3'}")
            store.save(needs_review(1, source=tmp_path / "inbox" / "card-1.png"))
            queue = ReviewQueue(store, load_doctypes())
            options = ReviewOptions(rules={"bank_card": ReviewRule(time_limit_minutes=60)})
            # Prefect keeps one events worker per process, bound to the API it first sent to:
            # flows that earlier tests ran against the session's test server leave one behind.
            flush_events()
            with temporary_settings({PREFECT_API_URL: server.url}):
                assert sweep(queue, options, review_url="http://review.test").requested == [1]
                flush_events()
            store.engine.dispose()
            deadline = time.monotonic() + 120
            while not _Hook.received and time.monotonic() < deadline:
                time.sleep(1)
    except ServerDidNotStart as exc:
        pytest.fail(str(exc))
    finally:
        hook.shutdown()
    assert _Hook.received, "the automation did not post to the webhook"
    posted = _Hook.received[0]
    assert posted["subject"] == "ocrflow: card-1.png waits for review"
    assert "Review item 1 (bank_card): invalid_checksum." in posted["text"]
    assert "http://review.test/items/1" in posted["text"]
