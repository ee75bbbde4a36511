"""A document's steps as Prefect tasks, and the runner that submits them.

The bodies only call the steps of :mod:`ocrflow.pipeline`. Tasks take :class:`Settings`
(a small serialisable model) and build the engine, schemas and store once per process;
they pass :class:`PageRef` references between them, never pixels. Only
:class:`~ocrflow.errors.TransientError` is retried, with the pipeline's own delays.

A one-page document is three task runs: ``ingest <file>``, ``ocr <file> p1`` (preprocess and
read the page) and ``store <file>`` (extract, validate, route, store). A packed document's
pages are one ``ocr <file> p1-N`` task.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from pathlib import Path

from prefect import task, unmapped
from prefect.cache_policies import NONE
from prefect.concurrency.sync import concurrency
from prefect.futures import PrefectFuture
from prefect.runtime import task_run

from ocrflow.errors import is_retryable
from ocrflow.ingest import ingest
from ocrflow.models import DocumentResult, IngestResult, PageRef
from ocrflow.pipeline import (
    OCR_RETRY_DELAYS,
    OCR_RETRY_JITTER,
    Context,
    Job,
    PagesRead,
    Readings,
    conclude,
    context_for,
    read_pages,
)
from ocrflow.prefect_setup import require_global_limit
from ocrflow.settings import Settings


def _retry_transient(task, task_run_, state) -> bool:
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - the state's own exception, judged by type
        return is_retryable(exc)
    return False


def _source_name() -> str:
    return Path(str(task_run.parameters["path"])).name


def _document_name() -> str:
    readings: Readings = task_run.parameters["readings"]
    return f"store {readings.ingested.source.path.name}"


_DEFAULTS = dict(cache_policy=NONE, persist_result=False)


@task(name="ingest", task_run_name=lambda: f"ingest {_source_name()}", **_DEFAULTS)
def ingest_task(path: Path, settings: Settings) -> IngestResult:
    return ingest(Path(path), settings.work_dir, settings.ingest)


def _local_ocr_slot(ctx: Context) -> AbstractContextManager[None]:
    """A slot of the machine's shared local-OCR limit, when set; API calls are paced elsewhere."""
    name = ctx.settings.local_engine.shared_limit
    if name is None or ctx.bills_tokens:
        return nullcontext()
    return concurrency(name, occupy=1, strict=True)


@task(
    name="ocr",
    task_run_name="ocr {label}",
    retries=len(OCR_RETRY_DELAYS),
    retry_delay_seconds=list(OCR_RETRY_DELAYS),
    retry_jitter_factor=OCR_RETRY_JITTER,
    retry_condition_fn=_retry_transient,
    **_DEFAULTS,
)
def read_task(pages: Sequence[PageRef], settings: Settings, job: Job, label: str = "") -> PagesRead:
    """Preprocess and read one page, or a document's pages packed in as few requests as allowed."""
    ctx = context_for(settings)
    return read_pages(ctx, pages, job, ocr_slot=partial(_local_ocr_slot, ctx))


@task(name="extract+route+store", task_run_name=_document_name, **_DEFAULTS)
def conclude_task(readings: Readings, settings: Settings, job: Job) -> DocumentResult:
    return conclude(context_for(settings), readings, job)


class PrefectRunner:
    """Runs a document's steps as the tasks above on the flow's task runner (pages in parallel)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        shared_limit = settings.local_engine.shared_limit
        if shared_limit and not context_for(settings).bills_tokens:
            require_global_limit(shared_limit, "OCRFLOW_LOCAL_ENGINE__SHARED_LIMIT")

    def ingest(self, sources: Sequence[Path]) -> Iterator[PrefectFuture[IngestResult]]:
        return iter(ingest_task.map(list(sources), settings=unmapped(self.settings)))

    def read(self, pages: Sequence[PageRef], job: Job, label: str) -> PrefectFuture[PagesRead]:
        return read_task.submit(list(pages), self.settings, job, label=label)

    def conclude(self, readings: Readings, job: Job) -> DocumentResult:
        return conclude_task(readings, self.settings, job)
