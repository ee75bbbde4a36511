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
import os
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from ocrflow.doctypes import load_doctypes
from ocrflow.errors import InputError
from ocrflow.masking import masked_values
from ocrflow.models import DocumentResult
from ocrflow.settings import Settings
from ocrflow.store import write_json_atomically


def _run_name() -> str:
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    return f"finalize review {str(parameters.get('document_id'))[:12]} ({parameters.get('decision')})"


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


@flow(name="finalize-review", flow_run_name=_run_name, validate_parameters=True)
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
    shown = masked_values(record["fields"], doctype)
    name = os.path.basename(reviewed.source)
    link = f"{settings.review_url.rstrip('/')}/items/{document_id}" if settings.review_url else None
    lines = [
        f"# Review of {f'[{name}]({link})' if link else name}",
        "",
        f"{decision} by {reviewer or 'unknown'}: now **{status}**",
        "",
        "| field | value |",
        "|---|---|",
        *(f"| {field} | {'' if value is None else value} |" for field, value in shown.items()),
    ]
    create_markdown_artifact(
        "\n".join(lines) + "\n", key="ocrflow-review", description="A finalized review (numbers masked)"
    )
    return str(final_path)
