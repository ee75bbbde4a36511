"""One document's path, start to stored outcome, the same for every runner.

A run goes open -> admit -> submit -> collect -> conclude (:func:`run_documents`):

- *open* (:func:`open_source`): name the document and count its pages, decoding none (or
  ingest it whole when a token budget must see its pages);
- *admit* (:class:`~ocrflow.admission.Admission`): skip what is done, keep the token budget;
- *submit* (:func:`submit`): hand the document's pages to the runner, one page at a time or
  all in one packed request; each group is ingested, prepared and read by :func:`read_pages`,
  so a page's OCR starts as soon as that page exists. A document of one group is read and
  concluded in one step (:func:`process`);
- *collect* (:func:`collect`): wait for the groups; a failed one becomes reasons;
- *conclude* (:func:`conclude`): interpret, route and store; :class:`Readings` may come from
  any runner, or from answers that arrived another way.

A runner decides only where and when each step runs: :class:`InlineRunner` here, in this
thread (``ocrflow eval``, tests, a one-file run), and ``tasks.PrefectRunner`` as Prefect
tasks (pages in parallel, retries, names in the UI). Failures turn into reasons here, once.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import cached_property, lru_cache, partial
from pathlib import Path
from typing import Protocol, TypeVar

from ocrflow.admission import Admission, Verdict
from ocrflow.cache import CachedEngine, cache_dir
from ocrflow.confidence import Reread, weigh_fields
from ocrflow.detect import detect_doctype
from ocrflow.doctypes import DocType, get_doctype, load_doctypes
from ocrflow.engines import ApiEngine, OcrEngine, create_engine, second
from ocrflow.errors import EngineError, OcrflowError, is_retryable
from ocrflow.extract import extract
from ocrflow.generic import extract_generic
from ocrflow.ingest import ingest, ingest_page, open_document, unreadable
from ocrflow.models import (
    DocumentResult,
    Extraction,
    FieldBox,
    Frozen,
    IngestResult,
    OcrLine,
    OcrResult,
    OcrTask,
    PageRef,
    Reason,
    Stage,
    Usage,
)
from ocrflow.ocr import check_task, choose_task, invert, packs_pages, recognize, recognize_document
from ocrflow.outbox import deliver
from ocrflow.outputs import gives_outputs, task_outputs, write_output_files
from ocrflow.preprocess import preprocess
from ocrflow.results import write_index
from ocrflow.review.operations import announcer
from ocrflow.routing import build_result, decide, failure_result, schema_rule
from ocrflow.settings import PreprocessOptions, Settings
from ocrflow.store import OnQueued, ResultStore
from ocrflow.validate import validate

AUTO = "auto"
T = TypeVar("T", covariant=True)
R = TypeVar("R")
log = logging.getLogger(__name__)

OCR_RETRY_DELAYS = (2.0, 8.0, 30.0)
"""Seconds before each retry of a transient OCR failure (rate limit, 5xx, timeout), for every runner."""
OCR_RETRY_JITTER = 0.5


@dataclass
class Context:
    """What the stages need, built once per process from explicit settings.

    An engine may be handed in (tests share one; models take a second to load). Either
    way it runs behind the OCR cache when ``settings.cost.cache`` covers it.
    """

    settings: Settings
    given_engine: OcrEngine | None = None
    given_verifier: OcrEngine | None = None

    @cached_property
    def engine(self) -> OcrEngine:
        return with_cache(self.given_engine or create_engine(self.settings), self.settings)

    @property
    def api_engine(self) -> ApiEngine | None:
        """The paid API engine behind the cache, or ``None`` for a free one."""
        engine = self.engine.engine if isinstance(self.engine, CachedEngine) else self.engine
        return engine if isinstance(engine, ApiEngine) else None

    @property
    def preprocess_options(self) -> PreprocessOptions:
        """The page steps for this engine.

        Rescaling suits the embedded recogniser's line height; an API engine gets its pages at
        their own resolution, the one its tokens were estimated on.
        """
        if self.api_engine is None:
            return self.settings.preprocess
        return self.settings.preprocess.model_copy(update={"rescale": False})

    @property
    def bills_tokens(self) -> bool:
        """Whether the engine is a paid API, whose tokens the run's budget counts."""
        return self.api_engine is not None

    @cached_property
    def verifier(self) -> OcrEngine:
        """The embedded engine, which reads an API engine's pages again (:mod:`ocrflow.verify`)."""
        if self.given_verifier is not None:
            return self.given_verifier
        reader = self.settings.verify.reader_options(self.settings.local_engine)
        return create_engine(self.settings.model_copy(update={"engine": "local", "local_engine": reader}))

    @cached_property
    def second_reader(self) -> second.SecondReader | None:
        """PP-OCRv4 re-reading the embedded engine's receipt names and addresses, or ``None``.

        ``None`` when ``verify.second_reading`` is off, or when its model is not installed.
        """
        if not self.settings.verify.second_reading:
            return None
        if not second.available():
            log.warning(
                "verify.second_reading is on but %s is not installed (scripts/setup.sh)", second.MODEL
            )
            return None
        local = self.settings.local_engine
        return second.SecondReader(threads=local.threads, parallel=local.pages_at_once())

    @cached_property
    def doctypes(self) -> dict[str, DocType]:
        return load_doctypes(self.settings.schema_dir)

    def known_doctype(self, doc_type: str) -> DocType | None:
        """The type named up front, which API engines fill by key-information extraction."""
        return None if doc_type == AUTO else get_doctype(self.doctypes, doc_type)

    @cached_property
    def store(self) -> ResultStore:
        return ResultStore(self.settings.out_dir, self.settings.resolved_database_url())

    @cached_property
    def announce(self) -> OnQueued:
        """Schedules a newly queued item and puts ``ocrflow.review.requested`` in the outbox."""
        return announcer(self.doctypes, self.settings.review, self.settings.review_url)


