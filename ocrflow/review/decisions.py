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
from ocrflow.models import DocumentResult, Extraction, FieldResult, Reason, Stage, Status
from ocrflow.validate import validate


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
