"""Everything a person monitoring runs sees in Prefect, numbers masked.

Run names, progress, outcome tables, summaries with spending, links to review items and
finalized reviews. :class:`RunMonitor` publishes a run's artifacts; the functions build their contents, so the
command line prints the same rows and tests read the same text.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocrflow.cost import usage_cost
from ocrflow.doctypes import DocType
from ocrflow.masking import masked_values
from ocrflow.models import DocumentResult, Status, Usage
from ocrflow.settings import CostOptions

if TYPE_CHECKING:
    from ocrflow.admission import Admission, PendingDocument
    from ocrflow.ingest import MissingInput
    from ocrflow.pipeline import Context


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


@dataclass(frozen=True)
class ReasonSummary:
    """One reason of a run, told once however many documents share it: its message and where."""

    code: str
    field: str | None
    message: str
    documents: list[str]

    def line(self, names_shown: int = 5) -> str:
        """``missing (total): Total was not found: a.png, b.png and 3 more``."""
        names = ", ".join(self.documents[:names_shown])
        if len(self.documents) > names_shown:
            names += f" and {len(self.documents) - names_shown} more"
        field = f" ({self.field})" if self.field else ""
        return f"{self.code}{field}: {self.message}: {names}"


def reason_summaries(results: Sequence[DocumentResult]) -> list[ReasonSummary]:
    """Each distinct reason (code, field, message) with the documents it applies to, commonest first."""
    documents: dict[tuple[str, str | None, str], list[str]] = {}
    for result in results:
        for reason in result.reasons:
            names = documents.setdefault((reason.code, reason.field, reason.message), [])
            if (name := Path(result.source).name) not in names:
                names.append(name)
    ordered = sorted(documents.items(), key=lambda item: (-len(item[1]), item[0][0], item[0][1] or ""))
    return [ReasonSummary(code, field, message, names) for (code, field, message), names in ordered]


def summary_markdown(
    results: Sequence[DocumentResult],
    title: str = "ocrflow run",
    spend: Spend | None = None,
    missing: Sequence[MissingInput] = (),
) -> str:
    """Counts per status and per reason, and with ``spend`` the tokens and cost, for the run's artifact.

    ``missing``: paths the run was given that hold no document, each with why.
    """
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
    if missing:
        lines += ["", f"## Not found ({len(missing)}): the other documents went on", ""]
        lines += [f"- {m.message}" for m in missing]
    lines += table_previews(results)
    usage = sum((r.usage for r in results), Usage())
    if spend is not None:
        lines += spend_lines(usage, spend)
    elif usage.input_tokens or usage.output_tokens:
        lines += ["", f"Tokens used: {usage.input_tokens + usage.output_tokens}"]
    return "\n".join(lines) + "\n"


PREVIEW_ROWS = 5
PREVIEW_DOCUMENTS = 10


def table_previews(results: Sequence[DocumentResult]) -> list[str]:
    """The first rows of each document's first table (table parsing), for the run's summary."""
    lines: list[str] = []
    shown = [r for r in results if r.outputs is not None and r.outputs.tables][:PREVIEW_DOCUMENTS]
    for result in shown:
        tables = result.outputs.tables
        table = tables[0]
        more = f", {len(tables) - 1} more table(s)" if len(tables) > 1 else ""
        lines += [
            "",
            f"### {Path(result.source).name}: table 1 of page {table.page} "
            f"({table.rows} rows x {table.columns} columns{more})",
            "",
        ]
        rows = [[_cell(text) for text in row] + [""] * (table.columns - len(row)) for row in table.grid]
        head, body = rows[0] if rows else [], rows[1:PREVIEW_ROWS]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        if table.rows > PREVIEW_ROWS:
            lines.append(f"| ... {table.rows - PREVIEW_ROWS} more rows |" + " |" * (len(head) - 1))
        if table.problem:
            lines += ["", f"Check failed: {table.problem}"]
    return lines


def _cell(text: str) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= 40 else text[:39] + "…"


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


# --- names of runs ----------------------------------------------------------------------------


def documents_run_name(paths: Sequence[str]) -> str:
    """Say what a run processes: ``inbox 'inbox' (12 files)``, ``upload of 5 files in 'inbox'``, ``a.png``."""
    paths = [Path(str(p)) for p in paths]
    if not paths:
        return "nothing to process"
    if len(paths) == 1 and paths[0].is_dir():
        return f"inbox '{paths[0].name}' ({_count_files(paths[0])} files)"
    if len(paths) == 1:
        return paths[0].name
    parents = {p.parent.name for p in paths}
    where = f" in '{parents.pop()}'" if len(parents) == 1 else ""
    return f"upload of {len(paths)} files{where}"


def _count_files(folder: Path) -> int:
    # Naming must never fail a run: a folder that vanished or cannot be read counts as empty.
    from ocrflow.errors import OcrflowError
    from ocrflow.ingest import discover

    try:
        return len(discover([folder]))
    except (OcrflowError, OSError):
        return 0


def documents_flow_run_name() -> str:
    """The ``process-documents`` flow run's name, from its ``paths`` parameter."""
    from prefect.runtime import flow_run

    return documents_run_name(flow_run.parameters.get("paths") or [])


