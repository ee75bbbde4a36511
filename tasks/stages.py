"""A document's steps as Prefect tasks, and the runner that submits them.

The bodies only call the steps of :mod:`ocrflow.pipeline`. Tasks take :class:`Settings`
(a small serialisable model) and build the engine, schemas and store once per process;
they pass :class:`PageRef` references between them, never pixels.

A document read in one group (one page, or pages packed in one request) is one task run,
``document <file>``: its pages ingested, prepared and read, then extract, validate, route,
store; transient OCR failures are retried inside it with the pipeline's delays. A document
read page by page is one ``ocr <file> p<n>`` task a page (the page ingested, prepared and
read, pages at once, each starting as soon as a thread is free) and ``store <file>``; only
:class:`~ocrflow.errors.TransientError` is retried. With a token budget, ``ingest <file>``
first ingests a document whole, since its estimate needs every page.
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
from ocrflow.models import DocumentResult, IngestResult, shown_path
from ocrflow.pipeline import (
    OCR_RETRY_DELAYS,
    OCR_RETRY_JITTER,
    Concluded,
    Context,
    Done,
    Job,
    PageGroup,
    PagesRead,
    Readings,
    conclude,
    context_for,
    open_source,
    process,
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
    return shown_path(Path(task_run.parameters["path"]).name)


def _opened_name() -> str:
    opened: IngestResult = task_run.parameters["opened"]
    return f"document {shown_path(opened.source.path.name)}"


def _document_name() -> str:
    readings: Readings = task_run.parameters["readings"]
    return f"store {shown_path(readings.ingested.source.path.name)}"


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


@task(name="document", task_run_name=_opened_name, **_DEFAULTS)
def document_task(
    opened: IngestResult, groups: Sequence[PageGroup], settings: Settings, job: Job
) -> Concluded:
    """Ingest, prepare and read a document's one group of pages, then extract, validate, route and store."""
    ctx = context_for(settings)
    return process(ctx, opened, groups, job, ocr_slot=partial(_local_ocr_slot, ctx))


@task(
    name="ocr",
    task_run_name="ocr {label}",
    retries=len(OCR_RETRY_DELAYS),
    retry_delay_seconds=list(OCR_RETRY_DELAYS),
    retry_jitter_factor=OCR_RETRY_JITTER,
    retry_condition_fn=_retry_transient,
    **_DEFAULTS,
)
def read_task(
    opened: IngestResult, group: PageGroup, settings: Settings, job: Job, label: str = ""
) -> PagesRead:
    """Ingest, prepare and read one page, or a document's pages packed in as few requests as allowed."""
    ctx = context_for(settings)
    return read_pages(ctx, opened, group, job, ocr_slot=partial(_local_ocr_slot, ctx))


@task(name="extract+route+store", task_run_name=_document_name, **_DEFAULTS)
def conclude_task(readings: Readings, settings: Settings, job: Job) -> DocumentResult:
    return conclude(context_for(settings), readings, job)


class PrefectRunner:
    """Runs a document's steps as the tasks above on the flow's task runner (pages in parallel)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ctx = context_for(settings)
        shared_limit = settings.local_engine.shared_limit
        if shared_limit and not self.ctx.bills_tokens:
            require_global_limit(shared_limit, "OCRFLOW_LOCAL_ENGINE__SHARED_LIMIT")

    def open(self, sources: Sequence[Path], *, whole: bool) -> Iterator[PrefectFuture[IngestResult] | Done]:
        if whole:
            return iter(ingest_task.map(list(sources), settings=unmapped(self.settings)))
        # Naming a file and counting its pages decodes nothing: no task run is worth it.
        return (Done.of(partial(open_source, self.ctx, source, whole=False)) for source in sources)

    def process(
        self, opened: IngestResult, groups: Sequence[PageGroup], job: Job
    ) -> PrefectFuture[Concluded]:
        return document_task.submit(opened, list(groups), self.settings, job)

    def read(self, opened: IngestResult, group: PageGroup, job: Job, label: str) -> PrefectFuture[PagesRead]:
        return read_task.submit(opened, group, self.settings, job, label=label)

    def conclude(self, readings: Readings, job: Job) -> DocumentResult:
        return conclude_task(readings, self.settings, job)
