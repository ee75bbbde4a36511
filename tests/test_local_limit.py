"""Workers on one machine share its cores: local OCR takes a slot of a Prefect global concurrency limit."""

from __future__ import annotations

import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from flows.process_documents import process_documents
from ocrflow.engines import ENGINES
from ocrflow.engines.rapid import RapidOcrEngine
from ocrflow.errors import ConfigurationError
from ocrflow.models import OcrTask, Status
from ocrflow.settings import LocalEngineOptions, Settings
from tests.conftest import examples_in

NAMES = ("bank_card_valid.png", "cn_id_card_valid.png", "train_ticket_valid.png")


class TimedEngine(RapidOcrEngine):
    """Records when each page's OCR ran; a pause makes overlaps easy to see."""

    name = "timed"
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def recognize(self, image: Path, task: OcrTask, *, page_number: int = 1, doctype=None):
        started = time.monotonic()
        time.sleep(0.5)
        result = super().recognize(image, task, page_number=page_number, doctype=doctype)
        with TimedEngine.lock:
            TimedEngine.spans.append((started, time.monotonic()))
        return result


@pytest.fixture(autouse=True)
def timed_engine(monkeypatch, prefect_server):
    monkeypatch.setitem(ENGINES, TimedEngine.name, lambda settings: TimedEngine(settings.local_engine))
    TimedEngine.spans = []


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return examples_in(tmp_path / "inbox", NAMES)


def _overlaps(spans: list[tuple[float, float]]) -> int:
    spans = sorted(spans)
    return sum(1 for (_, end), (start, _) in pairwise(spans) if start < end)


def _run(inbox: Path, out: Path, limit: str | None):
    settings = Settings(engine="timed", local_engine=LocalEngineOptions(shared_limit=limit))
    return process_documents(paths=[str(inbox)], out=str(out), settings=settings)


def test_pages_take_turns_under_a_one_slot_limit_and_overlap_without_it(inbox: Path, tmp_path: Path):
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="test-local-ocr", limit=1))
    results = _run(inbox, tmp_path / "limited", "test-local-ocr")
    assert len(TimedEngine.spans) == 3 and _overlaps(TimedEngine.spans) == 0
    assert all(r.status is not Status.REJECTED for r in results)

    TimedEngine.spans = []
    _run(inbox, tmp_path / "free", None)
    assert len(TimedEngine.spans) == 3 and _overlaps(TimedEngine.spans) > 0


def test_a_limit_the_server_lacks_stops_the_run_with_one_clear_error(inbox: Path, tmp_path: Path):
    with pytest.raises(ConfigurationError, match="'no-such-limit'.*ocrflow setup"):
        _run(inbox, tmp_path / "out", "no-such-limit")
    assert TimedEngine.spans == []
