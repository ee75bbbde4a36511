"""The stages composed without Prefect: one document, start to stored outcome.

The Prefect flow in ``flows/`` runs the same stage functions as tasks (pages in
parallel, retries, names in the UI); this plain composition serves ``ocrflow eval``
and the unit tests, where a server would only add start-up time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ocrflow.cache import CachedEngine, cache_dir
from ocrflow.detect import detect_doctype
from ocrflow.doctypes import DocType, get_doctype, load_doctypes
from ocrflow.engines import OcrEngine, create_engine
from ocrflow.engines._api import ApiEngine
from ocrflow.errors import OcrflowError
from ocrflow.extract import extract
from ocrflow.generic import extract_generic
from ocrflow.ingest import ingest
from ocrflow.models import DocumentResult, Extraction, IngestResult, OcrResult, PageRef, Reason, Stage
from ocrflow.ocr import recognize
from ocrflow.preprocess import preprocess
from ocrflow.routing import build_result, decide, schema_rule
from ocrflow.settings import Settings
from ocrflow.store import ResultStore
from ocrflow.validate import validate

AUTO = "auto"


@dataclass
class Context:
    """What the stages need, built once per process from explicit settings.

    An engine may be handed in (tests share one; models take a second to load). Either
    way it runs behind the OCR cache when ``settings.cost.cache`` covers it.
    """

    settings: Settings
    given_engine: OcrEngine | None = None

    @cached_property
    def engine(self) -> OcrEngine:
        return with_cache(self.given_engine or create_engine(self.settings), self.settings)

    @property
    def api_engine(self) -> ApiEngine | None:
        """The paid API engine behind the cache, or ``None`` for a free one."""
        engine = self.engine.engine if isinstance(self.engine, CachedEngine) else self.engine
        return engine if isinstance(engine, ApiEngine) else None

    @property
    def bills_tokens(self) -> bool:
        """Whether the engine is a paid API, whose tokens the run's budget counts."""
        return self.api_engine is not None

    @cached_property
    def doctypes(self) -> dict[str, DocType]:
        return load_doctypes(self.settings.schema_dir)

    def known_doctype(self, doc_type: str) -> DocType | None:
        """The type named up front, which API engines fill by key-information extraction."""
        return None if doc_type == AUTO else get_doctype(self.doctypes, doc_type)

    @cached_property
    def store(self) -> ResultStore:
        return ResultStore(self.settings.out_dir, self.settings.resolved_database_url())


def with_cache(engine: OcrEngine, settings: Settings) -> OcrEngine:
    """``engine`` behind the OCR cache in ``<out>/.cache/ocr`` if ``settings.cost.cache`` covers it.

    By default only API engines are cached: their calls are paid for, so a re-run or a
    retried task must not pay twice. The embedded engine is cheap to run again.
    """
    mode = settings.cost.cache
    if mode == "all" or (mode == "api" and isinstance(engine, ApiEngine)):
        return CachedEngine(engine, cache_dir(settings.out_dir))
    return engine


def ocr_failure(page: PageRef, exc: OcrflowError) -> Reason:
    return Reason(
        stage=Stage.OCR,
        code=exc.code,
        message=f"page {page.page_number}: {exc.message}",
        page=page.page_number,
    )


def interpret(
    ocr_results: Sequence[OcrResult],
    doctypes: dict[str, DocType],
    doc_type: str,
    min_confidence: float,
) -> tuple[Extraction | None, Reason | None]:
    """Pick the document type (or take the one given), extract its fields, validate them."""
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
    return validate(extract(ocr_results, doctype), doctype, min_confidence=min_confidence), None


def finish(
    ctx: Context,
    ingested: IngestResult,
    pages: Sequence[PageRef],
    ocr_results: Sequence[OcrResult],
    ocr_failures: Sequence[Reason],
    extraction: Extraction | None,
    type_reason: Reason | None,
) -> DocumentResult:
    """Route the document, then store its outcome durably before anyone acts on it."""
    doctype = ctx.doctypes.get(extraction.doc_type) if extraction else None
    rule = ctx.settings.review.rule_for(extraction.doc_type if extraction else None, schema_rule(doctype))
    status, reasons = decide(ingested, ocr_results, ocr_failures, extraction, doctype, type_reason, rule)
    result = build_result(ingested, pages, ocr_results, extraction, status, reasons)
    ctx.store.save(result)
    return result


def process_document(ctx: Context, path: Path, doc_type: str = AUTO) -> DocumentResult:
    settings = ctx.settings
    ingested = ingest(Path(path), settings.work_dir, settings.ingest)
    pages = [preprocess(page, settings.preprocess) for page in ingested.pages]
    ocr_results: list[OcrResult] = []
    failures: list[Reason] = []
    for page in pages:
        try:
            ocr_results.append(recognize(page, ctx.engine, ctx.known_doctype(doc_type)))
        except OcrflowError as exc:
            failures.append(ocr_failure(page, exc))
    extraction, type_reason = (
        interpret(ocr_results, ctx.doctypes, doc_type, settings.routing.min_field_confidence)
        if ocr_results
        else (None, None)
    )
    return finish(ctx, ingested, pages, ocr_results, failures, extraction, type_reason)
