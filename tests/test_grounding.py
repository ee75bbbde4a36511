"""An API engine's values are checked against the embedded engine's reading of the same page.

Through the real ``openai`` and ``dashscope`` SDKs against the loopback fake, on a real SROIE
receipt read by real RapidOCR: the fake answers with the receipt's labelled values, or with one
of them wrong, as a model would.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from ocrflow.engines.rapid import RapidOcrEngine
from ocrflow.models import Grounding, OcrTask, Status
from ocrflow.pipeline import Context, process_document
from ocrflow.settings import (
    CostOptions,
    DashScopeOptions,
    OpenAIOptions,
    ReviewOptions,
    ReviewRule,
    Settings,
    VerifyOptions,
)
from tests.conftest import eval_dev

RECEIPT = "receipts/sroie_000"
LABELLED = {
    "company": "BOOK TA .K (TAMAN DAYA) SDN BHD",
    "date": "2018-12-25",
    "address": "NO.53 55,57 & 59, JALAN SAGU 18, TAMAN DAYA, 81100 JOHOR BAHRU, JOHOR.",
    "total": "9.00",
}


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-grounding")


@pytest.fixture(scope="module")
def receipt():
    path = eval_dev(f"{RECEIPT}.jpg")
    truth = json.loads(eval_dev(f"{RECEIPT}.gt.json").read_text())["fields"]
    assert truth["total"] == LABELLED["total"] and truth["company"] == LABELLED["company"]
    return path


def run(fake, engine, tmp_path, receipt, answer, api: str = "openai", **settings):
    fake.kv = answer
    openai = settings.pop("openai", OpenAIOptions())
    options = Settings(
        out_dir=tmp_path / "out",
        engine=api,
        openai=openai.model_copy(update={"base_url": fake.compat_url}),
        dashscope=DashScopeOptions(base_url=fake.native_url),
        cost=CostOptions(cache="off"),
        **settings,
    )
    return process_document(Context(options, given_verifier=engine), receipt, doc_type="receipt")


@pytest.mark.parametrize("api", ["openai", "dashscope"])
def test_a_wrong_total_ends_in_review_with_both_readings_and_where_the_page_prints_it(
    fake_dashscope, engine, tmp_path, receipt, api
):
    result = run(fake_dashscope, engine, tmp_path, receipt, {**LABELLED, "total": "9.80"}, api)

    assert result.status is Status.NEEDS_REVIEW
    (reason,) = [r for r in result.reasons if r.field == "total"]
    assert reason.code == "readings_disagree" and reason.page == 1
    assert "'9.80'" in reason.message and "'9.00'" in reason.message, "both readings are named"
    total = result.fields["total"]
    assert total.value == "9.80", "the model's value is kept, never overwritten"
    assert total.candidates == ["9.00"], "the independent reading is offered as the correction"
    evidence = total.evidence
    assert evidence.outcome is Grounding.NEAR and evidence.reading == "9.00" and evidence.differs_at == [2]
    assert evidence.reader == f"local:{engine.model}" and evidence.page == 1
    (where,) = evidence.boxes
    assert "9.00" in where.line and len(where.box) == 4 and where.box[2][0] > where.box[0][0]
    assert total.confidence < 0.9, "below the routing threshold"
    assert result.usage.verify_cpu_seconds > 0, "the independent reading's CPU is recorded"


@pytest.mark.parametrize("api", ["openai", "dashscope"])
def test_an_api_result_keeps_the_independent_reading_as_its_pages_lines_and_text(
    fake_dashscope, engine, tmp_path, receipt, api
):
    result = run(fake_dashscope, engine, tmp_path, receipt, LABELLED, api)

    (page,) = result.pages
    assert page.lines == [], "the engine answered with fields, no lines"
    assert len(page.independent_lines) > 10 and all(len(line.box) == 4 for line in page.independent_lines)
    assert "JALAN SAGU" in result.text.upper() and "TAMAN DAYA" in result.text.upper()
    assert '"total"' not in result.text, "the page's text, not the model's answer"
    stored = json.loads((tmp_path / "out" / f"{result.document_id}.json").read_text())
    lines = stored["pages"][0]["independent_lines"]
    assert [line["text"] for line in lines] == [line.text for line in page.independent_lines]
    assert len(json.dumps(lines)) < 20_000, "a few kilobytes a page"

    off = VerifyOptions(independent_reading=False)
    unread = run(fake_dashscope, engine, tmp_path / "off", receipt, LABELLED, api, verify=off)
    assert unread.pages[0].independent_lines == [] and '"total"' in unread.text, "the answer, as before"


def test_the_labelled_values_are_grounded_with_a_computed_confidence_and_a_location(
    fake_dashscope, engine, tmp_path, receipt
):
    result = run(fake_dashscope, engine, tmp_path, receipt, LABELLED)

    for name in ("date", "total"):
        field = result.fields[name]
        assert field.evidence.outcome is Grounding.GROUNDED, name
        assert 0.9 < field.confidence < 1.0, "computed from evidence, not taken as read"
        assert field.boxes and field.boxes[0].page == 1
        assert set(field.evidence.factors) >= {"prior", "grounding", "reader_score"}
    assert not [r for r in result.reasons if r.code in ("ungrounded", "readings_disagree")]


def test_a_value_the_page_does_not_print_is_ungrounded(fake_dashscope, engine, tmp_path, receipt):
    result = run(
        fake_dashscope, engine, tmp_path, receipt, {**LABELLED, "company": "VIVOPAC MARKETING SDN BHD"}
    )

    (reason,) = [r for r in result.reasons if r.field == "company"]
    assert reason.code == "ungrounded" and result.status is Status.NEEDS_REVIEW
    assert result.fields["company"].evidence.outcome is Grounding.NOT_FOUND


def test_without_the_independent_reading_fields_say_unverified_and_a_rule_can_require_it(
    fake_dashscope, engine, tmp_path, receipt
):
    off = VerifyOptions(independent_reading=False)
    result = run(fake_dashscope, engine, tmp_path, receipt, {**LABELLED, "total": "9.80"}, verify=off)
    total = result.fields["total"]
    assert total.evidence.outcome is Grounding.UNVERIFIED and "grounding" not in total.evidence.factors
    assert total.confidence < 1.0 and result.usage.verify_cpu_seconds == 0
    assert not [r for r in result.reasons if r.code == "unverified"]

    rule = ReviewOptions(rules={"receipt": ReviewRule(require_verification=True)})
    required = run(fake_dashscope, engine, tmp_path / "rule", receipt, LABELLED, verify=off, review=rule)
    assert required.status is Status.NEEDS_REVIEW
    assert {r.field for r in required.reasons if r.code == "unverified"} == set(LABELLED)


def test_the_models_token_probabilities_are_weighed_when_returned_and_ignored_when_not(
    fake_dashscope, engine, tmp_path, receipt
):
    fake_dashscope.doubt = {"9.00": math.log(0.2)}
    openai = {"logprobs": "always"}
    without = run(
        fake_dashscope, engine, tmp_path / "none", receipt, LABELLED, openai=OpenAIOptions(**openai)
    )
    assert "logprob" not in without.fields["total"].evidence.factors, "a server that sends none"

    fake_dashscope.serves_logprobs = True
    doubted = run(
        fake_dashscope, engine, tmp_path / "sent", receipt, LABELLED, openai=OpenAIOptions(**openai)
    )
    total = doubted.fields["total"]
    assert 0 < total.evidence.factors["logprob"] <= 0.2, "each doubted token at 0.2"
    assert total.confidence < without.fields["total"].confidence
    sure = doubted.fields["date"].evidence.factors["logprob"]
    assert sure > 0.99 and doubted.fields["date"].confidence > without.fields["date"].confidence


class StartTimes:
    """The embedded engine, noting when each of its readings starts."""

    def __init__(self, engine: RapidOcrEngine) -> None:
        self.engine = engine
        self.started: list[float] = []

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def recognize(self, image: Path, task: OcrTask, **kwargs):
        self.started.append(time.monotonic())
        return self.engine.recognize(image, task, **kwargs)


def test_the_independent_reading_is_made_while_the_api_request_waits_for_its_answer(
    fake_dashscope, engine, tmp_path, receipt
):
    fake_dashscope.latency = 2.0
    reader = StartTimes(engine)
    fake_dashscope.kv = LABELLED
    settings = Settings(
        out_dir=tmp_path / "out",
        engine="openai",
        openai=OpenAIOptions(base_url=fake_dashscope.compat_url),
        cost=CostOptions(cache="off"),
    )

    result = process_document(Context(settings, given_verifier=reader), receipt, doc_type="receipt")

    (request,) = fake_dashscope.requests
    (started,) = reader.started
    assert started < request.at + fake_dashscope.latency, "read before the answer could have come back"
    assert result.fields["total"].evidence.outcome is Grounding.GROUNDED
    assert result.usage.verify_cpu_seconds > 0, "its CPU is recorded from the thread that read"


def test_the_independent_reader_detects_smaller_and_pads_lines_less_than_the_embedded_engine(
    fake_dashscope, tmp_path, receipt
):
    settings = Settings(
        out_dir=tmp_path / "out",
        engine="openai",
        openai=OpenAIOptions(base_url=fake_dashscope.compat_url),
        cost=CostOptions(cache="off"),
        verify=VerifyOptions(detection_side=512, line_width=64, line_batch=2),
    )
    ctx = Context(settings)
    assert settings.local_engine.detection_side == 736 and settings.local_engine.line_width == 240
    loaded = ctx.verifier._load().cfg
    assert loaded.Det.limit_side_len == 512 and list(loaded.Rec.rec_img_shape) == [3, 48, 64]
    assert loaded.Rec.rec_batch_num == 2
    embedded = RapidOcrEngine(settings.local_engine)._load().cfg
    assert list(embedded.Rec.rec_img_shape) == [3, 48, 240] and embedded.Rec.rec_batch_num == 6

    fake_dashscope.kv = LABELLED
    result = process_document(ctx, receipt, doc_type="receipt")
    for name in ("date", "total"):
        assert result.fields[name].evidence.outcome is Grounding.GROUNDED, name
