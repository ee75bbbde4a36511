"""What a person monitoring runs sees: outcome tables and summaries, numbers masked."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ocrflow.doctypes import DocType
from ocrflow.masking import masked_values
from ocrflow.models import DocumentResult, Status


def outcome_rows(results: Sequence[DocumentResult], doctypes: dict[str, DocType]) -> list[dict[str, str]]:
    """One row per document; ID and card numbers masked as the schema says."""
    rows = []
    for result in results:
        doctype = doctypes.get(result.doc_type or "")
        values = masked_values({name: field.value for name, field in result.fields.items()}, doctype)
        shown = ", ".join(f"{name}={value}" for name, value in values.items() if value not in (None, ""))
        rows.append(
            {
                "document": Path(result.source).name,
                "id": result.document_id[:12],
                "type": result.doc_type or "-",
                "status": result.status.value,
                "reasons": "; ".join(
                    f"{r.code}" + (f" ({r.field})" if r.field else "") for r in result.reasons
                )
                or "-",
                "fields": shown or "-",
            }
        )
    return rows


def summary_markdown(results: Sequence[DocumentResult], title: str = "ocrflow run") -> str:
    """Counts per status and per reason, for the run's markdown artifact."""
    statuses = Counter(r.status for r in results)
    reasons = Counter((r.stage.value, r.code) for result in results for r in result.reasons)
    pages = sum(result.usage.pages for result in results)
    seconds = sum(result.usage.seconds for result in results)
    lines = [
        f"# {title}",
        "",
        f"{len(results)} documents, {pages} pages, {seconds:.1f} s of OCR",
        "",
        "| status | documents |",
        "|---|---|",
    ]
    lines += [f"| {status.value} | {statuses.get(status, 0)} |" for status in Status]
    if reasons:
        lines += ["", "| stage | reason | count |", "|---|---|---|"]
        lines += [f"| {stage} | {code} | {n} |" for (stage, code), n in reasons.most_common()]
    tokens = sum(r.usage.input_tokens + r.usage.output_tokens for r in results)
    if tokens:
        lines += ["", f"Tokens used: {tokens}"]
    return "\n".join(lines) + "\n"
