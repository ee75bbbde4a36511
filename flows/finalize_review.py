"""The ``finalize_review`` flow: what happens after a person decides a document in the review app.

The review app saves the decision into the document's result JSON and emits
``ocrflow.review.completed``; the ``finalize-review`` deployment's trigger starts this
flow with the event's payload. It checks that the result really is the reviewed
document, writes the final record a downstream system picks up
(``<results>/final/<document_id>.json``: the field values as decided, who decided and
when) and publishes a summary with the numbers masked.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger

from ocrflow.doctypes import load_doctypes
from ocrflow.errors import InputError
from ocrflow.models import DocumentResult
from ocrflow.report import publish_review, review_flow_run_name
from ocrflow.settings import Settings
from ocrflow.store import write_json_atomically


def final_record(result: DocumentResult, status: str, decision: str, reviewer: str) -> dict:
    """The reviewed document as downstream systems read it: final values, status and who decided."""
    return {
        "document_id": result.document_id,
        "source": result.source,
        "doc_type": result.doc_type,
        "status": status,
        "fields": {name: field.value for name, field in result.fields.items()},
        "review": {
            "decision": decision,
            "reviewer": reviewer,
            "finalized_at": datetime.now(UTC).isoformat(),
        },
    }


@flow(name="finalize-review", flow_run_name=review_flow_run_name, validate_parameters=True)
def finalize_review(
    document_id: str,
    status: str,
    decision: str,
    result: str,
    reviewer: str = "",
    settings: Settings | None = None,
) -> str:
    """Write the reviewed document's final record beside its result; return the record's path."""
    settings = settings or Settings()
    result_path = Path(result)
    reviewed = DocumentResult.model_validate(json.loads(result_path.read_text(encoding="utf-8")))
    if reviewed.document_id != document_id:
        raise InputError(
            f"{result_path} holds document {reviewed.document_id[:12]}, not the reviewed {document_id[:12]}",
            code="wrong_document",
        )
    record = final_record(reviewed, status, decision, reviewer)
    final_path = result_path.parent / "final" / f"{document_id}.json"
    write_json_atomically(final_path, json.dumps(record, indent=2, ensure_ascii=False))
    get_run_logger().info("%s finalized as %s (%s)", document_id[:12], status, decision)

    doctype = load_doctypes(settings.schema_dir).get(reviewed.doc_type or "")
    publish_review(record, doctype, reviewed.source, settings.review_url)
    return str(final_path)
