"""The ``process_documents`` flow: ingest -> preprocess -> OCR -> extract+validate -> route+store.

The flow only orchestrates: pages of a document are preprocessed and read in
parallel, each document's outcome is stored before the next step may act on it,
and a document whose tasks fail still gets a rejected record with the reason.

With a token budget (``cost.token_budget``) and an API engine, a document is submitted
only if its estimate fits beside what finished documents really cost and what the ones
in flight are expected to (see :class:`~ocrflow.cost.TokenBudget`); one that does not fit
stays pending in ``<out>/pending.json`` and goes first in the next run.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import PrefectFuture
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from flows.monitoring import documents_run_name, review_links_markdown
from ocrflow.cache import CachedEngine
from ocrflow.cost import (
    PendingDocument,
    TokenBudget,
    document_tokens,
    first_page_allowance,
    read_pending,
    write_pending,
)
from ocrflow.errors import OcrflowError
from ocrflow.ingest import discover, unreadable
from ocrflow.models import DocumentResult, IngestResult, Reason, Stage, Status, Usage
from ocrflow.ocr import choose_task, packs_pages
from ocrflow.pipeline import AUTO, Context, ocr_failure
from ocrflow.prefect_setup import require_global_limit
from ocrflow.report import Spend, outcome_rows, summary_markdown
from ocrflow.routing import failure_result
from ocrflow.settings import Settings
from tasks import (
    context_for,
    finish_task,
    ingest_task,
    interpret_task,
    preprocess_task,
    recognize_document_task,
    recognize_task,
)


def _run_name() -> str:
    from prefect.runtime import flow_run

    return documents_run_name(flow_run.parameters.get("paths") or [])


@dataclass(frozen=True)
class _Submitted:
    ingested: IngestResult
    pages: list[PrefectFuture]
    ocr: list[PrefectFuture] | PrefectFuture
    """One future per page, or one for the whole document when its pages are packed."""
    reserved_tokens: int
    image_tokens: int


def _with_pending(sources: list[Path], waiting: list[PendingDocument]) -> list[Path]:
    """Documents earlier runs left pending go first (they have waited longest), if their files remain."""
    given = {source.resolve() for source in sources}
    earlier = [doc.path for doc in waiting if doc.path.is_file() and doc.path.resolve() not in given]
    return list(dict.fromkeys(earlier)) + sources


def _unanswered_tokens(ctx: Context, page_futures: list[PrefectFuture]) -> int:
    """Tokens billed for a document's answers the service cut off and no retry replaced."""
    engine = ctx.api_engine
    if engine is None:
        return 0
    pages = [future.result().path for future in page_futures if future.state.is_completed()]
    usage = engine.take_unanswered(pages)
    return usage.input_tokens + usage.output_tokens


def _cache_counts(ctx: Context) -> tuple[int, Usage]:
    engine = ctx.engine
    return (engine.hits, engine.saved) if isinstance(engine, CachedEngine) else (0, Usage())


def _spend(
    ctx: Context, budget: TokenBudget, pending: list[PendingDocument], cache_before: tuple[int, Usage]
) -> Spend:
    """The run's API spending for the summary; the cache counts are per process, so take the difference."""
    hits, saved = _cache_counts(ctx)
    return Spend(
        model=ctx.engine.model,
        options=ctx.settings.cost,
        budget=budget.limit,
        pending=pending,
        cache_hits=hits - cache_before[0],
        cache_saved=Usage(
            input_tokens=saved.input_tokens - cache_before[1].input_tokens,
            output_tokens=saved.output_tokens - cache_before[1].output_tokens,
        ),
    )


def _failed(future: PrefectFuture) -> BaseException | None:
    state: State = future.wait() or future.state
    if state.is_completed():
        return None
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - any failure becomes a recorded reason
        return exc
    return RuntimeError(f"task ended {state.type.value}")