def review_flow_run_name() -> str:
    """The ``finalize-review`` flow run's name: the document and the decision."""
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    return f"finalize review {str(parameters.get('document_id'))[:12]} ({parameters.get('decision')})"


# --- links to the review app ------------------------------------------------------------------


def review_links_markdown(results: Sequence[DocumentResult], review_url: str | None) -> str:
    """A markdown list linking each document that waits for review to its item in the review app."""
    waiting = [r for r in results if r.status is Status.NEEDS_REVIEW]
    if not waiting:
        return ""
    lines = ["", f"## Waiting for review ({len(waiting)})", ""]
    for result in waiting:
        name = os.path.basename(result.source)
        reasons = ", ".join(r.code for r in result.reasons) or "-"
        if review_url:
            lines.append(f"- [{name}]({review_url.rstrip('/')}/items/{result.document_id}): {reasons}")
        else:
            lines.append(f"- {name} (`ocrflow review show {result.document_id[:12]}`): {reasons}")
    return "\n".join(lines) + "\n"


def review_markdown(
    record: dict[str, Any], doctype: DocType | None, source: str, review_url: str | None
) -> str:
    """A finalized review (the final record's values masked), as the ``ocrflow-review`` artifact shows it."""
    shown = masked_values(record["fields"], doctype)
    name = os.path.basename(source)
    document_id = record["document_id"]
    link = f"{review_url.rstrip('/')}/items/{document_id}" if review_url else None
    review = record["review"]
    lines = [
        f"# Review of {f'[{name}]({link})' if link else name}",
        "",
        f"{review['decision']} by {review['reviewer'] or 'unknown'}: now **{record['status']}**",
        "",
        "| field | value |",
        "|---|---|",
        *(f"| {field} | {'' if value is None else value} |" for field, value in shown.items()),
    ]
    return "\n".join(lines) + "\n"


def publish_review(
    record: dict[str, Any], doctype: DocType | None, source: str, review_url: str | None
) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        review_markdown(record, doctype, source, review_url),
        key="ocrflow-review",
        description="A finalized review (numbers masked)",
    )


# --- a run's artifacts ------------------------------------------------------------------------