@lru_cache(maxsize=4)
def _context(settings_json: str) -> Context:
    return Context(Settings.model_validate_json(settings_json))


def context_for(settings: Settings) -> Context:
    """One engine, schema set and store per process and settings (models load once)."""
    return _context(settings.model_dump_json())


def with_cache(engine: OcrEngine, settings: Settings) -> OcrEngine:
    """``engine`` behind the OCR cache in ``<out>/.cache/ocr`` if ``settings.cost.cache`` covers it.

    By default only API engines are cached: their calls are paid for, so a re-run or a
    retried task must not pay twice. The embedded engine is cheap to run again.
    """
    mode = settings.cost.cache
    if mode == "all" or (mode == "api" and isinstance(engine, ApiEngine)):
        return CachedEngine(engine, cache_dir(settings.out_dir))
    return engine


# --- what passes between the steps -----------------------------------------------------------


class Job(Frozen):
    """What a run asks of every document."""

    doc_type: str = AUTO
    """A document type's name, or ``auto`` to detect it from the text."""
    task: OcrTask | None = None
    """The OCR task for every document (``--task``); ``None``: the type's ``x-ocrflow.task``, else
    key-information extraction for a known type and text with positions otherwise."""


class Independent(Frozen):
    """The embedded engine's reading of pages an API engine read (:mod:`ocrflow.verify`), and its CPU."""

    ocr: tuple[OcrResult, ...] = ()
    usage: Usage = Usage()


class PagesRead(Frozen):
    """What one read step produced for its pages: as ingested, as sent to OCR, the readings, page failures."""

    ingested: tuple[PageRef, ...] = ()
    pages: tuple[PageRef, ...] = ()
    ocr: tuple[OcrResult, ...] = ()
    failures: tuple[Reason, ...] = ()
    independent: Independent | None = None
    """The independent reading, made while the API engine's request was in flight."""


