"""A reviewer's decision turned into the document's final result.

Approved and corrected documents end ``accepted``, rejected ones ``rejected``; the
result is written exactly as the pipeline writes an accepted document's. Typed values
are validated again (a person checked them, so confidence no longer blocks), which
keeps a field's ``errors`` true to its final value.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from ocrflow.doctypes import DocType
from ocrflow.errors import ReviewError
from ocrflow.extract import extract
from ocrflow.models import (
    DocumentResult,
    Extraction,
    FieldOverride,
    FieldResult,
    OcrResult,
    OcrTask,
    Reason,
    Stage,
    Status,
)
from ocrflow.validate import blocking_errors, validate
from ocrflow.verify import ground


class Decision(StrEnum):
    APPROVED = "approved"
    CORRECTED = "corrected"
    REJECTED = "rejected"


def normalize_values(values: dict[str, Any]) -> dict[str, Any]:
    """Form input as field values: surrounding spaces dropped, a blank field is no value."""
    return {
        name: (value.strip() or None) if isinstance(value, str) else value for name, value in values.items()
    }


def changed_fields(result: DocumentResult, values: dict[str, Any]) -> dict[str, Any]:
    """The submitted values that differ from what the engine read."""
    current = {name: field.value for name, field in result.fields.items()}
    return {name: value for name, value in values.items() if current.get(name) != value}


def decision_for(reject: bool, changes: dict[str, Any]) -> Decision:
    if reject:
        return Decision.REJECTED
    return Decision.CORRECTED if changes else Decision.APPROVED


def revalidated_fields(
    result: DocumentResult, changes: dict[str, Any], doctype: DocType | None
) -> dict[str, FieldResult]:
    """The fields with ``changes`` applied (confidence 1: a person typed them) and errors redone."""
    fields = {name: field.model_copy(deep=True) for name, field in result.fields.items()}
    for name, value in changes.items():
        fields[name] = FieldResult(
            value=value, confidence=1.0, raw=value, page=fields.get(name, FieldResult()).page
        )
    for field in fields.values():
        field.errors = []
    if doctype is None:
        return fields
    return validate(Extraction(doc_type=doctype.name, fields=fields), doctype, min_confidence=0.0).fields


def final_result(
    result: DocumentResult,
    decision: Decision,
    changes: dict[str, Any],
    doctype: DocType | None,
    reviewer: str,
    note: str = "",
) -> DocumentResult:
    if decision is Decision.REJECTED:
        message = f"rejected by reviewer {reviewer}" + (f": {note}" if note else "")
        reason = Reason(stage=Stage.ROUTE, code="rejected_in_review", message=message)
        return result.model_copy(update={"status": Status.REJECTED, "reasons": [*result.reasons, reason]})
    fields = revalidated_fields(result, changes, doctype)
    return result.model_copy(update={"status": Status.ACCEPTED, "reasons": [], "fields": fields})


def live_errors(values: dict[str, Any], doctype: DocType) -> dict[str, list[str]]:
    """Validation messages for a form as it stands, by field (what the reviewer sees while typing)."""
    fields = {
        name: FieldResult(value=value, confidence=1.0) for name, value in normalize_values(values).items()
    }
    checked = validate(Extraction(doc_type=doctype.name, fields=fields), doctype, min_confidence=0.0)
    return {name: [error.message for error in field.errors] for name, field in checked.fields.items()}


def invalid_fields(result: DocumentResult, doctype: DocType | None) -> dict[str, list[str]]:
    """The fields whose decided value fails validation, with the messages a person reads.

    What would stop the pipeline from accepting a document stops a reviewer's approval too
    (a masked number a document prints masked does not: it is recorded, not blocking).
    """
    if doctype is None:
        return {}
    found = {}
    for name, field in result.fields.items():
        errors = blocking_errors(field, doctype.fields.get(name))
        if errors:
            found[name] = [error.message for error in errors]
    return found


def with_overrides(
    result: DocumentResult, fields: dict[str, list[str]], reviewer: str, note: str
) -> DocumentResult:
    """``result`` with each of ``fields`` marked as kept on purpose by ``reviewer``, with ``note``."""
    marked = {name: field.model_copy(deep=True) for name, field in result.fields.items()}
    for name in fields:
        marked[name].override = FieldOverride(reviewer=reviewer, note=note)
    return result.model_copy(update={"fields": marked})


def read_again_as(result: DocumentResult, doctype: DocType, min_confidence: float) -> DocumentResult:
    """The document's stored reading extracted and validated as ``doctype``: no new OCR.

    Used when a reviewer chooses the type of a document the machine could not type. The
    lines each page's engine returned are in the result, so the fields come from them the
    way the pipeline would have found them; the document stays in review. A page an API
    engine answered with fields only has no lines of its own: its independent reading (the
    embedded engine's lines, with boxes and scores) is read instead. Each value is located
    in the lines it was read from.
    """
    readings = []
    for page in result.pages:
        engine, _, model = (result.engine or "stored:reading").partition(":")
        lines = page.lines
        if not lines and page.independent_lines:
            engine, model, lines = "local", "independent reading", page.independent_lines
        readings.append(
            OcrResult(
                engine=engine,
                model=model or "reading",
                task=OcrTask.TEXT_RECOGNITION,
                page_number=page.page_number,
                lines=tuple(lines),
                text="\n".join(line.text for line in lines),
            )
        )
    extraction = extract(readings, doctype)
    for name, field in extraction.fields.items():
        # Where each value is printed, as the pipeline locates the embedded engine's values.
        located = ground(field.value, doctype.fields.get(name), readings)
        if located.lines:
            field.page, field.boxes = located.page, located.boxes
    extraction = validate(extraction, doctype, min_confidence=min_confidence)
    kept = [r for r in result.reasons if r.code not in TYPE_REASONS and r.stage is not Stage.VALIDATE]
    return result.model_copy(
        update={
            "doc_type": doctype.name,
            "fields": extraction.fields,
            "reasons": [*kept, *extraction.reasons],
            "status": Status.NEEDS_REVIEW,
        }
    )


TYPE_REASONS = frozenset({"unknown_doc_type", "ambiguous_doc_type"})
"""Reason codes a chosen type answers."""


def reopened_result(result: DocumentResult, reviewer: str, reason: str) -> DocumentResult:
    """A decided document back in review: its decided values stay as the form's start."""
    why = Reason(stage=Stage.ROUTE, code="reopened_in_review", message=f"reopened by {reviewer}: {reason}")
    kept = [r for r in result.reasons if r.code != "rejected_in_review"]
    return result.model_copy(update={"status": Status.NEEDS_REVIEW, "reasons": [*kept, why]})


def with_new_reading(result: DocumentResult) -> DocumentResult:
    """A decided document with the machine's newer reading in place of the decided values."""
    if result.reread is None:
        raise ReviewError("the document has no newer reading; run it again with --reprocess first")
    reread = result.reread
    return result.model_copy(
        update={"fields": reread.fields, "reasons": reread.reasons, "engine": reread.engine, "reread": None}
    )
