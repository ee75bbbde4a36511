"""Routing: every document ends accepted, needs_review or rejected, with its reasons.

Rejected means there is nothing a reviewer could work with (no readable page, no text);
needs_review means a person can finish the job; accepted means every field passed.
A document type's :class:`~ocrflow.settings.ReviewRule` adds conditions (confidence
thresholds, required fields) and a deterministic audit sample of would-be-accepted documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pydantic import ValidationError

from ocrflow.doctypes import DocType
from ocrflow.errors import ConfigurationError
from ocrflow.generic import GENERIC
from ocrflow.layout import rows
from ocrflow.models import (
    DocumentResult,
    Extraction,
    Grounding,
    IngestResult,
    OcrResult,
    PageRef,
    PageResult,
    Reason,
    Stage,
    Status,
    Usage,
    shown_path,
)
from ocrflow.settings import ReviewRule
from ocrflow.validate import NOTES, blocking_errors


def decide(
    ingest: IngestResult,
    ocr_results: Sequence[OcrResult],
    ocr_failures: Sequence[Reason],
    extraction: Extraction | None,
    doctype: DocType | None,
    type_reason: Reason | None = None,
    rule: ReviewRule | None = None,
) -> tuple[Status, list[Reason]]:
    """The outcome and its reasons; ``rule`` adds the document type's review conditions.

    Without a ``rule`` (from settings), the type's schema may give one as ``x-ocrflow.review``.
    """
    status, reasons = _decide(ingest, ocr_results, ocr_failures, extraction, doctype, type_reason)
    rule = rule or schema_rule(doctype)
    if rule is not None and status is not Status.REJECTED:
        status, reasons = apply_review_rule(ingest.source.document_id, extraction, reasons, rule)
    if status is Status.REJECTED:
        return status, reasons  # nothing was read: there is nothing to note about it
    return status, _unique(reasons + _notes(extraction))


def _notes(extraction: Extraction | None) -> list[Reason]:
    """What was done to values on the way, as reasons that do not change the outcome.

    An MRZ code read back from digits to letters: an accepted document says so.
    """
    if extraction is None:
        return []
    generic = []
    if extraction.doc_type == GENERIC:
        found = " and ".join(name.replace("_", "-") for name in extraction.fields) or "nothing else"
        message = (
            f"the page matches no document type well; kept as a generic document (text, positions, {found})"
        )
        generic.append(_reason(Stage.EXTRACT, GENERIC, message))
    return generic + [
        _reason(Stage.EXTRACT, error.code, error.message, field=name, page=field.page)
        for name, field in extraction.fields.items()
        for error in field.errors
        if error.code in NOTES
    ]


def apply_review_rule(
    document_id: str, extraction: Extraction | None, reasons: list[Reason], rule: ReviewRule
) -> tuple[Status, list[Reason]]:
    """Route by a type's activation conditions, then sample the documents that would pass.

    With ``validation_failures`` off, a validation error alone no longer sends a document to
    review (a missing required field still does); confidence thresholds and required
    fields are added; an accepted document in the audit sample goes to review anyway.
    """
    if not rule.validation_failures:
        reasons = [r for r in reasons if r.stage is not Stage.VALIDATE or r.code == "missing"]
    fields = extraction.fields if extraction else {}
    explained = {(r.field, r.code) for r in reasons}
    for name, field in fields.items():
        threshold = rule.min_confidence.get(name, rule.min_confidence.get("*"))
        if threshold is not None and field.value not in (None, "") and field.confidence < threshold:
            if (name, "low_confidence") not in explained:
                message = f"{name} was read with confidence {field.confidence:.2f}, below {threshold:.2f}"
                reasons.append(_reason(Stage.ROUTE, "low_confidence", message, field=name, page=field.page))
    if rule.require_verification:
        for name, field in fields.items():
            if field.evidence is not None and field.evidence.outcome is Grounding.UNVERIFIED:
                message = f"{name} was not checked against an independent reading of the page"
                reasons.append(_reason(Stage.ROUTE, "unverified", message, field=name, page=field.page))
    for name in rule.required:
        field = fields.get(name)
        if (field is None or field.value in (None, "")) and (name, "missing") not in explained:
            reasons.append(
                _reason(
                    Stage.ROUTE, "missing", f"{name} is required for this type but was not found", field=name
                )
            )
    if reasons:
        return Status.NEEDS_REVIEW, _unique(reasons)
    if in_audit_sample(document_id, rule.audit_percent):
        message = f"picked for the {rule.audit_percent:g}% audit sample of documents that would be accepted"
        return Status.NEEDS_REVIEW, [_reason(Stage.ROUTE, AUDIT_SAMPLE, message)]
    return Status.ACCEPTED, []


AUDIT_SAMPLE = "audit_sample"


def schema_rule(doctype: DocType | None) -> ReviewRule | None:
    """The review rule a document type's schema sets in ``x-ocrflow.review``, if any."""
    if doctype is None or "review" not in doctype.hints:
        return None
    try:
        return ReviewRule.model_validate(doctype.hints["review"])
    except ValidationError as exc:
        raise ConfigurationError(
            f"{doctype.name}: x-ocrflow.review is not a valid review rule: {exc}"
        ) from None


