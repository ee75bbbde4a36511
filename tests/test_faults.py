"""Faults injected through the engine registry, the same seam real engines use."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flows.process_documents import process_documents
from ocrflow.engines import ENGINES
from ocrflow.engines.rapid import RapidOcrEngine
from ocrflow.errors import EngineError, TransientError
from ocrflow.models import OcrTask, Status
from ocrflow.settings import Settings
from tests.conftest import EXAMPLES


class FlakyEngine(RapidOcrEngine):
    """Fails each page once with a rate limit, then reads it."""

    name = "flaky"
    calls: dict[str, int] = {}

    def recognize(self, image: Path, task: OcrTask, *, page_number: int = 1, doctype=None):
        FlakyEngine.calls[str(image)] = FlakyEngine.calls.get(str(image), 0) + 1
        if FlakyEngine.calls[str(image)] == 1:
            raise TransientError("HTTP 429: rate limit reached", code="rate_limited")
        return super().recognize(image, task, page_number=page_number, doctype=doctype)


class RefusingEngine(RapidOcrEngine):
    name = "refusing"
    calls = 0

    def recognize(self, image: Path, task: OcrTask, *, page_number: int = 1, doctype=None):
        RefusingEngine.calls += 1
        raise EngineError("the API key is invalid; set DASHSCOPE_API_KEY", code="invalid_api_key")


class BuggyEngine(RapidOcrEngine):
    name = "buggy"

    def recognize(self, image: Path, task: OcrTask, *, page_number: int = 1, doctype=None):
        raise ZeroDivisionError("a bug")


@pytest.fixture(autouse=True)
def fake_engines(monkeypatch, prefect_server):
    for cls in (FlakyEngine, RefusingEngine, BuggyEngine):
        monkeypatch.setitem(ENGINES, cls.name, lambda settings, cls=cls: cls(settings.local_engine))


def _run(engine: str, tmp_path: Path, name: str = "bank_card_valid.png"):
    shutil.copy(EXAMPLES / name, tmp_path / name)
    return process_documents(
        paths=[str(tmp_path / name)], out=str(tmp_path / "out"), settings=Settings(engine=engine)
    )


def test_transient_errors_are_retried(tmp_path):
    (result,) = _run("flaky", tmp_path)
    assert result.status is Status.ACCEPTED
    assert list(FlakyEngine.calls.values()) == [2]


def test_permanent_errors_are_not_retried_and_say_what_to_fix(tmp_path):
    (result,) = _run("refusing", tmp_path)
    assert RefusingEngine.calls == 1
    assert result.status is Status.REJECTED
    (reason,) = result.reasons
    assert (reason.stage.value, reason.code, reason.page) == ("ocr", "invalid_api_key", 1)
    assert "DASHSCOPE_API_KEY" in reason.message


def test_a_bug_in_a_stage_still_leaves_a_record(tmp_path):
    (result,) = _run("buggy", tmp_path)
    assert result.status is Status.REJECTED
    assert [r.code for r in result.reasons] == ["ocr_failed"]
    assert (tmp_path / "out" / f"{result.document_id}.json").exists()


def test_rejected_documents_are_tried_again_on_the_next_run(tmp_path):
    (first,) = _run("refusing", tmp_path)
    (second,) = _run("local", tmp_path)
    assert first.document_id == second.document_id
    assert (first.status, second.status) == (Status.REJECTED, Status.ACCEPTED)
