"""The Batch API path: documents read at half price within 24 hours instead of now.

Submitting (:func:`submit`) turns each document's requests, as the ``openai`` engine would send
them live (:meth:`~ocrflow.engines._api.ApiEngine.plan`, one request per page or per packed
document), into JSONL lines ``{"custom_id", "method": "POST", "url": "/v1/chat/completions",
"body"}``. ``custom_id`` is ``<document sha256>:p<first>-<last>``. Lines are split into files of
at most :data:`~ocrflow.engines.catalog.BATCH_MAX_REQUESTS` requests and
:data:`~ocrflow.engines.catalog.BATCH_MAX_FILE_BYTES`; each file is uploaded
(``purpose="batch"``) and becomes one batch (``completion_window="24h"``).

Every step is recorded in the ledger ``<out>/batches.json`` before the next one starts, with
the store's durable writer (temporary file, fsync, rename, directory fsync):

=============  ======================================================================
``prepared``   the file is written and its documents are recorded: they are in no
               other open submission, so a re-run never submits them twice
``uploaded``   the upload's file id is known
``submitted``  the batch id is known; :func:`collect` polls it
``finished``   its answers were handed on and its failures returned to pending
=============  ======================================================================

A crash between two steps is repaired on the next :func:`submit` or :func:`collect`: an
upload is found again by its file name (the submission id), a batch by its metadata
(``ocrflow_submission``) or input file, before anything is sent again. So a document is
never submitted twice and never lost.

Collecting downloads the output and error files of finished batches and hands each document,
with one :class:`~ocrflow.models.OcrResult` per request, to the caller's ``conclude`` (the same
extract -> validate -> ground -> route -> store path a live answer takes). A document with a
failed, expired or missing request is not concluded: it goes back to ``pending.json`` with the
reason, and the next run submits it again.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from ocrflow.admission import PendingDocument, write_pending
from ocrflow.doctypes import DocType
from ocrflow.engines import EncodedImage, KeySource, pages_label, resolve_api_key
from ocrflow.engines.catalog import (
    BATCH_COMPLETION_WINDOW,
    BATCH_MAX_FILE_BYTES,
    BATCH_MAX_REQUESTS,
    batch_refusal,
)
from ocrflow.errors import ConfigurationError, OcrflowError
from ocrflow.logprobs import carried_logprobs
from ocrflow.models import IngestResult, OcrResult, OcrTask, PageRef
from ocrflow.ocr import packs_pages
from ocrflow.store import write_json_atomically

if TYPE_CHECKING:
    import openai

    from ocrflow.engines.openai_compat import OpenAICompatEngine

LEDGER_FILE = "batches.json"
BATCH_DIR = ".batch"
ENDPOINT = "/v1/chat/completions"
OPEN_STATES = ("validating", "in_progress", "finalizing", "cancelling")
"""Batch statuses that are not final: collect polls them again later."""

SubmissionState = Literal["prepared", "uploaded", "submitted", "finished"]


class RequestRecord(BaseModel):
    custom_id: str
    first_page: int
    last_page: int
    width: int = 0
    height: int = 0
    scale: float = 1.0
    """How the first page's image was sent: boxes in an answer are mapped back with it."""

    @property
    def label(self) -> str:
        return pages_label(self.first_page, self.last_page)


class DocumentRecord(BaseModel):
    """A document waiting on a batch: enough to conclude it when its answers come back."""

    ingested: IngestResult
    pages: list[PageRef]
    """The pages as they were sent (preprocessed)."""
    requests: list[RequestRecord]
    task: OcrTask
    doc_type: str
    estimated_tokens: int = 0


class Submission(BaseModel):
    """One batch file and its batch, as far as it got."""

    id: str
    state: SubmissionState = "prepared"
    file: str
    """The JSONL file, relative to the output folder."""
    model: str
    documents: dict[str, DocumentRecord] = Field(default_factory=dict)
    file_id: str | None = None
    batch_id: str | None = None
    status: str | None = None
    """The batch's last known status (``in_progress``, ``completed``, ``expired``...)."""
    counts: dict[str, int] = Field(default_factory=dict)
    returned: dict[str, str] = Field(default_factory=dict)
    """Documents given back to pending, with the reason (a failed, expired or missing request)."""
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None


class Ledger(BaseModel):
    submissions: list[Submission] = Field(default_factory=list)

    def open_documents(self) -> set[str]:
        """Document ids in submissions not yet finished: they must not be submitted again."""
        return {doc for sub in self.submissions if sub.state != "finished" for doc in sub.documents}


_LEDGER_LOCK = threading.Lock()


