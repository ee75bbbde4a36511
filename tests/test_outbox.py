"""The outbox: events written with the change they report, delivered exactly once when Prefect is up.

The end-to-end test decides items through ``ocrflow review`` while no Prefect server answers,
then starts a real ``prefect server start`` and delivers, twice and once through a process
killed between the server's answer and the commit: the server holds exactly one
``ocrflow.review.completed`` per decision.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from ocrflow.outbox import deliver
from ocrflow.review.events import REVIEW_COMPLETED
from ocrflow.store import ResultStore, add_event
from tests.conftest import ROOT
from tests.prefect_servers import ServerDidNotStart, free_port, prefect_server
from tests.review_support import VALID_CARD, needs_review

BIN = Path(sys.executable).parent


def test_two_deliverers_at_once_post_each_event_once(tmp_path: Path, database_url: str):
    store = ResultStore(tmp_path / "out", database_url)
    from sqlalchemy.orm import Session

    with Session(store.engine) as session, session.begin():
        for n in range(250):
            add_event(session, "ocrflow.test", {"prefect.resource.id": f"ocrflow.test.{n}"}, {"n": n})
    posted: list[str] = []

    def post(events):
        time.sleep(0.05)  # a slow server: the other deliverer comes while this batch is out
        posted.extend(event["id"] for event in events)

    threads = [threading.Thread(target=deliver, args=(store.engine, post)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(posted) == len(set(posted)) == 250
    assert deliver(store.engine, post).sent == 0
    store.engine.dispose()


def _completed_events(api_url: str, document_ids: list[str]) -> list[dict]:
    body = {
        "filter": {
            "event": {"name": [REVIEW_COMPLETED]},
            "resource": {"id": [f"ocrflow.document.{d}" for d in document_ids]},
        },
        "limit": 50,
    }
    response = httpx.post(f"{api_url}/events/filter", json=body, timeout=30)
    response.raise_for_status()
    return response.json()["events"]


def _ocrflow(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ocrflow"), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_decisions_made_while_prefect_is_down_reach_it_exactly_once_when_it_is_up(
    tmp_path: Path, database_url: str
):
    out = tmp_path / "out"
    store = ResultStore(out, database_url)
    documents = [needs_review(n) for n in (1, 2, 3)]
    for document in documents:
        store.save(document)
    store.engine.dispose()
    where = ["--out", str(out), "--db", database_url]
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base.update(OCRFLOW_REVIEWER="alice", PYTHONPATH=str(ROOT))
    down = {**base, "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"}  # nothing listens there
    first = _ocrflow(["review", "correct", "1", *where, "--set", f"card_number={VALID_CARD}"], down)
    assert first.returncode == 0, first.stderr
    assert "waits in the outbox" in first.stdout
    second = _ocrflow(["review", "reject", "2", *where, "--note", "blurred"], down)
    assert second.returncode == 0, second.stderr
    try:
        with prefect_server(tmp_path / "prefect", start_seconds=240) as server:
            up = {**base, "PREFECT_API_URL": server.url}
            # Killed after Prefect took the events, before the outbox recorded it: sent again, stored once.
            killed = _ocrflow(["review", "sweep", *where], {**up, "OCRFLOW_CRASH_AT": "delivered"})
            assert killed.returncode == -signal.SIGKILL
            swept = _ocrflow(["review", "sweep", *where], up)
            assert swept.returncode == 0, swept.stderr
            assert "0 waiting" in swept.stdout
            third = _ocrflow(["review", "correct", "3", *where, "--set", f"card_number={VALID_CARD}"], up)
            assert third.returncode == 0 and "outbox" not in third.stdout, third.stdout
            again = _ocrflow(["review", "sweep", *where], up)
            assert "0 event(s) sent to Prefect, 0 waiting" in again.stdout
            ids = [d.document_id for d in documents]
            deadline = time.monotonic() + 60
            while len(events := _completed_events(server.url, ids)) < 3 and time.monotonic() < deadline:
                time.sleep(1)
            time.sleep(3)  # a duplicate would have arrived by now
            events = _completed_events(server.url, ids)
    except ServerDidNotStart as exc:
        pytest.fail(str(exc))
    decisions = sorted((e["payload"]["document_id"], e["payload"]["decision"]) for e in events)
    assert decisions == sorted(zip(ids, ["corrected", "rejected", "corrected"], strict=True))


def test_with_no_server_configured_an_event_waits_and_prefect_is_not_imported(tmp_path: Path):
    # An inline run ends by delivering; importing Prefect only to learn there is no server cost ~1.4 CPU-s.
    script = f"""
import sys
from sqlalchemy.orm import Session
from ocrflow.outbox import deliver
from ocrflow.store import ResultStore, add_event

store = ResultStore({str(tmp_path / "out")!r}, {f"sqlite:///{tmp_path / 'outbox.sqlite3'}"!r})
with Session(store.engine) as session, session.begin():
    add_event(session, "ocrflow.test", {{"prefect.resource.id": "ocrflow.test.1"}}, {{}})
delivery = deliver(store.engine)
print(delivery.sent, delivery.waiting, delivery.problem, "prefect" in sys.modules)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # no profile that could name a server
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(maxsplit=2)[:2] == ["0", "1"]
    assert done.stdout.rstrip().endswith("(PREFECT_API_URL) False")


def test_with_prefect_imported_its_own_settings_decide(tmp_path: Path, monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from sqlalchemy.orm import Session

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    store = ResultStore(tmp_path / "out", f"sqlite:///{tmp_path / 'outbox.sqlite3'}")
    with Session(store.engine) as session, session.begin():
        add_event(session, "ocrflow.test", {"prefect.resource.id": "ocrflow.test.1"}, {})
    # A flow run's or a test harness's server: set in Prefect's settings only, not the environment.
    url = f"http://127.0.0.1:{free_port()}/api"
    with temporary_settings({PREFECT_API_URL: url}):
        delivery = deliver(store.engine)
    assert delivery.waiting == 1 and delivery.problem is not None
    assert "PREFECT_API_URL" not in delivery.problem  # it tried that server instead of saying none is set
    store.engine.dispose()
