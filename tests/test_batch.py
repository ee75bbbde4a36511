"""The Batch API path through the real ``openai`` SDK against the fake's Files and Batches endpoints.

Submitting never sends a document twice, whatever step a crash interrupts; collecting hands
each answered document on and returns failed or expired ones to pending with their reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ocrflow import batch as batches
from ocrflow.admission import read_pending
from ocrflow.batch import BatchClient, Document, collect, read_ledger, submit
from ocrflow.doctypes import load_doctypes
from ocrflow.engines.openai_compat import OpenAICompatEngine
from ocrflow.errors import ConfigurationError
from ocrflow.ingest import ingest
from ocrflow.models import OcrTask
from ocrflow.settings import IngestOptions, OpenAIOptions
from tests.conftest import examples_in
from tests.fake_dashscope import DEFAULT_TEXT

KEY = "sk-test-batch-0123456789"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)


@pytest.fixture
def client(fake_dashscope) -> BatchClient:
    return BatchClient(OpenAICompatEngine(OpenAIOptions(base_url=fake_dashscope.compat_url)))


@pytest.fixture
def documents(tmp_path: Path) -> list[Document]:
    inbox = examples_in(tmp_path / "inbox", ("receipt_valid.png", "receipt_pages.pdf", "invoice_valid.png"))
    found = []
    for path in sorted(inbox.iterdir()):
        ingested = ingest(path, tmp_path / "work", IngestOptions())
        found.append(Document(ingested=ingested, pages=list(ingested.pages)))
    return found


def lines_of(fake, file_id: str) -> list[dict]:
    return [json.loads(line) for line in fake.batch.files[file_id].data.decode().splitlines()]


def test_requests_are_jsonl_lines_of_the_live_request_with_ids_from_hash_and_page(
    fake_dashscope, client, documents, tmp_path
):
    out = tmp_path / "out"
    (submission,) = submit(out, client, documents, OcrTask.TEXT_RECOGNITION)
    assert submission.state == "submitted" and submission.batch_id in fake_dashscope.batch.batches
    stored = fake_dashscope.batch.files[submission.file_id]
    assert stored.purpose == "batch" and stored.filename == f"{submission.id}.jsonl"
    lines = lines_of(fake_dashscope, submission.file_id)
    by_id = {line["custom_id"]: line for line in lines}
    receipt = next(doc for doc in documents if doc.ingested.source.path.name == "receipt_valid.png")
    document_id = receipt.ingested.source.document_id
    line = by_id[f"{document_id}:p1-1"]
    assert (line["method"], line["url"]) == ("POST", "/v1/chat/completions")
    engine = client.engine
    (planned,) = engine.plan([receipt.pages[0].path], OcrTask.TEXT_RECOGNITION)
    assert line["body"] == engine.request_body(planned.pages, OcrTask.TEXT_RECOGNITION, None)
    assert "stream" not in line["body"]
    pdf = next(doc for doc in documents if doc.ingested.source.path.suffix == ".pdf")
    assert f"{pdf.ingested.source.document_id}:p1-2" in by_id, "a PDF's pages are packed as live"
    batch = fake_dashscope.batch.batches[submission.batch_id]
    assert batch.completion_window == "24h" and batch.metadata == {"ocrflow_submission": submission.id}
    assert read_ledger(out).submissions[0].batch_id == submission.batch_id

    assert submit(out, client, documents, OcrTask.TEXT_RECOGNITION) == []
    assert fake_dashscope.batch.created == 1 and len(fake_dashscope.batch.files) == 1, "never submitted twice"


class Crash(Exception):
    pass


@pytest.mark.parametrize("step", ["after_upload", "before_batch", "after_batch"])
def test_a_crash_between_steps_is_finished_on_the_rerun_without_sending_twice(
    fake_dashscope, client, documents, tmp_path, monkeypatch, step
):
    out = tmp_path / "out"
    real_upload, real_create = BatchClient.upload, BatchClient.create

    def upload_then_crash(self, path):
        real_upload(self, path)
        raise Crash("the worker died before the file id was recorded")

    def crash(self, file_id, submission_id):
        raise Crash("the worker died between upload and batch creation")

    def create_then_crash(self, file_id, submission_id):
        real_create(self, file_id, submission_id)
        raise Crash("the worker died before the batch id was recorded")

    broken = {"after_upload": ("upload", upload_then_crash), "before_batch": ("create", crash)}
    broken["after_batch"] = ("create", create_then_crash)
    name, replacement = broken[step]
    monkeypatch.setattr(BatchClient, name, replacement)
    with pytest.raises(Crash):
        submit(out, client, documents, OcrTask.TEXT_RECOGNITION)
    (left,) = read_ledger(out).submissions
    assert left.state == (
        "uploaded" if step == "before_batch" else "prepared" if step == "after_upload" else "uploaded"
    )
    assert len(left.documents) == 3, "the documents are recorded before anything is sent"

    monkeypatch.setattr(BatchClient, name, real_upload if name == "upload" else real_create)
    assert submit(out, client, documents, OcrTask.TEXT_RECOGNITION) == []
    (done,) = read_ledger(out).submissions
    assert done.state == "submitted" and done.batch_id in fake_dashscope.batch.batches
    assert len(fake_dashscope.batch.files) == 1 and fake_dashscope.batch.created == 1


def test_collect_waits_then_concludes_each_document_with_its_answers(
    fake_dashscope, client, documents, tmp_path
):
    out = tmp_path / "out"
    fake_dashscope.batch.polls_to_finish = 2
    submit(out, client, documents, OcrTask.TEXT_RECOGNITION)
    concluded = {}

    def conclude(record, readings):
        concluded[record.ingested.source.document_id] = readings

    for _ in range(2):
        report = collect(out, client, conclude)
        assert report.still_open == 1 and concluded == {}
        assert report.batches[0].status == "in_progress"
    report = collect(out, client, conclude)
    assert report.still_open == 0 and len(report.concluded) == 3 and report.returned == []
    assert set(concluded) == {doc.ingested.source.document_id for doc in documents}
    pdf = next(doc for doc in documents if doc.ingested.source.path.suffix == ".pdf")
    (packed,) = concluded[pdf.ingested.source.document_id]
    assert packed.text == DEFAULT_TEXT and packed.page_number == 1 and packed.usage.pages == 2
    assert packed.usage.input_tokens > packed.usage.output_tokens > 0
    assert read_ledger(out).submissions[0].state == "finished"
    assert collect(out, client, conclude).batches == [], "a finished batch is not collected again"


def test_failed_and_expired_requests_go_back_to_pending_with_their_reason(
    fake_dashscope, client, documents, tmp_path
):
    out = tmp_path / "out"
    submit(out, client, documents, OcrTask.TEXT_RECOGNITION)
    fake_dashscope.inject("bad_request")  # the first line the batch runs fails
    fake_dashscope.batch.expire_after = 2  # the third is never run: the window ends
    concluded = []
    report = collect(out, client, lambda record, readings: concluded.append(record))
    assert report.batches[0].status in ("in_progress",)
    report = collect(out, client, lambda record, readings: concluded.append(record))
    assert report.batches[0].status == "expired" and len(concluded) == 1
    reasons = sorted(p.reason for p in report.returned)
    assert len(reasons) == 2
    assert (
        "failed (invalid_parameter_error)" in reasons[1] or "failed (invalid_parameter_error)" in reasons[0]
    )
    assert any("failed (batch_expired)" in reason for reason in reasons)
    pending = {p.document_id: p for p in read_pending(out)}
    assert {p.document_id for p in report.returned} == set(pending)
    (finished,) = read_ledger(out).submissions
    assert finished.returned == {p.document_id: p.reason for p in report.returned}, "the reason is kept"
    assert {p.document_id: p.reason for p in pending.values()} == finished.returned
    assert read_ledger(out).open_documents() == set(), "returned documents may be submitted again"
    (again,) = submit(
        out,
        client,
        [d for d in documents if d.ingested.source.document_id in pending],
        OcrTask.TEXT_RECOGNITION,
    )
    assert set(again.documents) == set(pending)


def test_files_are_split_at_the_request_and_size_limits(fake_dashscope, client, documents, tmp_path):
    made = submit(tmp_path / "a", client, documents, OcrTask.TEXT_RECOGNITION, max_requests=2)
    assert [len(sub.documents) for sub in made] == [2, 1] and fake_dashscope.batch.created == 2
    sizes = [len(lines_of(fake_dashscope, sub.file_id)) for sub in made]
    assert sizes == [2, 1]
    lines = [line for sub in made for line in fake_dashscope.batch.files[sub.file_id].data.splitlines()]
    limit = max(len(line) + 1 for line in lines)
    assert sum(len(line) + 1 for line in lines) > limit
    made = submit(tmp_path / "b", client, documents, OcrTask.TEXT_RECOGNITION, max_bytes=limit)
    assert len(made) >= 2 and sum(len(sub.documents) for sub in made) == 3
    for sub in made:
        assert len(fake_dashscope.batch.files[sub.file_id].data) <= limit


def test_batch_refuses_a_region_and_model_it_does_not_serve():
    with pytest.raises(ConfigurationError, match="does not serve 'qwen-vl-ocr' in the singapore region"):
        BatchClient(OpenAICompatEngine(OpenAIOptions(region="singapore")))
    BatchClient(OpenAICompatEngine(OpenAIOptions(region="beijing")))
    assert batches.custom_id("ab" * 32, 3, 4) == "ab" * 32 + ":p3-4"


@pytest.mark.parametrize("served", [True, False])
def test_a_batch_answer_keeps_the_logprobs_it_carries(fake_dashscope, client, documents, tmp_path, served):
    fake_dashscope.serves_logprobs = served
    fake_dashscope.batch.polls_to_finish = 0
    out = tmp_path / "out"
    submit(out, client, documents[:1], OcrTask.TEXT_RECOGNITION)
    concluded = []
    collect(out, client, lambda record, readings: concluded.extend(readings))
    (reading,) = concluded
    assert lines_of(fake_dashscope, read_ledger(out).submissions[0].file_id)[0]["body"]["logprobs"] is True
    if served:
        assert "".join(piece.token for piece in reading.logprobs) == DEFAULT_TEXT
    else:
        assert reading.logprobs is None


@pytest.mark.parametrize(("independent_reading", "images"), [(True, [2]), (False, [1, 1])])
def test_key_information_is_packed_only_where_the_independent_reading_can_place_its_values(
    fake_dashscope, client, documents, tmp_path, independent_reading, images
):
    pdf = next(doc for doc in documents if doc.ingested.source.path.suffix == ".pdf")
    receipt = pdf.model_copy(update={"doctype": load_doctypes()["receipt"]})
    out = tmp_path / "out"
    submit(
        out, client, [receipt], OcrTask.KEY_INFORMATION_EXTRACTION, independent_reading=independent_reading
    )
    lines = lines_of(fake_dashscope, read_ledger(out).submissions[0].file_id)
    sent = [
        sum(part["type"] == "image_url" for part in line["body"]["messages"][0]["content"]) for line in lines
    ]
    assert sent == images


def test_reading_the_ledger_does_not_import_the_openai_sdk():
    # Every run reads the ledger (admission) and the flow imports the batch path; the SDK's import
    # costs ~0.8 CPU-s, which a run that submits no batch should not pay.
    script = (
        "import sys, tempfile; from ocrflow.batch import read_ledger; import ocrflow.batch_run; "
        "read_ledger(tempfile.mkdtemp()); print('openai' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