def read_ledger(out_dir: Path) -> Ledger:
    path = Path(out_dir) / LEDGER_FILE
    if not path.exists():
        return Ledger()
    return Ledger.model_validate_json(path.read_text())


def write_ledger(out_dir: Path, ledger: Ledger) -> None:
    write_json_atomically(Path(out_dir) / LEDGER_FILE, ledger.model_dump_json(indent=1))


# --- the client ---------------------------------------------------------------------------------


class BatchClient:
    """The Files and Batches endpoints through the ``openai`` SDK, errors as ocrflow's."""

    def __init__(self, engine: OpenAICompatEngine) -> None:
        self.engine = engine
        options = engine.options
        self._keys = KeySource(options.api_key_env, options.api_key_secret_block)
        self._service = "DashScope" if options.base_url is None else f"the server at {options.api_url}"
        if refusal := batch_refusal(options.region, engine.model, base_url=options.base_url):
            raise ConfigurationError(refusal)
        self._client: openai.OpenAI | None = None
        self._key: str | None = None

    def _sdk(self) -> openai.OpenAI:
        if self._client is None:
            key = resolve_api_key(self._keys)
            if key is None:
                raise ConfigurationError(f"no DashScope API key: {self._keys.describe()}")
            self._key = key
            options = self.engine.options
            import openai  # here, not at the top: every run reads the ledger, few submit a batch

            self._client = openai.OpenAI(
                api_key=key, base_url=options.api_url, timeout=options.timeout_seconds, max_retries=0
            )
        return self._client

    def _call(self, what: str, call: Callable[[openai.OpenAI], Any]) -> Any:
        import httpx
        import openai

        from ocrflow.engines.openai_compat import sdk_failure

        failure: OcrflowError | None = None
        try:
            return call(self._sdk())
        except (openai.APIError, httpx.TransportError) as exc:
            options = self.engine.options
            failure = sdk_failure(
                exc,
                service=self._service,
                keys=self._keys,
                model=self.engine.model,
                where=what,
                key=self._key,
                timeout=options.timeout_seconds,
            )
        # Raised outside the handler: the SDK's exception may quote what the server echoed.
        raise failure

    def upload(self, path: Path) -> str:
        with path.open("rb") as handle:
            created = self._call(
                f"uploading {path.name}",
                lambda sdk: sdk.files.create(file=(path.name, handle), purpose="batch"),
            )
        return created.id

    def find_upload(self, filename: str) -> str | None:
        files = self._call("listing uploads", lambda sdk: list(sdk.files.list(purpose="batch")))
        return next((f.id for f in files if f.filename == filename), None)

    def create(self, file_id: str, submission_id: str) -> str:
        batch = self._call(
            f"creating the batch of {submission_id}",
            lambda sdk: sdk.batches.create(
                input_file_id=file_id,
                endpoint=ENDPOINT,
                completion_window=BATCH_COMPLETION_WINDOW,
                metadata={"ocrflow_submission": submission_id},
            ),
        )
        return batch.id

    def find_batch(self, submission_id: str, file_id: str) -> str | None:
        batches = self._call("listing batches", lambda sdk: list(sdk.batches.list(limit=100)))
        for batch in batches:
            if (batch.metadata or {}).get(
                "ocrflow_submission"
            ) == submission_id or batch.input_file_id == file_id:
                return batch.id
        return None

    def retrieve(self, batch_id: str) -> Any:
        return self._call(f"polling batch {batch_id}", lambda sdk: sdk.batches.retrieve(batch_id))

    def content(self, file_id: str) -> bytes:
        return self._call(f"downloading {file_id}", lambda sdk: sdk.files.content(file_id).read())


# --- submitting ---------------------------------------------------------------------------------


def custom_id(document_id: str, first_page: int, last_page: int) -> str:
    return f"{document_id}:p{first_page}-{last_page}"


class Document(BaseModel):
    """A document ready to go by Batch: ingested, its pages preprocessed."""

    ingested: IngestResult
    pages: list[PageRef]
    doctype: DocType | None = None
    doc_type: str = "auto"
    estimated_tokens: int = 0

    model_config = {"arbitrary_types_allowed": True}


