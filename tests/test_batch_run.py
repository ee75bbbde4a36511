"""Batch mode end to end: submit a run's documents, collect them later through the same path.

Inline first (the plain functions), then the two flows on a Prefect test server, with a crash
between upload and batch creation and a re-run, all through the real ``openai`` SDK and the
fake's Files and Batches endpoints.
"""

from __future__ import annotations

import json

import pytest

from ocrflow.admission import Admission, read_pending
from ocrflow.batch import BatchClient, read_ledger
from ocrflow.batch_run import collect_run, submit_run
from ocrflow.models import Status
from ocrflow.pipeline import Context, InlineRunner, Job, run_documents
from ocrflow.settings import OpenAIOptions, Settings
from tests.conftest import examples_in

KEY = "sk-test-batch-run-0123456789"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)


@pytest.fixture
def settings(fake_dashscope, tmp_path) -> Settings:
    return Settings(
        out_dir=tmp_path / "out", engine="openai", openai=OpenAIOptions(base_url=fake_dashscope.compat_url)
    )


@pytest.fixture
def inbox(tmp_path):
    return examples_in(tmp_path / "inbox", ("receipt_valid.png", "invoice_valid.png", "receipt_pages.pdf"))


def submitted(settings: Settings, inbox) -> Context:
    """A context whose output folder has the inbox's documents submitted by Batch."""
    ctx, job = Context(settings), Job()
    admission = Admission(ctx, job)
    submit_run(ctx, admission, admission.sources([inbox]), job)
    admission.close()
    return ctx


def test_documents_wait_on_their_batch_then_are_concluded_like_live_answers(settings, inbox, fake_dashscope):
    ctx = Context(settings)
    job = Job(doc_type="receipt")
    fake_dashscope.kv = {"company": "OJC MARKETING SDN BHD", "total": "193.00"}
    admission = Admission(ctx, job)
    run = submit_run(ctx, admission, admission.sources([inbox]), job)
    admission.close()
    (submission,) = run.submissions
    assert len(submission.documents) == 3 and run.concluded == ()
    assert not any(p.suffix == ".json" and p.stem != "batches" for p in settings.out_dir.glob("*.json"))
    assert [r.path for r in fake_dashscope.requests if r.path != "batch line"] == [], "nothing read live"

    live = Admission(ctx, job)
    results = run_documents(ctx, InlineRunner(ctx), live, live.sources([inbox]), job)
    assert results == [] and len(live.skipped) == 3, "a live run does not pay again for what waits on a batch"

    collected, results = collect_run(ctx)
    assert collected.still_open == 1 and results == []
    collected, results = collect_run(ctx)
    assert len(results) == 3 and collected.returned == []
    for result in results:
        saved = json.loads((settings.out_dir / f"{result.document_id}.json").read_text())
        assert saved["status"] == result.status.value and saved["doc_type"] == "receipt"
        assert result.fields["company"].value == "OJC MARKETING SDN BHD"
        assert result.usage.input_tokens > 0
    assert ctx.store.status_of(results[0].document_id) in (Status.ACCEPTED, Status.NEEDS_REVIEW)
    assert collect_run(ctx)[1] == [], "collected once"


def test_a_failed_request_returns_its_document_to_pending_with_the_reason(settings, inbox, fake_dashscope):
    ctx = submitted(settings, inbox)
    fake_dashscope.batch.polls_to_finish = 0
    fake_dashscope.inject("content_refused")
    collected, results = collect_run(ctx)
    assert len(results) == 2
    (returned,) = collected.returned
    assert "failed (data_inspection_failed)" in returned.reason
    (pending,) = read_pending(settings.out_dir)
    assert pending.document_id == returned.document_id and pending.reason == returned.reason
    again = Admission(ctx, Job())
    sources = again.sources([inbox])
    assert sources[0].resolve() == returned.path.resolve(), "the next run takes it first"


def test_the_flows_on_a_prefect_server_survive_a_crash_between_upload_and_batch_creation(
    prefect_server, settings, inbox, fake_dashscope, monkeypatch
):
    from flows.collect_batches import collect_batches
    from flows.process_documents import process_documents

    real_create = BatchClient.create

    def crash(self, file_id, submission_id):
        raise RuntimeError("the worker died between upload and batch creation")

    monkeypatch.setattr(BatchClient, "create", crash)
    state = process_documents(
        paths=[str(inbox)], out=str(settings.out_dir), settings=settings, batch=True, return_state=True
    )
    assert state.is_failed()
    (left,) = read_ledger(settings.out_dir).submissions
    assert left.state == "uploaded" and len(left.documents) == 3

    monkeypatch.setattr(BatchClient, "create", real_create)
    assert (
        process_documents(paths=[str(inbox)], out=str(settings.out_dir), settings=settings, batch=True) == []
    )
    (done,) = read_ledger(settings.out_dir).submissions
    assert done.state == "submitted" and fake_dashscope.batch.created == 1
    assert len([f for f in fake_dashscope.batch.files.values() if f.purpose == "batch"]) == 1

    assert collect_batches(out=str(settings.out_dir), settings=settings) == []  # still running
    results = collect_batches(out=str(settings.out_dir), settings=settings)
    assert len(results) == 3 and all(r.status in (Status.ACCEPTED, Status.NEEDS_REVIEW) for r in results)
    assert read_ledger(settings.out_dir).submissions[0].state == "finished"


def test_the_batch_summary_prices_at_half_and_shows_each_batch(settings, inbox, fake_dashscope):
    from ocrflow.report import batch_cost_line, batches_markdown
    from ocrflow.settings import ModelPrice

    ctx = submitted(settings, inbox)
    fake_dashscope.batch.polls_to_finish = 0
    fake_dashscope.inject("rate_limit")
    collected, results = collect_run(ctx)
    table = batches_markdown(collected.batches, collected.returned)
    (sub,) = collected.batches
    assert f"| {sub.batch_id} | 3 | completed | 4 | 3 | 1 |" in table, (
        "a PDF of 2 pages is 2 requests for boxes"
    )
    assert "Back to pending" in table and "failed (limit_requests)" in table
    usage = sum(r.usage.input_tokens for r in results), sum(r.usage.output_tokens for r in results)
    options = settings.cost.model_copy(update={"prices": {"qwen-vl-ocr": ModelPrice(input=1.0, output=2.0)}})
    line = batch_cost_line(results, "qwen-vl-ocr", options)
    assert f"{(usage[0] * 1.0 + usage[1] * 2.0) / 1e6 / 2:.4f} USD at the Batch price (50%)" in line