@flow(
    name="process-documents",
    flow_run_name=_run_name,
    # Read when a worker imports the flow, so each worker's OCRFLOW_TASK_THREADS applies.
    task_runner=ThreadPoolTaskRunner(max_workers=Settings().flow_threads),
    validate_parameters=True,
)
def process_documents(
    paths: list[str],
    out: str = "ocrflow-out",
    doc_type: str = AUTO,
    reprocess: bool = False,
    settings: Settings | None = None,
) -> list[DocumentResult]:
    """Process files or folders of documents; every document ends accepted, needs_review or rejected."""
    logger = get_run_logger()
    settings = (settings or Settings()).model_copy(update={"out_dir": Path(out)})
    ctx = context_for(settings)
    doctype = ctx.known_doctype(doc_type)
    if settings.local_engine.shared_limit and not ctx.bills_tokens:
        require_global_limit(settings.local_engine.shared_limit, "OCRFLOW_LOCAL_ENGINE__SHARED_LIMIT")
    waiting = read_pending(settings.out_dir)
    sources = _with_pending(discover([Path(p) for p in paths]), waiting)
    logger.info("found %d documents", len(sources))
    progress = create_progress_artifact(0.0, key=None, description="documents finished")
    limit = settings.cost.token_budget
    budget = TokenBudget(
        limit if limit is not None and ctx.bills_tokens else None,
        page_allowance=first_page_allowance(settings, choose_task(ctx.engine, doctype), doctype),
    )
    cache_before = _cache_counts(ctx)

    ingests = ingest_task.map(sources, settings=unmapped(settings))
    in_flight: deque[_Submitted] = deque()
    results: list[DocumentResult] = []
    pending: list[PendingDocument] = []
    seen: set[str] = set()
    skipped_ids: set[str] = set()
    skipped = 0

    def finish_oldest() -> None:
        done = in_flight.popleft()
        result = _finish_document(ctx, settings, doc_type, done.ingested, done.pages, done.ocr)
        budget.record(
            result.usage.input_tokens + result.usage.output_tokens + _unanswered_tokens(ctx, done.pages),
            reserved=done.reserved_tokens,
            image_tokens=done.image_tokens,
            pages=len(done.ingested.pages),
        )
        results.append(result)
        expected = len(sources) - skipped - len(pending)
        update_progress_artifact(progress, 100.0 * len(results) / max(expected, 1))

    for source, future in zip(sources, ingests, strict=True):
        if exc := _failed(future):
            # ingest reports bad input as data; this is a bug, and the document still gets a record.
            logger.error("ingest of %s failed: %s", source.name, type(exc).__name__)
            ingested = unreadable(
                source, "internal_error", f"reading the file failed unexpectedly ({type(exc).__name__})"
            )
        else:
            ingested = future.result()
        document_id = ingested.source.document_id
        # A rejected document is tried again: an engine outage must not leave it rejected for good.
        done_before = ctx.store.status_of(document_id) in (Status.ACCEPTED, Status.NEEDS_REVIEW)
        if document_id in seen or (done_before and not reprocess):
            logger.info("%s already processed (%s); skipping", ingested.source.path.name, document_id[:12])
            skipped += 1
            skipped_ids.add(document_id)
            continue
        seen.add(document_id)
        estimate = (
            document_tokens(ingested.pages, ctx.engine.model, settings.cost)
            if budget.limit is not None
            else 0
        )
        tokens = budget.expected(estimate, len(ingested.pages))
        fits = budget.reserve(tokens)
        while not fits and in_flight:
            # What a document really cost is known when it finishes: settle those before deciding.
            finish_oldest()
            tokens = budget.expected(estimate, len(ingested.pages))
            fits = budget.reserve(tokens)
        if not fits:
            logger.warning(
                "token budget reached: %s (about %d tokens) stays pending for the next run",
                ingested.source.path.name,
                tokens,
            )
            pending.append(
                PendingDocument(path=source.resolve(), document_id=document_id, estimated_tokens=tokens)
            )
            continue
        labels = [f"{ingested.source.path.name} p{page.page_number}" for page in ingested.pages]
        pages = preprocess_task.map(list(ingested.pages), settings=unmapped(settings), label=labels)
        if len(pages) > 1 and packs_pages(ctx.engine, doctype):
            label = f"{ingested.source.path.name} p1-{len(pages)}"
            ocr = recognize_document_task.submit(pages, settings, doc_type, label=label)
        else:
            ocr = recognize_task.map(
                pages, settings=unmapped(settings), doc_type=unmapped(doc_type), label=labels
            )
        in_flight.append(_Submitted(ingested, pages, ocr, tokens, estimate))
    while in_flight:
        finish_oldest()
    gone = {doc.document_id for doc in waiting if not doc.path.is_file()}
    pending = write_pending(settings.out_dir, pending, submitted=seen | gone | skipped_ids)

    create_table_artifact(
        outcome_rows(results, ctx.doctypes),
        key="ocrflow-outcomes",
        description="Outcome of each document (ID and card numbers masked)",
    )
    spend = _spend(ctx, budget, pending, cache_before) if ctx.bills_tokens else None
    create_markdown_artifact(
        summary_markdown(results, title=f"ocrflow: {len(results)} documents", spend=spend)
        + review_links_markdown(results, settings.review_url),
        key="ocrflow-summary",
        description="Counts per status and reason",
    )
    if skipped:
        logger.info("%d documents were skipped as already processed", skipped)
    if pending:
        logger.warning(
            "%d documents are pending (token budget reached); the next run takes them first", len(pending)
        )
    return results


def _ocr_error(exc: BaseException) -> OcrflowError:
    return exc if isinstance(exc, OcrflowError) else OcrflowError(str(exc), code="ocr_failed")


def _finish_document(
    ctx: Context,
    settings: Settings,
    doc_type: str,
    ingested: IngestResult,
    page_futures: list[PrefectFuture],
    ocr_futures: list[PrefectFuture] | PrefectFuture,
) -> DocumentResult:
    """Collect one document's page results and store its outcome, whatever failed."""
    pages, ocr_results, failures = [], [], []
    packed = not isinstance(ocr_futures, list)
    per_page = [None] * len(page_futures) if packed else ocr_futures
    for page, page_future, ocr_future in zip(ingested.pages, page_futures, per_page, strict=True):
        if exc := _failed(page_future):
            failures.append(
                Reason(
                    stage=Stage.PREPROCESS,
                    code="preprocess_failed",
                    message=f"page {page.page_number}: {exc}",
                    page=page.page_number,
                )
            )
            continue
        pages.append(page_future.result())
        if packed:
            continue
        if exc := _failed(ocr_future):
            failures.append(ocr_failure(page, _ocr_error(exc)))
            continue
        ocr_results.append(ocr_future.result())
    if packed and pages:
        # A packed request needs every page; one page failing its preprocessing stops it.
        if exc := _failed(ocr_futures):
            failures.extend(ocr_failure(page, _ocr_error(exc)) for page in pages)
        else:
            ocr_results.extend(ocr_futures.result())
    try:
        extraction, type_reason = (
            interpret_task(ingested, ocr_results, doc_type, settings) if ocr_results else (None, None)
        )
        return finish_task(ingested, pages, ocr_results, failures, extraction, type_reason, settings)
    except Exception as exc:  # noqa: BLE001 - a bug in one document must not end the batch
        get_run_logger().error("document %s failed: %s", ingested.source.path.name, type(exc).__name__)
        result = failure_result(ingested, Stage.ROUTE, type(exc).__name__)
        ctx.store.save(result)
        return result