def request_lines(
    engine: OpenAICompatEngine, document: Document, task: OcrTask, *, independent_reading: bool = True
) -> list[tuple[RequestRecord, str]]:
    """The JSONL lines of one document's requests, each with its record.

    Pages are packed as a live run packs them (:func:`ocrflow.ocr.packs_pages`): without the
    independent reading, key-information requests hold one page, so each value's page is known.
    """
    document_id = document.ingested.source.document_id
    first = min((page.page_number for page in document.pages), default=1)
    planned = engine.plan(
        [page.path for page in document.pages],
        task,
        doctype=document.doctype,
        first_page_number=first,
        packed=packs_pages(engine, document.doctype, task, independent_reading=independent_reading),
    )
    lines = []
    numbers = [page.page_number for page in document.pages]
    for request in planned:
        # plan() numbers requests from the first page by position: map back to the real numbers.
        first_number = numbers[request.first_page - first]
        last_number = numbers[request.last_page - first]
        image = request.pages[0].image
        record = RequestRecord(
            custom_id=custom_id(document_id, first_number, last_number),
            first_page=first_number,
            last_page=last_number,
            width=image.width,
            height=image.height,
            scale=image.scale,
        )
        body = engine.request_body(request.pages, task, request.schema)
        line = {"custom_id": record.custom_id, "method": "POST", "url": ENDPOINT, "body": body}
        lines.append((record, json.dumps(line, ensure_ascii=False, separators=(",", ":"))))
    return lines


def split(
    documents: Sequence[tuple[str, list[str]]],
    *,
    max_requests: int = BATCH_MAX_REQUESTS,
    max_bytes: int = BATCH_MAX_FILE_BYTES,
) -> list[list[tuple[str, list[str]]]]:
    """Documents (id, lines) grouped into files within the limits; a document's lines stay together.

    A document whose lines alone exceed a limit is put in a file of its own (the service will refuse
    it, and the reason comes back when the batch is collected).
    """
    files: list[list[tuple[str, list[str]]]] = []
    count = size = 0
    for document_id, lines in documents:
        lines_bytes = sum(len(line.encode()) + 1 for line in lines)
        if not files or count + len(lines) > max_requests or size + lines_bytes > max_bytes:
            files.append([])
            count = size = 0
        files[-1].append((document_id, lines))
        count += len(lines)
        size += lines_bytes
    return files


def submit(
    out_dir: Path,
    client: BatchClient,
    documents: Iterable[Document],
    task: OcrTask,
    *,
    max_requests: int = BATCH_MAX_REQUESTS,
    max_bytes: int = BATCH_MAX_FILE_BYTES,
    independent_reading: bool = True,
) -> list[Submission]:
    """Write, upload and create batches for ``documents`` not already waiting on one; return the new ones.

    Submissions an earlier run left half-done are finished first (see the module docstring).
    """
    out_dir = Path(out_dir)
    with _LEDGER_LOCK:
        ledger = read_ledger(out_dir)
        resume(out_dir, client, ledger)
        waiting = ledger.open_documents()
        chosen: list[tuple[Document, list[tuple[RequestRecord, str]]]] = []
        for document in documents:
            document_id = document.ingested.source.document_id
            if document_id in waiting:
                continue
            waiting.add(document_id)
            lines = request_lines(client.engine, document, task, independent_reading=independent_reading)
            chosen.append((document, lines))
        by_id = {doc.ingested.source.document_id: (doc, lines) for doc, lines in chosen}
        groups = split(
            [(doc_id, [line for _, line in lines]) for doc_id, (_, lines) in by_id.items()],
            max_requests=max_requests,
            max_bytes=max_bytes,
        )
        created = []
        (out_dir / BATCH_DIR).mkdir(parents=True, exist_ok=True)
        for group in groups:
            submission_id = f"ocrflow-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
            path = out_dir / BATCH_DIR / f"{submission_id}.jsonl"
            write_json_atomically(path, "".join(line + "\n" for _, lines in group for line in lines))
            submission = Submission(
                id=submission_id, file=str(path.relative_to(out_dir)), model=client.engine.model
            )
            for document_id, _ in group:
                document, lines = by_id[document_id]
                submission.documents[document_id] = DocumentRecord(
                    ingested=document.ingested,
                    pages=document.pages,
                    requests=[record for record, _ in lines],
                    task=task,
                    doc_type=document.doc_type,
                    estimated_tokens=document.estimated_tokens,
                )
            ledger.submissions.append(submission)
            write_ledger(out_dir, ledger)  # recorded before anything is sent
            created.append(submission)
        resume(out_dir, client, ledger)
        return created


