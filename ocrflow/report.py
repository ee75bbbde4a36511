"""What a person monitoring runs sees: outcome tables and summaries, numbers masked."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ocrflow.cost import PendingDocument, usage_cost
from ocrflow.doctypes import DocType
from ocrflow.masking import masked_values
from ocrflow.models import DocumentResult, Status, Usage
from ocrflow.settings import CostOptions


@dataclass(frozen=True)
class Spend:
    """What a run paid an API engine, and what it left for later."""

    model: str
    options: CostOptions
    budget: int | None = None
    pending: Sequence[PendingDocument] = ()
    cache_hits: int = 0
    cache_saved: Usage = field(default_factory=Usage)


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
                # What this document's API calls were billed, as each response reported it.
                "tokens": f"{result.usage.input_tokens + result.usage.output_tokens:,}"
                if result.usage.input_tokens or result.usage.output_tokens
                else "-",
            }
        )
    return rows


def summary_markdown(
    results: Sequence[DocumentResult], title: str = "ocrflow run", spend: Spend | None = None
) -> str:
    """Counts per status and per reason, and with ``spend`` the tokens and cost, for the run's artifact."""
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
    usage = sum((r.usage for r in results), Usage())
    if spend is not None:
        lines += spend_lines(usage, spend)
    elif usage.input_tokens or usage.output_tokens:
        lines += ["", f"Tokens used: {usage.input_tokens + usage.output_tokens}"]
    return "\n".join(lines) + "\n"


def spend_lines(usage: Usage, spend: Spend) -> list[str]:
    """The run's tokens as billed (the results' ``usage``), their cost, the budget and what waits."""
    total = usage.input_tokens + usage.output_tokens
    cost = usage_cost(usage, spend.model, spend.options)
    currency = spend.options.currency
    lines = [
        "",
        f"## API usage ({spend.model})",
        "",
        "| input tokens | of which image | output tokens | total | estimated cost |",
        "|---|---|---|---|---|",
        f"| {usage.input_tokens:,} | {usage.image_tokens:,} | {usage.output_tokens:,} | {total:,} | "
        + (f"{cost:.4f} {currency} |" if cost is not None else "unknown: no price set for this model |"),
    ]
    if spend.budget is not None:
        lines += ["", f"Token budget: {total:,} of {spend.budget:,} used."]
    if spend.cache_hits:
        saved = spend.cache_saved.input_tokens + spend.cache_saved.output_tokens
        lines += [
            "",
            f"Requests answered from the OCR cache: {spend.cache_hits} ({saved:,} tokens not paid again).",
        ]
    if spend.pending:
        lines += [
            "",
            f"## Pending: {len(spend.pending)} documents wait for the next run (token budget reached)",
            "",
            "| document | id | estimated tokens |",
            "|---|---|---|",
        ]
        lines += [
            f"| {Path(doc.path).name} | {doc.document_id[:12]} | {doc.estimated_tokens:,} |"
            for doc in spend.pending
        ]
    return lines