def in_audit_sample(document_id: str, percent: float) -> bool:
    """Whether a document is in a ``percent`` sample: fixed by its hash, so reruns agree."""
    if percent <= 0:
        return False
    digest = hashlib.sha256(document_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < round(percent * 100)


def _decide(
    ingest: IngestResult,
    ocr_results: Sequence[OcrResult],
    ocr_failures: Sequence[Reason],
    extraction: Extraction | None,
    doctype: DocType | None,
    type_reason: Reason | None,
) -> tuple[Status, list[Reason]]:
    reasons: list[Reason] = [*ingest.reasons, *ocr_failures]
    if not ingest.pages:
        return Status.REJECTED, reasons or [
            _reason(Stage.INGEST, "no_pages", "the document has no pages to read")
        ]
    if not ocr_results:
        return Status.REJECTED, reasons
    if not any(result.text.strip() or result.key_values for result in ocr_results):
        message = "no text was found on any page; the scan may be blank, too faint or not a document"
        return Status.REJECTED, [*reasons, _reason(Stage.OCR, "no_text", message)]
    if type_reason is not None:
        reasons.append(type_reason)
    if extraction is not None and doctype is not None:
        reasons.extend(extraction.reasons)
        # Validation already gave its errors a reason; extraction's own (an unreadable
        # value) get theirs here, once.
        explained = {(r.field, r.code) for r in extraction.reasons}
        for name, field in extraction.fields.items():
            for error in blocking_errors(field, doctype.fields.get(name)):
                if (name, error.code) not in explained:
                    reasons.append(
                        _reason(Stage.EXTRACT, error.code, error.message, field=name, page=field.page)
                    )
    return (Status.NEEDS_REVIEW if reasons else Status.ACCEPTED), _unique(reasons)


def _reason(stage: Stage, code: str, message: str, **where) -> Reason:
    return Reason(stage=stage, code=code, message=message, **where)


def _unique(reasons: list[Reason]) -> list[Reason]:
    return list(dict.fromkeys(reasons))


def build_result(
    ingest: IngestResult,
    pages: Sequence[PageRef],
    ocr_results: Sequence[OcrResult],
    extraction: Extraction | None,
    status: Status,
    reasons: list[Reason],
    independent: Sequence[OcrResult] = (),
) -> DocumentResult:
    """Assemble the result contract from what every stage produced.

    Page sizes come from ingest (the page as decoded); the preprocessing record from
    ``pages``, the pages as they went to OCR. ``independent`` is the embedded engine's reading
    of an API engine's pages: kept beside each page's own lines, and the document's text where
    the engine answered with fields instead (:func:`document_text`).
    """
    ordered = sorted(ocr_results, key=lambda r: r.page_number)
    sizes = {page.page_number: page for page in ingest.pages}
    independent_lines = {reading.page_number: list(reading.lines) for reading in independent}
    usage = Usage()
    for result in ordered:
        usage = usage + result.usage
    return DocumentResult(
        document_id=ingest.source.document_id,
        source=shown_path(ingest.source.path),
        doc_type=extraction.doc_type if extraction else None,
        status=status,
        reasons=reasons,
        fields=extraction.fields if extraction else {},
        text=document_text(ordered, independent),
        pages=[
            PageResult(
                page_number=number,
                width=_original_size(sizes[number])[0],
                height=_original_size(sizes[number])[1],
                lines=[line for r in ordered if r.page_number == number for line in r.lines],
                independent_lines=independent_lines.get(number, []),
            )
            for number in sorted({r.page_number for r in ordered} | set(independent_lines))
            if number in sizes
        ],
        engine=f"{ordered[0].engine}:{ordered[0].model}" if ordered else None,
        usage=usage,
        preprocessing={page.page_number: list(page.steps) for page in pages},
    )


def document_text(ordered: Sequence[OcrResult], independent: Sequence[OcrResult]) -> str:
    """The document's text, page after page in reading order.

    An answer with fields (key-information extraction) holds no page text: its pages' text is
    the independent reading's, where there is one. An answer whose fields could not be parsed
    keeps its raw text, which a reviewer then reads.
    """
    read = {reading.page_number: reading for reading in independent}
    pages: list[OcrResult] = []
    for result in ordered:
        covered = _pages_of(result)
        if result.key_values and all(number in read for number in covered):
            pages.extend(read[number] for number in covered)
        else:
            pages.append(result)
    return "\n\n".join(reading_order_text(page) for page in pages)


def _pages_of(result: OcrResult) -> range:
    """The pages a reading covers: a packed request's answer is numbered by its first page."""
    return range(result.page_number, result.page_number + max(result.usage.pages, 1))


def reading_order_text(result: OcrResult) -> str:
    """A page's text in reading order: rows top to bottom, each left to right.

    Engines return lines in their own order (RapidOCR's detector order, pieces of one
    printed line apart); a page read without lines (an API's plain text) keeps its text.
    """
    if not result.lines:
        return result.text
    return "\n".join(row.text for row in rows([result]))


def _original_size(page: PageRef) -> tuple[int, int]:
    # Ingest only ever scales a page down, so its matrix is diagonal.
    (a, _, _), (_, e, _) = page.to_original
    return round(a * page.width), round(e * page.height)


def failure_result(ingest: IngestResult, stage: Stage, message: str) -> DocumentResult:
    """The record of a document whose processing broke: rejected, with the reason, never lost."""
    reason = _reason(
        stage, "internal_error", f"processing failed unexpectedly ({message}); it can be run again"
    )
    return DocumentResult(
        document_id=ingest.source.document_id,
        source=shown_path(ingest.source.path),
        doc_type=None,
        status=Status.REJECTED,
        reasons=[*ingest.reasons, reason],
    )