class Readings(Frozen):
    """A document's pages as read, whichever runner read them or wherever the answers came from."""

    ingested: IngestResult
    pages: tuple[PageRef, ...] = ()
    """The pages as they went to OCR (preprocessed)."""
    ocr: tuple[OcrResult, ...] = ()
    failures: tuple[Reason, ...] = ()
    independent: Independent | None = None
    """The independent reading of ``pages`` if the read steps made it; ``None``: :func:`assess` makes it."""


class Concluded(Frozen):
    """A document read and concluded in one step: its readings (for the budget) and stored outcome."""

    readings: Readings
    result: DocumentResult


class Handle(Protocol[T]):
    """A step's result as a runner hands it back: ``result()`` waits and raises the step's error."""

    def result(self) -> T: ...


PageGroup = tuple[int, ...]
"""Page numbers read together: one page, or a document's pages packed in one request."""


@dataclass(frozen=True)
class Submitted:
    """A document with the runner: read and concluded in one step, or one read step per page group."""

    opened: IngestResult
    whole: Handle[Concluded] | None = None
    groups: tuple[tuple[PageGroup, Handle[PagesRead]], ...] = ()


class Runner(Protocol):
    """Where and when each step runs. A runner adds no logic of its own: it calls the steps below."""

    def open(self, sources: Sequence[Path], *, whole: bool) -> Iterator[Handle[IngestResult]]:
        """One handle per source, in order: :func:`open_source`, all pages ingested when ``whole``."""
        ...

    def process(self, opened: IngestResult, groups: Sequence[PageGroup], job: Job) -> Handle[Concluded]:
        """:func:`process`: a document read and concluded in one step."""
        ...

    def read(self, opened: IngestResult, group: PageGroup, job: Job, label: str) -> Handle[PagesRead]:
        """:func:`read_pages` on a group of pages; transient OCR failures are retried."""
        ...

    def conclude(self, readings: Readings, job: Job) -> DocumentResult:
        """:func:`conclude`, waited for."""
        ...


# --- failures as reasons, for every runner ---------------------------------------------------


def failure_reason(stage: Stage, page_number: int, exc: BaseException) -> Reason:
    """A page a step could not finish, as a reason; an ocrflow error keeps its code and message."""
    if isinstance(exc, OcrflowError):
        code, message = exc.code, exc.message
    else:
        code, message = f"{stage.value}_failed", str(exc) or type(exc).__name__
    return Reason(stage=stage, code=code, message=f"page {page_number}: {message}", page=page_number)


def ingest_failure(source: Path, exc: BaseException) -> IngestResult:
    """Ingest reports bad input as data; this is a bug, and the document still gets a record."""
    log.error("ingest of %s failed: %s", Path(source).name, type(exc).__name__)
    return unreadable(
        Path(source), "internal_error", f"reading the file failed unexpectedly ({type(exc).__name__})"
    )


# --- the steps --------------------------------------------------------------------------------


def open_source(ctx: Context, source: Path, *, whole: bool) -> IngestResult:
    """A document named and its pages counted (:func:`~ocrflow.ingest.open_document`), or ingested whole.

    Opened, a document's pages are decoded by the step that reads them, so a page's
    preprocessing and OCR start as soon as that page exists. ``whole`` is for admission that
    must see every page first (a token budget estimates from the pages' sizes).
    """
    options = ctx.settings.ingest
    if whole:
        return ingest(Path(source), ctx.settings.work_dir, options)
    return open_document(Path(source), options)


def page_groups(ctx: Context, opened: IngestResult, job: Job) -> tuple[PageGroup, ...]:
    """How a document's pages are read: all in one group when the engine packs them, else one each."""
    if opened.pages or opened.reasons:  # ingested whole, or not usable at all: what it holds
        numbers = tuple(page.page_number for page in opened.pages)
    else:  # opened: every page, each ingested by the step that reads it
        numbers = tuple(range(1, opened.page_count + 1))
    if len(numbers) > 1 and packs_pages(
        ctx.engine,
        ctx.known_doctype(job.doc_type),
        job.task,
        independent_reading=ctx.settings.verify.independent_reading,
    ):
        return (numbers,)
    return tuple((number,) for number in numbers)