class RunMonitor:
    """The artifacts of one ``process-documents`` run: progress while it runs, outcomes and summary after."""

    def __init__(self, ctx: Context, admission: Admission, total: int) -> None:
        from prefect.artifacts import create_progress_artifact

        self.ctx = ctx
        self.admission = admission
        self.total = total
        self.done = 0
        self.cache_before = _cache_counts(ctx)
        self.progress = create_progress_artifact(0.0, key=None, description="documents finished")

    def finished(self, result: DocumentResult) -> None:
        """One more document has its outcome (called as each is stored)."""
        from prefect.artifacts import update_progress_artifact

        self.done += 1
        expected = self.total - len(self.admission.skipped) - len(self.admission.pending)
        update_progress_artifact(self.progress, 100.0 * self.done / max(expected, 1))

    def publish(self, results: Sequence[DocumentResult], pending: Sequence[PendingDocument]) -> None:
        """The outcome table and the summary (counts, reasons, spending, links to review items)."""
        from prefect.artifacts import create_markdown_artifact, create_table_artifact

        ctx = self.ctx
        create_table_artifact(
            outcome_rows(results, ctx.doctypes),
            key="ocrflow-outcomes",
            description="Outcome of each document (ID and card numbers masked)",
        )
        spend = self._spend(pending) if ctx.bills_tokens else None
        create_markdown_artifact(
            summary_markdown(
                results,
                title=f"ocrflow: {len(results)} documents",
                spend=spend,
                missing=self.admission.missing,
            )
            + review_links_markdown(results, ctx.settings.review_url),
            key="ocrflow-summary",
            description="Counts per status and reason",
        )

    def _spend(self, pending: Sequence[PendingDocument]) -> Spend:
        """The run's API spending; the cache counts are per process, so take the difference."""
        hits, saved = _cache_counts(self.ctx)
        hits_before, saved_before = self.cache_before
        return Spend(
            model=self.ctx.engine.model,
            options=self.ctx.settings.cost,
            budget=self.admission.budget.limit,
            pending=pending,
            cache_hits=hits - hits_before,
            cache_saved=Usage(
                input_tokens=saved.input_tokens - saved_before.input_tokens,
                output_tokens=saved.output_tokens - saved_before.output_tokens,
            ),
        )


def _cache_counts(ctx: Context) -> tuple[int, Usage]:
    from ocrflow.cache import CachedEngine

    engine = ctx.engine
    return (engine.hits, engine.saved) if isinstance(engine, CachedEngine) else (0, Usage())


# --- the Batch API ---------------------------------------------------------------------------


def batches_markdown(submissions: Sequence[Any], returned: Sequence[Any] = ()) -> str:
    """Each batch's state and request counts, and the documents it gave back with their reasons."""
    lines = ["", "## Batches (Batch API, billed at 50%)", ""]
    if not submissions:
        return "\n".join([*lines, "No open batch."]) + "\n"
    lines += ["| batch | documents | state | requests | done | failed |", "|---|---|---|---|---|---|"]
    for sub in submissions:
        counts = sub.counts or {}
        lines.append(
            f"| {sub.batch_id or sub.id} | {len(sub.documents)} | {sub.status or sub.state} | "
            f"{counts.get('total', '-')} | {counts.get('completed', '-')} | {counts.get('failed', '-')} |"
        )
    if returned:
        lines += ["", "Back to pending (submitted again by the next run):", ""]
        lines += [f"- {Path(doc.path).name} ({doc.document_id[:12]}): {doc.reason}" for doc in returned]
    return "\n".join(lines) + "\n"


def batch_cost_line(results: Sequence[DocumentResult], model: str, options: CostOptions) -> str:
    """What the concluded documents cost at the Batch API's price (half the real-time one)."""
    usage = sum((r.usage for r in results), Usage())
    tokens = usage.input_tokens + usage.output_tokens
    cost = usage_cost(usage, model, options, batch=True)
    priced = f"{cost:.4f} {options.currency} at the Batch price (50%)" if cost is not None else "cost unknown"
    return f"\nTokens billed for these documents ({model}): {tokens:,}; {priced}.\n"


def publish_batches(
    title: str,
    results: Sequence[DocumentResult],
    submissions: Sequence[Any],
    returned: Sequence[Any] = (),
    cost_line: str = "",
) -> None:
    """The batch flows' artifact: documents concluded, their Batch cost, each batch's state and counts."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        summary_markdown(results, title=title) + cost_line + batches_markdown(submissions, returned),
        key="ocrflow-batches",
        description="Each batch's state and counts; documents concluded and given back",
    )