def resume(out_dir: Path, client: BatchClient, ledger: Ledger) -> None:
    """Take every submission as far as ``submitted``, recording each step; nothing is sent twice."""
    for submission in ledger.submissions:
        if submission.state == "prepared":
            filename = Path(submission.file).name
            submission.file_id = client.find_upload(filename) or client.upload(
                Path(out_dir) / submission.file
            )
            submission.state = "uploaded"
            write_ledger(out_dir, ledger)
        if submission.state == "uploaded":
            assert submission.file_id is not None
            submission.batch_id = client.find_batch(submission.id, submission.file_id) or client.create(
                submission.file_id, submission.id
            )
            submission.state = "submitted"
            write_ledger(out_dir, ledger)


# --- collecting ---------------------------------------------------------------------------------

Conclude = Callable[[DocumentRecord, list[OcrResult]], Any]
"""Hands one document's readings to the composition's extract -> ... -> store path."""


class Returned(BaseModel):
    """A document a batch gave back: it goes to ``pending.json`` and is submitted again next run."""

    document_id: str
    path: Path
    reason: str
    batch_id: str | None = None


class Collected(BaseModel):
    """What one :func:`collect` did, for the run's summary."""

    batches: list[Submission] = Field(default_factory=list)
    concluded: list[str] = Field(default_factory=list)
    returned: list[Returned] = Field(default_factory=list)
    still_open: int = 0


def collect(out_dir: Path, client: BatchClient, conclude: Conclude) -> Collected:
    """Poll open batches; conclude the documents of finished ones, return failed ones to pending."""
    out_dir = Path(out_dir)
    report = Collected()
    with _LEDGER_LOCK:
        ledger = read_ledger(out_dir)
        resume(out_dir, client, ledger)
        for submission in ledger.submissions:
            if submission.state != "submitted":
                continue
            assert submission.batch_id is not None
            batch = client.retrieve(submission.batch_id)
            submission.status = batch.status
            submission.counts = batch.request_counts.model_dump() if batch.request_counts else {}
            if batch.status in OPEN_STATES:
                report.still_open += 1
                report.batches.append(submission)
                continue
            answers = _lines(client, batch.output_file_id) | _lines(client, batch.error_file_id)
            for document_id, record in submission.documents.items():
                readings, problem = _readings(client.engine, record, answers, batch.status)
                if problem is None:
                    conclude(record, readings)
                    report.concluded.append(document_id)
                else:
                    submission.returned[document_id] = problem
                    report.returned.append(
                        Returned(
                            document_id=document_id,
                            path=record.ingested.source.path,
                            reason=problem,
                            batch_id=submission.batch_id,
                        )
                    )
            pending = [
                PendingDocument(
                    path=submission.documents[doc_id].ingested.source.path,
                    document_id=doc_id,
                    estimated_tokens=submission.documents[doc_id].estimated_tokens,
                    reason=reason,
                )
                for doc_id, reason in submission.returned.items()
            ]
            if pending:
                write_pending(out_dir, pending)
            submission.state = "finished"
            submission.finished_at = datetime.now(UTC)
            report.batches.append(submission)
            write_ledger(out_dir, ledger)
    return report


def _lines(client: BatchClient, file_id: str | None) -> dict[str, dict[str, Any]]:
    if not file_id:
        return {}
    answers = {}
    for raw in client.content(file_id).decode("utf-8").splitlines():
        if raw.strip():
            line = json.loads(raw)
            answers[str(line.get("custom_id"))] = line
    return answers


def _readings(
    engine: OpenAICompatEngine, record: DocumentRecord, answers: dict[str, dict[str, Any]], status: str
) -> tuple[list[OcrResult], str | None]:
    """The document's readings from its answer lines, or why it must go back to pending."""
    from ocrflow.engines.openai_compat import _usage, answer_from_text

    readings = []
    for request in record.requests:
        line = answers.get(request.custom_id)
        if line is None:
            return [], f"the batch ended {status} without an answer for {request.label}"
        response = line.get("response") or {}
        error = line.get("error") or (response.get("body") or {}).get("error")
        if response.get("status_code") != 200 or error:
            code = (error or {}).get("code") or f"HTTP {response.get('status_code')}"
            message = (error or {}).get("message") or "no answer"
            return [], f"the batch request for {request.label} failed ({code}): {message}"
        body = response.get("body") or {}
        choices = body.get("choices") or []
        if not choices:
            return [], f"the batch answer for {request.label} has no choices"
        text = (choices[0].get("message") or {}).get("content") or ""
        pages = request.last_page - request.first_page + 1
        usage = _usage(body.get("usage") or {}).model_copy(update={"pages": pages})
        image = EncodedImage("", request.width, request.height, scale=request.scale)
        answer = answer_from_text(text, usage, record.task, carried_logprobs(choices[0].get("logprobs")))
        readings.append(engine.result(answer, record.task, request.first_page, image, usage))
    return readings, None
