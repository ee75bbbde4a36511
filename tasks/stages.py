"""Each stage of a document as a Prefect task.

The bodies only call the plain stage functions. Tasks take :class:`Settings` (a small
serialisable model) and build the engine, schemas and store once per process; they
pass :class:`PageRef` references between them, never pixels. Only
:class:`~ocrflow.errors.TransientError` is retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE
from prefect.concurrency.sync import concurrency
from prefect.runtime import task_run

from ocrflow.errors import is_retryable
from ocrflow.ingest import ingest
from ocrflow.models import DocumentResult, Extraction, IngestResult, OcrResult, PageRef, Reason
from ocrflow.ocr import recognize, recognize_document
from ocrflow.pipeline import Context, finish, interpret
from ocrflow.preprocess import preprocess
from ocrflow.settings import Settings


@lru_cache(maxsize=4)
def _context(settings_json: str) -> Context:
    return Context(Settings.model_validate_json(settings_json))


def context_for(settings: Settings) -> Context:
    """One engine, schema set and store per process and settings (models load once)."""
    return _context(settings.model_dump_json())


def _retry_transient(task, task_run_, state) -> bool:
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - the state's own exception, judged by type
        return is_retryable(exc)
    return False


def _source_name() -> str:
    return Path(str(task_run.parameters["path"])).name


def _document_name(prefix: str) -> str:
    ingested: IngestResult = task_run.parameters["ingested"]
    return f"{prefix} {ingested.source.path.name}"


_DEFAULTS = dict(cache_policy=NONE, persist_result=False)


@task(name="ingest", task_run_name=lambda: f"ingest {_source_name()}", **_DEFAULTS)
def ingest_task(path: Path, settings: Settings) -> IngestResult:
    return ingest(Path(path), settings.work_dir, settings.ingest)


@task(name="preprocess", task_run_name="preprocess {label}", **_DEFAULTS)
def preprocess_task(page: PageRef, settings: Settings, label: str = "") -> PageRef:
    """``label`` names the document and page in the UI (the page itself may still be a future)."""
    return preprocess(page, settings.preprocess)


_OCR_RETRIES = dict(
    retries=3,
    retry_delay_seconds=[2, 8, 30],
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_transient,
)


def _local_ocr_slot(ctx: Context) -> AbstractContextManager[None]:
    """A slot of the machine's shared local-OCR limit, when set; API calls are paced elsewhere."""
    name = ctx.settings.local_engine.shared_limit
    if name is None or ctx.bills_tokens:
        return nullcontext()
    return concurrency(name, occupy=1, strict=True)


@task(name="ocr", task_run_name="ocr {label}", **_OCR_RETRIES, **_DEFAULTS)
def recognize_task(page: PageRef, settings: Settings, doc_type: str, label: str = "") -> OcrResult:
    ctx = context_for(settings)
    with _local_ocr_slot(ctx):
        return recognize(page, ctx.engine, ctx.known_doctype(doc_type))


@task(name="ocr", task_run_name="ocr {label}", **_OCR_RETRIES, **_DEFAULTS)
def recognize_document_task(
    pages: Sequence[PageRef], settings: Settings, doc_type: str, label: str = ""
) -> list[OcrResult]:
    """A document's pages in as few API requests as the input limit allows."""
    ctx = context_for(settings)
    return recognize_document(pages, ctx.engine, ctx.known_doctype(doc_type))


@task(name="extract+validate", task_run_name=lambda: _document_name("extract"), **_DEFAULTS)
def interpret_task(
    ingested: IngestResult, ocr_results: Sequence[OcrResult], doc_type: str, settings: Settings
) -> tuple[Extraction | None, Reason | None]:
    ctx = context_for(settings)
    return interpret(ocr_results, ctx.doctypes, doc_type, settings.routing.min_field_confidence)


@task(name="route+store", task_run_name=lambda: _document_name("store"), **_DEFAULTS)
def finish_task(
    ingested: IngestResult,
    pages: Sequence[PageRef],
    ocr_results: Sequence[OcrResult],
    ocr_failures: Sequence[Reason],
    extraction: Extraction | None,
    type_reason: Reason | None,
    settings: Settings,
) -> DocumentResult:
    return finish(context_for(settings), ingested, pages, ocr_results, ocr_failures, extraction, type_reason)