def group_label(opened: IngestResult, group: PageGroup) -> str:
    name = opened.source.path.name
    return f"{name} p{group[0]}" if len(group) == 1 else f"{name} p{group[0]}-{group[-1]}"


def read_pages(
    ctx: Context,
    opened: IngestResult,
    group: PageGroup,
    job: Job,
    ocr_slot: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> PagesRead:
    """Ingest (unless already done), prepare and read a group of pages: one, or a document's pages packed.

    A page that cannot be ingested or prepared is left out with a reason. OCR errors propagate
    for the runner to retry (transient) or record (:func:`collect`); ``ocr_slot`` is held while
    reading.
    """
    ingested = {page.page_number: page for page in opened.pages}
    pages, prepared, failures = [], [], []
    for number in group:
        page = ingested.get(number) or _ingest_page(ctx, opened, number)
        if isinstance(page, Reason):
            failures.append(page)
            continue
        pages.append(page)
        try:
            prepared.append(preprocess(page, ctx.preprocess_options))
        except Exception as exc:  # noqa: BLE001 - a page that cannot be prepared is a reason, not a crash
            failures.append(failure_reason(Stage.PREPROCESS, number, exc))
    doctype = ctx.known_doctype(job.doc_type)
    grounding = prepared and grounds(ctx, choose_task(ctx.engine, doctype, job.task), job)
    with _beside(partial(read_independently, ctx, prepared) if grounding else None) as independent:
        with ocr_slot():
            if len(group) > 1:
                ocr = recognize_document(prepared, ctx.engine, doctype, job.task) if prepared else []
            else:
                ocr = [recognize(page, ctx.engine, doctype, job.task) for page in prepared]
    return PagesRead(
        ingested=tuple(pages),
        pages=tuple(prepared),
        ocr=tuple(ocr),
        failures=tuple(failures),
        independent=independent.result() if independent else None,
    )


@contextmanager
def _beside(step: Callable[[], R] | None) -> Iterator[Future[R] | None]:
    """``step`` run in a thread of its own while the block runs; the block's end waits for it.

    The independent reading is local CPU and the API request is waiting on the network: side by
    side, a document takes the longer of the two instead of their sum.
    """
    if step is None:
        yield None
        return
    with ThreadPoolExecutor(1, thread_name_prefix="independent-reading") as pool:
        yield pool.submit(step)


def grounds(ctx: Context, task: OcrTask, job: Job) -> bool:
    """Whether the fields of documents read with ``task`` are checked against an independent reading.

    Only an API engine's, with ``verify.independent_reading`` on, and only when the job wants
    fields: a task read for its own outputs without a type (a table, Markdown) has none.
    """
    if ctx.api_engine is None or not ctx.settings.verify.independent_reading:
        return False
    return job.doc_type != AUTO or not gives_outputs(task, has_doctype=False)


def _ingest_page(ctx: Context, opened: IngestResult, number: int) -> PageRef | Reason:
    try:
        return ingest_page(opened.source, number, ctx.settings.work_dir, ctx.settings.ingest)
    except Exception as exc:  # noqa: BLE001 - bad input is a reason already; this is a bug, kept to its page
        log.error("ingest of %s page %d failed: %s", opened.source.path.name, number, type(exc).__name__)
        return failure_reason(Stage.INGEST, number, exc)


def submit(runner: Runner, ctx: Context, opened: IngestResult, job: Job) -> Submitted:
    """Hand a document to the runner: read and concluded in one step when it is one group, else per group.

    One step a document keeps orchestration small (a Prefect task run costs about as much CPU
    as a page's extraction); pages read apart still run at once, each a step of its own.
    """
    groups = page_groups(ctx, opened, job)
    if len(groups) <= 1:
        return Submitted(opened, whole=runner.process(opened, groups, job))
    handles = tuple(runner.read(opened, group, job, group_label(opened, group)) for group in groups)
    return Submitted(opened, groups=tuple(zip(groups, handles, strict=True)))


def collect(opened: IngestResult, groups: Iterable[tuple[PageGroup, Handle[PagesRead]]]) -> Readings:
    """Wait for a document's page groups; a group that failed becomes one OCR reason per page.

    The pages ingested by the groups and their ingest reasons complete the document's ingest record.
    """
    ingested: list[PageRef] = list(opened.pages)
    ingest_reasons: list[Reason] = list(opened.reasons)
    pages: list[PageRef] = []
    ocr: list[OcrResult] = []
    failures: list[Reason] = []
    independent: list[Independent | None] = []
    for group, handle in groups:
        try:
            read = handle.result()
        except Exception as exc:  # noqa: BLE001 - any failure of a page becomes its recorded reason
            failures.extend(failure_reason(Stage.OCR, number, exc) for number in group)
            continue
        ingested.extend(page for page in read.ingested if page not in opened.pages)
        for reason in read.failures:
            (ingest_reasons if reason.stage is Stage.INGEST else failures).append(reason)
        pages.extend(read.pages)
        ocr.extend(read.ocr)
        independent.append(read.independent)
    record = opened.model_copy(
        update={
            "pages": tuple(sorted(ingested, key=lambda page: page.page_number)),
            "reasons": tuple(sorted(ingest_reasons, key=lambda reason: reason.page or 0)),
        }
    )
    return Readings(
        ingested=record,
        pages=tuple(sorted(pages, key=lambda page: page.page_number)),
        ocr=tuple(sorted(ocr, key=lambda result: result.page_number)),
        failures=tuple(sorted(failures, key=lambda reason: reason.page or 0)),
        independent=_joined(independent),
    )


def _joined(parts: Sequence[Independent | None]) -> Independent | None:
    """The groups' independent readings as one, if every group that read pages made one."""
    if not parts or any(part is None for part in parts):
        return None
    return Independent(
        ocr=tuple(sorted((r for part in parts for r in part.ocr), key=lambda result: result.page_number)),
        usage=sum((part.usage for part in parts), Usage()),
    )


def process(
    ctx: Context,
    opened: IngestResult,
    groups: Sequence[PageGroup],
    job: Job,
    ocr_slot: Callable[[], AbstractContextManager[object]] = nullcontext,
    retry_delays: Sequence[float] = OCR_RETRY_DELAYS,
) -> Concluded:
    """A document's groups read in turn in this thread, transient failures retried; then concluded."""

    def read(group: PageGroup) -> PagesRead:
        return retrying(lambda: read_pages(ctx, opened, group, job, ocr_slot), retry_delays)

    reads = [(group, Done.of(partial(read, group))) for group in groups]
    readings = collect(opened, reads)
    return Concluded(readings=readings, result=conclude(ctx, readings, job))


def interpret(
    ocr_results: Sequence[OcrResult],
    doctypes: dict[str, DocType],
    doc_type: str,
    min_confidence: float,
    independent: Sequence[OcrResult] | None = None,
    *,
    from_api: bool = False,
    reread: Reread | None = None,
) -> tuple[Extraction | None, Reason | None]:
    """Pick the document type (or take the one given), extract its fields, weigh them, validate them.

    Fields are located and their confidence made from evidence (:func:`~ocrflow.confidence.weigh_fields`):
    an API engine's (``from_api``) against ``independent``, another engine's reading of the pages;
    the embedded engine's with ``reread``, a second recogniser reading a value's lines again.
    """
    type_reason = None
    if doc_type == AUTO:
        name, type_reason = detect_doctype(ocr_results, doctypes)
        if name is None and type_reason is not None and type_reason.code == "unknown_doc_type":
            return extract_generic(ocr_results), None  # matches no type: text, layout, key-values, tables
        if name is None:
            return None, type_reason
    else:
        name = doc_type
    doctype = get_doctype(doctypes, name)
    extraction = extract(ocr_results, doctype)
    weighed = weigh_fields(extraction, doctype, ocr_results, independent, from_api=from_api, reread=reread)
    return validate(weighed, doctype, min_confidence=min_confidence), None


def assess(ctx: Context, readings: Readings, job: Job) -> DocumentResult:
    """The document's outcome from its readings: type, fields, validation, then routing.

    A task with outputs of its own (tables, LaTeX, schema-less key-values, language) has them
    parsed and checked (:mod:`ocrflow.outputs`); a failed check sends the document to review.
    Asked for such a task without a type, the run wants the outputs, not fields: no type is
    looked for.
    """
    task = readings.ocr[0].task if readings.ocr else None
    outputs, output_reasons = None, []
    if task is not None and gives_outputs(task, has_doctype=job.doc_type != AUTO):
        outputs, output_reasons = task_outputs(task, readings.ocr)
    wants_type = outputs is None or job.doc_type != AUTO
    independent, verify_usage = None, Usage()
    if readings.ocr and grounds(ctx, task, job):
        made = readings.independent or read_independently(ctx, readings.pages)
        independent, verify_usage = list(made.ocr), made.usage
    reread = None
    if ctx.second_reader is not None and (ctx.api_engine is None or independent is not None):
        reread = SecondReading(ctx.second_reader, readings.pages)
    extraction, type_reason = (
        interpret(
            readings.ocr,
            ctx.doctypes,
            job.doc_type,
            ctx.settings.routing.min_field_confidence,
            independent,
            from_api=ctx.api_engine is not None,
            reread=reread,
        )
        if readings.ocr and wants_type
        else (None, None)
    )
    if reread is not None:
        verify_usage += Usage(verify_cpu_seconds=round(reread.cpu_seconds, 3))
    doctype = ctx.doctypes.get(extraction.doc_type) if extraction else None
    rule = ctx.settings.review.rule_for(extraction.doc_type if extraction else None, schema_rule(doctype))
    failures = [*readings.failures, *output_reasons]
    status, reasons = decide(
        readings.ingested, readings.ocr, failures, extraction, doctype, type_reason, rule
    )
    result = build_result(
        readings.ingested, readings.pages, readings.ocr, extraction, status, reasons, independent or ()
    )
    return result.model_copy(update={"task": task, "outputs": outputs, "usage": result.usage + verify_usage})


def read_independently(ctx: Context, pages: Sequence[PageRef]) -> Independent:
    """The embedded engine's reading of the preprocessed pages an API engine read, and its CPU time.

    Whole pages: a key-information answer says nowhere where a value is, and the independent
    extraction (:mod:`ocrflow.confidence`) needs the labels around it. A page it cannot read
    leaves its fields ungrounded, which a person then looks at; it never fails the document.
    """
    started = time.thread_time()
    reading = []
    for page in pages:
        try:
            reading.append(recognize(page, ctx.verifier, None, OcrTask.ADVANCED_RECOGNITION))
        except OcrflowError as exc:
            log.warning("independent reading of page %d failed: %s", page.page_number, exc.code)
    cpu = round(time.thread_time() - started, 3)
    return Independent(ocr=tuple(reading), usage=Usage(verify_cpu_seconds=cpu))


class SecondReading:
    """The second recogniser on a document's preprocessed pages (a :data:`~ocrflow.confidence.Reread`).

    Reads the lines it is given again, cropped from the page the embedded engine read, and
    counts its CPU. A page it cannot read gives no second reading, which weighs nothing.
    """

    def __init__(self, reader: second.SecondReader, pages: Sequence[PageRef]) -> None:
        self.reader = reader
        self.pages = {page.page_number: page for page in pages}
        self.cpu_seconds = 0.0

    def __call__(self, boxes: Sequence[FieldBox]) -> list[OcrLine]:
        started = time.thread_time()
        lines: list[OcrLine] = []
        try:
            for number in dict.fromkeys(box.page for box in boxes):
                page = self.pages.get(number)
                if page is None:
                    return []
                on_page = [box.box for box in boxes if box.page == number]
                lines += self.reader.read(page.path, on_page, invert(page.to_original))
        except EngineError as exc:
            log.warning("second reading failed: %s", exc.code)
            return []
        finally:
            self.cpu_seconds += time.thread_time() - started
        return lines


def conclude(ctx: Context, readings: Readings, job: Job) -> DocumentResult:
    """Assess a document and store its outcome; a bug on the way stores a rejected record instead."""
    try:
        result = assess(ctx, readings, job)
    except Exception as exc:  # noqa: BLE001 - a bug in one document must not end the batch
        log.error("document %s failed: %s", readings.ingested.source.path.name, type(exc).__name__)
        result = failure_result(readings.ingested, Stage.ROUTE, type(exc).__name__)
    return store_result(ctx, result)


def store_result(ctx: Context, result: DocumentResult) -> DocumentResult:
    """The one place a run stores an outcome, durably, before anyone acts on it.

    A task's output files (tables as HTML and CSV, LaTeX, Markdown) are written first, so the
    result never names a file that is not there.
    """
    if result.outputs is not None:
        files = write_output_files(ctx.settings.out_dir, result.document_id, result.outputs)
        result = result.model_copy(update={"outputs": result.outputs.model_copy(update={"files": files})})
    ctx.store.save(result, on_queued=ctx.announce)
    return result


# --- a run ------------------------------------------------------------------------------------


def run_documents(
    ctx: Context,
    runner: Runner,
    admission: Admission,
    sources: Sequence[Path],
    job: Job,
    on_result: Callable[[DocumentResult], None] = lambda result: None,
) -> list[DocumentResult]:
    """Every document of a run: admit -> submit -> collect -> conclude, concluded oldest first.

    A document that does not fit the token budget while others are in flight waits for them
    to finish (what a document really costs is known only then); ``on_result`` sees each outcome.
    """
    in_flight: deque[Submitted] = deque()
    results: list[DocumentResult] = []
    for source, handle in zip(sources, runner.open(sources, whole=admission.needs_pages), strict=True):
        opened = _opened(source, handle)
        while (verdict := admission.admit(opened, busy=bool(in_flight))) is Verdict.WAIT:
            results.append(_finish(runner, admission, in_flight.popleft(), job, on_result))
        if verdict is Verdict.SUBMIT:
            in_flight.append(submit(runner, ctx, opened, job))
    while in_flight:
        results.append(_finish(runner, admission, in_flight.popleft(), job, on_result))
    close_run(ctx, admission)
    return results


def close_run(ctx: Context, admission: Admission) -> None:
    """End a run: give up its claims, write what stays pending, send the events its outcomes queued.

    Then the folder's index is rewritten (``<out>/index.csv``: each source's result file, status, reasons).
    """
    admission.close()
    deliver(ctx.store.engine)
    write_index(ctx.store)


def _opened(source: Path, handle: Handle[IngestResult]) -> IngestResult:
    try:
        return handle.result()
    except Exception as exc:  # noqa: BLE001 - see ingest_failure
        return ingest_failure(source, exc)


def _finish(
    runner: Runner,
    admission: Admission,
    submitted: Submitted,
    job: Job,
    on_result: Callable[[DocumentResult], None],
) -> DocumentResult:
    if submitted.whole is not None:
        concluded = submitted.whole.result()
        readings, result = concluded.readings, concluded.result
    else:
        readings = collect(submitted.opened, submitted.groups)
        result = runner.conclude(readings, job)
    admission.settle(readings, result)
    on_result(result)
    return result


def open_run(
    ctx: Context, job: Job, paths: Iterable[str | Path], *, reprocess: bool = False, logger=log
) -> tuple[Admission, list[Path]]:
    """A run's admission and its files, once the job's task is known to be one the engine can do."""
    check_task(ctx.engine, ctx.known_doctype(job.doc_type), job.task)  # before anything is read or sent
    admission = Admission(ctx, job, reprocess=reprocess, logger=logger)
    return admission, admission.sources(paths)


def run_inline(
    settings: Settings,
    paths: Sequence[str | Path],
    doc_type: str = AUTO,
    reprocess: bool = False,
    task: OcrTask | None = None,
    batch: bool = False,
) -> list[DocumentResult]:
    """A run with no Prefect server, in this thread: the flow's steps, without its tasks and artifacts."""
    ctx, job = Context(settings), Job(doc_type=doc_type, task=task)
    admission, sources = open_run(ctx, job, paths, reprocess=reprocess)
    if batch:
        from ocrflow.batch_run import submit_run

        submitted = submit_run(ctx, admission, sources, job)
        close_run(ctx, admission)
        return list(submitted.concluded)
    return run_documents(ctx, InlineRunner(ctx), admission, sources, job)


def process_document(
    ctx: Context, path: Path, doc_type: str = AUTO, task: OcrTask | None = None
) -> DocumentResult:
    """One document through every step in this thread, whatever was stored for it before."""
    runner = InlineRunner(ctx)
    job = Job(doc_type=doc_type, task=task)
    opened = _opened(Path(path), next(runner.open([Path(path)], whole=False)))
    submitted = submit(runner, ctx, opened, job)
    if submitted.whole is not None:
        return submitted.whole.result().result
    return runner.conclude(collect(opened, submitted.groups), job)


# --- the inline runner ------------------------------------------------------------------------


@dataclass(frozen=True)
class Done:
    """A step already run: its value, or the error it raised."""

    value: object = None
    error: BaseException | None = None

    def result(self):
        if self.error is not None:
            raise self.error
        return self.value

    @classmethod
    def of(cls, step: Callable[[], object]) -> Done:
        try:
            return cls(value=step())
        except Exception as exc:  # noqa: BLE001 - handed back like a failed task's state
            return cls(error=exc)


def retrying(step: Callable[[], R], delays: Sequence[float] = OCR_RETRY_DELAYS) -> R:
    """``step()``, tried again after each delay (with jitter) while it fails with a transient error."""
    for delay in delays:
        try:
            return step()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            time.sleep(delay * (1 + random.uniform(-OCR_RETRY_JITTER, OCR_RETRY_JITTER)))
    return step()


class InlineRunner:
    """Runs every step at once in this thread: for eval, tests and a one-file run, with no server."""

    def __init__(self, ctx: Context, retry_delays: Sequence[float] = OCR_RETRY_DELAYS) -> None:
        self.ctx = ctx
        self.retry_delays = tuple(retry_delays)

    def open(self, sources: Iterable[Path], *, whole: bool) -> Iterator[Done]:
        for source in sources:
            yield Done.of(lambda source=source: open_source(self.ctx, Path(source), whole=whole))

    def process(self, opened: IngestResult, groups: Sequence[PageGroup], job: Job) -> Done:
        return Done.of(lambda: process(self.ctx, opened, groups, job, retry_delays=self.retry_delays))

    def read(self, opened: IngestResult, group: PageGroup, job: Job, label: str = "") -> Done:
        return Done.of(lambda: retrying(lambda: read_pages(self.ctx, opened, group, job), self.retry_delays))

    def conclude(self, readings: Readings, job: Job) -> DocumentResult:
        return conclude(self.ctx, readings, job)
