"""The ``ocrflow`` command line: run, review, eval, and setup, serve, watch for a Prefect server.

A user error is one clear line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ocrflow.errors import OcrflowError
from ocrflow.models import DocumentResult, OcrTask, Status
from ocrflow.prefect_setup import prefect_server_configured
from ocrflow.review.cli import app as review_app
from ocrflow.terminal import DbOption, OutOption, console, errors, fail, print_error
from ocrflow.terminal import settings_for as _settings

TASKS = ", ".join(task.value for task in OcrTask)


def _document_types() -> str:
    """The document types a run can be asked for, bundled and from OCRFLOW_SCHEMA_DIR, for --help."""
    from pydantic import ValidationError

    from ocrflow.doctypes import load_doctypes
    from ocrflow.settings import Settings

    try:
        return ", ".join(sorted(load_doctypes(Settings().schema_dir)))
    except (OcrflowError, ValidationError):
        return ", ".join(sorted(load_doctypes()))  # the settings' own error is told when a command runs


DOCUMENT_TYPES = _document_types()

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Validated structured data out of scans, photos and PDFs.\n\n"
    f"Document types: {DOCUMENT_TYPES} (or auto: detected per document).",
)
app.add_typer(review_app, name="review")
batches_app = typer.Typer(no_args_is_help=True, help="Documents submitted by the Batch API (run --batch).")
app.add_typer(batches_app, name="batches")


def _print_version(asked: bool) -> None:
    if asked:
        from ocrflow import __version__

        console.print(f"ocrflow {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Validated structured data out of scans, photos and PDFs."""


def _quiet_prefect() -> None:
    # The progress bar and summary are the CLI's report; Prefect's own lines go to the UI.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL", "WARNING")


def _watch_progress(out: Path, total: int, started: float, stop: threading.Event) -> None:
    columns = (TextColumn("processing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=errors, transient=True) as progress:
        bar = progress.add_task("documents", total=total)
        while not stop.wait(0.5):
            done = sum(1 for p in out.glob("*.json") if p.stat().st_mtime >= started)
            progress.update(bar, completed=min(done, total))


REASONS_MIN_WIDTH = 16
"""Narrower than this, the reasons column is left out (the lines under the table say them in full)."""
STATUS_COLOURS = {"accepted": "green", "needs_review": "yellow", "rejected": "red"}


def _documents_table(
    title: str, rows: list[dict[str, str]], columns: tuple[str, ...], width: int
) -> list[Table | Text]:
    """``columns`` of ``rows`` (most wanted first), then their reasons if the terminal leaves room.

    Each column stays whole on one line, so file names are never broken: on a narrow terminal
    the last columns are left out rather than cut (the index and the lines under the table say all).
    """
    widest = {column: max([len(column), *(len(row[column]) for row in rows)]) for column in columns}

    def cost(shown: tuple[str, ...]) -> int:  # each column: its text, a space either side, a rule
        return sum(widest[column] + 3 for column in shown) + 1

    while len(columns) > 2 and cost(columns) > width:
        columns = columns[:-1]
    if cost(columns) > width:  # a name longer than a table row can hold: one line each, name last
        first, status = columns[0], columns[1]
        lines = [Text(title, style="bold")]
        lines += [
            Text.assemble(
                (f"{row[status]:<{widest[status]}}", STATUS_COLOURS.get(row[status], "")),
                f"  {row[first]}",
                no_wrap=True,
                overflow="ignore",  # the terminal wraps it; it is never cut here
            )
            for row in rows
        ]
        return lines
    show_reasons = cost(columns) + REASONS_MIN_WIDTH + 3 <= width
    table = Table(title=title)
    first, *others = columns
    table.add_column(first, no_wrap=True, min_width=min(widest[first], width // 2))
    for column in others:
        table.add_column(column, no_wrap=True)
    if show_reasons:
        table.add_column("reasons", min_width=REASONS_MIN_WIDTH)
    for row in rows:
        cells = [
            f"[{STATUS_COLOURS[row[c]]}]{row[c]}[/]" if c == "status" else escape(row[c]) for c in columns
        ]
        table.add_row(*cells, *([escape(row["reasons"])] if show_reasons else []))
    return [table]


def _print_documents(*args) -> None:
    for part in _documents_table(*args):
        console.print(part, soft_wrap=True)


def _print_wrapped(line: str, indent: str = "    ") -> None:
    """One line of the summary, wrapped at spaces to the terminal (names are never cut)."""
    import textwrap

    wrapped = textwrap.fill(
        line, width=console.width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )
    console.print(wrapped, highlight=False, markup=False, soft_wrap=True)


Runner = Literal["auto", "inline", "prefect"]


@app.command()
def run(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders of documents.")],
    out: OutOption = Path("ocrflow-out"),
    doc_type: Annotated[
        str, typer.Option("--doc-type", "-t", help=f"A document type ({DOCUMENT_TYPES}), or auto.")
    ] = "auto",
    reprocess: Annotated[
        bool, typer.Option(help="Process documents that already have an outcome again.")
    ] = False,
    db: DbOption = None,
    task: Annotated[
        OcrTask | None, typer.Option("--task", help=f"Read every document with this task: {TASKS}.")
    ] = None,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch", help="Submit by the Batch API at half price; 'ocrflow batches collect' later."
        ),
    ] = False,
    runner: Annotated[
        Runner,
        typer.Option(
            help="prefect: the process-documents flow (on PREFECT_API_URL's server, else a temporary one); "
            "inline: in this process, no server; auto: inline for one document when no server is set."
        ),
    ] = "auto",
) -> None:
    """Process documents (one composition, run inline or as the Prefect flow); print a summary table.

    A path that does not exist is reported and the others are processed; the exit code is then 1.
    """
    _quiet_prefect()  # before anything imports Prefect: its logging is set up on import
    try:
        from ocrflow.doctypes import get_doctype, load_doctypes
        from ocrflow.ingest import find_inputs
        from ocrflow.results import require_writable

        settings = _settings(out, db)
        doctypes = load_doctypes(settings.schema_dir)
        if doc_type != "auto":
            get_doctype(doctypes, doc_type)
        _check_task(settings, doctypes, doc_type, task)
        inputs = find_inputs(paths, follow_links_outside=settings.ingest.follow_links_outside)
        if not inputs.files:
            fail("; ".join(m.message for m in inputs.missing) or f"no documents found in {_listed(paths)}")
        require_writable(out)  # before minutes of OCR whose results could not be stored
    except OcrflowError as exc:
        fail(exc.message)
    total = len(inputs.files)
    if runner == "auto":
        runner = "inline" if total == 1 and not prefect_server_configured() else "prefect"
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_progress, args=(out, total, time.time() - 1, stop), daemon=True)
    watcher.start()
    try:
        arguments = dict(
            paths=[str(p) for p in paths], doc_type=doc_type, reprocess=reprocess, task=task, batch=batch
        )
        if runner == "inline":
            from ocrflow.pipeline import run_inline

            results = run_inline(settings, **arguments)
        else:
            results = _run_flow(settings, **arguments)
    except OcrflowError as exc:
        fail(exc.message)
    finally:
        stop.set()
        watcher.join()
    _print_summary(results, doctypes, out, total, inputs.missing)
    if inputs.missing:
        raise typer.Exit(1)


def _listed(paths: list[Path]) -> str:
    return ", ".join(map(str, paths))


def _check_task(settings, doctypes, doc_type: str, task: OcrTask | None) -> None:
    """The engine can do the run's task (one line naming the engines that can), before anything starts."""
    if task is None and doc_type == "auto":
        return  # each document's task follows from its type; every engine reads text
    from ocrflow.engines import create_engine
    from ocrflow.ocr import check_task

    check_task(create_engine(settings), doctypes.get(doc_type), task)


def _print_summary(results: list[DocumentResult], doctypes, out: Path, total: int, missing) -> None:
    """The table, a line per reason with its message, what was not found, then the counts."""
    from ocrflow.admission import read_pending
    from ocrflow.report import outcome_rows, reason_summaries

    if results:
        rows = outcome_rows(results, doctypes)
        columns = ("document", "status", "type")
        _print_documents("ocrflow results", rows, columns, console.width)
    summaries = reason_summaries(results)
    if summaries:
        console.print("Reasons:", highlight=False)
        for summary in summaries:
            _print_wrapped(f"- {summary.line()}")
    if missing:
        console.print(f"Not found ({len(missing)}), the others were processed:", highlight=False)
        for path in missing:
            _print_wrapped(f"- {path.message}")
    counts = Counter(r.status.value for r in results)
    pending = len(read_pending(out))
    # Earlier runs' pending documents may have been taken too, so the count is never below zero.
    skipped = max(0, total - len(results) - pending)
    _print_wrapped(
        ", ".join(f"{counts.get(s.value, 0)} {s.value}" for s in Status)
        + (f", {skipped} skipped (already processed; --reprocess to redo)" if skipped else "")
        + (f", {pending} pending (token budget reached; the next run takes them first)" if pending else "")
        + (f", {len(missing)} not found" if missing else "")
        + f". Results in {out}/ (by source name: {out / 'index.csv'}; ocrflow results {out})",
        indent="",
    )


def _run_flow(settings, **arguments) -> list[DocumentResult]:
    """The ``process-documents`` flow, loaded the way a worker loads it (its entrypoint in prefect.yaml)."""
    from ocrflow.prefect_setup import start_temporary_server
    from ocrflow.project import load_flow

    process_documents = load_flow("process-documents")
    start_temporary_server()
    return process_documents(out=str(settings.out_dir), settings=settings, **arguments)


@app.command()
def estimate(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders of documents.")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model to price; default: the engine's model.")
    ] = None,
    engine: Annotated[str | None, typer.Option(help="dashscope or openai; default: OCRFLOW_ENGINE.")] = None,
    adaptive: Annotated[
        bool | None,
        typer.Option("--adaptive/--fixed", help="max_pixels mode; default: OCRFLOW_COST__MAX_PIXELS_MODE."),
    ] = None,
    batch: Annotated[
        bool, typer.Option("--batch", help="Price for the Batch API (half the real-time price).")
    ] = False,
) -> None:
    """Print the image tokens and input cost of every page, before anything is sent."""
    from ocrflow.cost import billed_model, price_of
    from ocrflow.cost import estimate as estimate_documents
    from ocrflow.engines.catalog import BATCH_PRICE_FACTOR, batch_refusal
    from ocrflow.settings import Settings

    try:
        settings = Settings()
        if adaptive is not None:
            mode = "adaptive" if adaptive else "fixed"
            settings.cost = settings.cost.model_copy(update={"max_pixels_mode": mode})
        priced = billed_model(settings, engine, model)
        if batch and (
            refusal := batch_refusal(settings.openai.region, priced, base_url=settings.openai.base_url)
        ):
            fail(refusal)
        documents = estimate_documents(paths, settings, priced)
    except OcrflowError as exc:
        fail(exc.message)
    factor = BATCH_PRICE_FACTOR if batch else 1.0
    currency = settings.cost.currency
    mode = f"{settings.cost.max_pixels_mode} max_pixels" + (", Batch API at 50%" if batch else "")
    table = Table(title=f"estimate for {priced} ({mode})")
    for column in ("document", "page", "pixels", "sent as", "max_pixels", "tokens", f"cost {currency}"):
        table.add_column(column, overflow="fold")
    for document in documents:
        for page in document.pages:
            table.add_row(
                document.path.name,
                str(page.page_number),
                f"{page.width}x{page.height}",
                f"{page.resized[1]}x{page.resized[0]}",
                f"{page.max_pixels:,}",
                f"{page.tokens:,}",
                "?" if page.cost is None else f"{page.cost * factor:.6f}",
            )
        for reason in document.reasons:
            table.add_row(document.path.name, str(reason.page or "-"), reason.message, "", "", "", "")
    console.print(table)
    pages = sum(len(d.pages) for d in documents)
    tokens = sum(d.tokens for d in documents)
    costs = [page.cost for d in documents for page in d.pages]
    priced_total = (
        f"{sum(costs) * factor:.4f} {currency}"
        if costs and None not in costs
        else f"unknown (no price for {priced}: ../shared/reference states none; set OCRFLOW_COST__PRICES, "
        "see the README's 'Prices')"
    )
    console.print(
        f"{len(documents)} documents, {pages} pages, {tokens:,} image tokens, input cost {priced_total}. "
        "The prompt and the answer are billed on top.",
        highlight=False,
    )
    price = price_of(priced, settings.cost)
    if price is not None and (price.as_of or price.source):
        console.print(f"Price of {priced}: as of {price.as_of or 'unknown date'} ({price.source or 'set'}).")


@app.command("results")
def list_results(
    out: Annotated[Path, typer.Argument(help="A results folder (run's --out).")] = Path("ocrflow-out"),
    status: Annotated[
        list[Status] | None, typer.Option("--status", "-s", help="Only documents with this status.")
    ] = None,
    csv_file: Annotated[
        Path | None,
        typer.Option("--csv", help="Write the listed accepted documents' fields to this CSV file."),
    ] = None,
    unmask: Annotated[bool, typer.Option(help="Show ID and card numbers in full in the CSV.")] = False,
    db: DbOption = None,
) -> None:
    """List a folder's documents by source name (result file, status, reasons); export fields as CSV.

    Rewrites OUT/index.csv from the database first, so it is current. The CSV holds accepted
    documents only (the others' values are not vouched for), ID and card numbers masked unless --unmask.
    """
    from ocrflow.doctypes import load_doctypes
    from ocrflow.results import fields_csv, index_entries, open_results, write_index

    try:
        settings = _settings(out, db)
        store = open_results(out, settings.resolved_database_url())
        doctypes = load_doctypes(settings.schema_dir)
    except OcrflowError as exc:
        fail(exc.message)
    index = write_index(store)
    entries = index_entries(store, status or ())
    rows = [
        {
            "source": entry.name,
            "status": entry.status.value,
            "type": entry.doc_type or "-",
            "id": entry.document_id[:12],
            "reasons": "; ".join(r.code + (f" ({r.field})" if r.field else "") for r in entry.reasons) or "-",
        }
        for entry in entries
    ]
    columns = ("source", "status", "id", "type")
    _print_documents(f"results in {out}", rows, columns, console.width)
    counts = Counter(e.status.value for e in entries)
    shown = ", ".join(f"{counts.get(s.value, 0)} {s.value}" for s in Status if not status or s in status)
    _print_wrapped(
        f"{len(entries)} document(s) ({shown}). Each result is {out}/<id>.json; "
        f"the index with full names, statuses and reasons: {index}",
        indent="",
    )
    if csv_file is not None:
        text, written = fields_csv(store, entries, doctypes, unmask=unmask)
        try:
            csv_file.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {csv_file}: {exc.strerror or exc}")
        masked = "numbers in full" if unmask else "ID and card numbers masked"
        _print_wrapped(f"{written} accepted document(s)' fields written to {csv_file} ({masked}).", indent="")


@app.command("eval")
def evaluate(
    directory: Annotated[
        Path | None, typer.Argument(help="A folder of documents with *.gt.json ground truth.")
    ] = None,
    out: OutOption = Path("ocrflow-eval"),
    limit: Annotated[int, typer.Option(help="Score at most this many documents (0: all).")] = 0,
    category: Annotated[
        list[str] | None, typer.Option(help="Only these categories (receipts, id_docs, ...).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures to this file.")
    ] = None,
    from_reviews: Annotated[
        Path | None,
        typer.Option(help="Instead: each engine's field accuracy on the reviews in this results folder."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Score the pipeline on documents with ground truth (or on review decisions); print the figures."""
    if from_reviews is not None:
        from ocrflow.review.cli import eval_from_reviews

        eval_from_reviews(from_reviews, db, json_out)
        return
    if directory is None:
        fail("give a folder of documents with ground truth, or --from-reviews RESULTS")
    from ocrflow.evaluation import Report, doc_type_for, iter_ground_truth, score_document
    from ocrflow.pipeline import Context, process_document

    if not directory.is_dir():
        fail(f"{directory} is not a folder")
    samples = [
        (p, gt) for p, gt in iter_ground_truth(directory) if not category or gt.get("category") in category
    ]
    if limit:
        samples = samples[:limit]
    if not samples:
        fail(f"no documents with *.gt.json ground truth in {directory}")
    ctx = Context(_settings(out, f"sqlite:///{(out / 'eval.sqlite3').resolve()}"))
    out.mkdir(parents=True, exist_ok=True)
    scores = []
    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
    ) as progress:
        bar = progress.add_task("eval", total=len(samples))
        for path, gt in samples:
            doc_type = doc_type_for(gt)
            try:
                result = process_document(ctx, path, doc_type)
            except OcrflowError as exc:
                fail(exc.message)
            scores.append(score_document(result, gt, doc_type))
            progress.advance(bar)
    summary = Report(scores).summary()
    by_category = {
        c: Report([s for s in scores if s.category == c]).summary()
        for c in sorted({s.category for s in scores})
    }
    table = Table(title=f"ocrflow eval: {directory}")
    for column in (
        "category",
        "docs",
        "CER",
        "fields right",
        "accepted",
        "review",
        "escaped errors",
        "MRZ valid",
    ):
        table.add_column(column)
    for name, s in [*by_category.items(), ("all", summary)]:
        table.add_row(
            name,
            str(s["documents"]),
            _pct(s["cer_mean"], 2),
            _pct(s["all_fields_right"]),
            _pct(s["accept_rate"]) + (f" ({s['accepted']})" if s["field_documents"] else ""),
            _pct(s["review_rate"]),
            _pct(s["escaped_error_rate"]) + (f" ({s['escaped_errors']})" if s["accepted"] else ""),
            _pct(s["mrz_valid"]) + (f" of {s['mrz_documents']}" if s["mrz_documents"] else ""),
        )
    console.print(table)
    if summary["field_accuracy"]:
        console.print(
            "field accuracy: " + ", ".join(f"{k} {_pct(v)}" for k, v in summary["field_accuracy"].items())
        )
    if json_out:
        json_out.write_text(json.dumps({"all": summary, "by_category": by_category}, indent=2) + "\n")


def _pct(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


@app.command()
def setup(
    work_pool: Annotated[str, typer.Option(help="Name of the process work pool to create.")] = "ocrflow",
    local_ocr_slots: Annotated[
        int | None, typer.Option(help="Local OCR pages at once across workers (default: CPU cores here).")
    ] = None,
) -> None:
    """Create the work pool, concurrency and rate limits and Secret placeholders on the Prefect server."""
    import httpx

    from ocrflow.prefect_setup import set_up
    from ocrflow.settings import Settings

    _quiet_prefect()
    try:
        steps = set_up(Settings(), work_pool=work_pool, local_ocr_slots=local_ocr_slots)
    except OcrflowError as exc:
        fail(exc.message)
    except httpx.HTTPError as exc:
        fail(f"the Prefect server cannot be reached ({exc}); set PREFECT_API_URL")
    finally:
        from ocrflow.review.events import flush_events

        # Saving a block emits an event; send it now rather than warn about it at exit.
        flush_events()
    for step in steps:
        console.print(
            f"{step.action:9} {step.kind} {step.name}" + (f" ({step.detail})" if step.detail else "")
        )
    _deliver_outbox()


def _deliver_outbox() -> None:
    """Send the events the configured store's outbox holds (decisions made while Prefect was down)."""
    from ocrflow.outbox import deliver_configured
    from ocrflow.settings import Settings

    delivery = deliver_configured(Settings())
    if delivery is not None and (delivery.sent or delivery.waiting):
        console.print(
            f"outbox: {delivery.sent} event(s) sent to Prefect, {delivery.waiting} waiting"
            + (f" ({delivery.problem})" if delivery.problem else "")
        )


@app.command()
def serve(
    deployment: Annotated[
        list[str] | None, typer.Option("--deployment", "-d", help="Serve only these deployments.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="The prefect.yaml to read (default: the project's).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Flow runs at once (default: no limit).")] = None,
) -> None:
    """Run the deployments of prefect.yaml (schedules, triggers) from this one process."""
    from ocrflow.deploy import PREFECT_YAML, serve_deployments

    _deliver_outbox()
    try:
        serve_deployments(config or PREFECT_YAML, names=deployment, limit=limit)
    except OcrflowError as exc:
        fail(exc.message)


@app.command()
def watch(
    inbox: Annotated[Path, typer.Argument(help="The folder uploads land in.")],
    state: Annotated[
        Path | None, typer.Option(help="State file of emitted hashes (default: INBOX/.ocrflow-watch.json).")
    ] = None,
    backfill: Annotated[bool, typer.Option(help="Also emit files already in INBOX at start.")] = False,
    poll: Annotated[float, typer.Option(help="Seconds between looks at INBOX.")] = 1.0,
    settle: Annotated[
        float, typer.Option(help="Seconds a file must stay unchanged to count as complete.")
    ] = 2.0,
    quiet: Annotated[float, typer.Option(help="Seconds without new files that end a burst.")] = 5.0,
    max_batch: Annotated[int, typer.Option(help="Files per batch at most.")] = 100,
    max_wait: Annotated[float, typer.Option(help="Seconds a batch may wait for its burst to end.")] = 60.0,
) -> None:
    """Emit ocrflow.document.uploaded events for complete new files in INBOX, debounced into batches."""
    from ocrflow.prefect_setup import require_prefect_api
    from ocrflow.watch import InboxWatcher, WatchOptions

    try:
        require_prefect_api("ocrflow watch")
    except OcrflowError as exc:
        fail(exc.message)
    options = WatchOptions(
        poll_seconds=poll,
        settle_seconds=settle,
        quiet_seconds=quiet,
        max_batch=max_batch,
        max_wait_seconds=max_wait,
    )
    try:
        watcher = InboxWatcher(inbox, state, options, backfill=backfill)
    except OcrflowError as exc:
        fail(exc.message)
    errors.print(f"watching {watcher.inbox} (state {watcher.state.path})", highlight=False)
    try:
        watcher.run(
            on_batch=lambda batch: errors.print(
                f"emitted {len(batch)} upload events: {', '.join(u.path.name for u in batch)}",
                highlight=False,
            ),
            on_error=lambda exc: errors.print(f"[yellow]will retry:[/yellow] {exc}", highlight=False),
        )
    except OcrflowError as exc:
        fail(exc.message)
    except KeyboardInterrupt:
        errors.print("stopped")


@batches_app.command("collect")
def batches_collect(out: OutOption = Path("ocrflow-out"), db: DbOption = None) -> None:
    """Poll the open batches; conclude the documents that came back, return failed ones to pending."""
    _quiet_prefect()
    from ocrflow.prefect_setup import start_temporary_server
    from ocrflow.project import load_flow

    try:
        collect_batches = load_flow("collect-batches")
        start_temporary_server()
        results = collect_batches(out=str(out), settings=_settings(out, db))
    except OcrflowError as exc:
        fail(exc.message)
    _print_batches(out)
    counts = Counter(r.status.value for r in results)
    console.print(", ".join(f"{counts.get(s.value, 0)} {s.value}" for s in Status) + f". Results in {out}/")


@batches_app.command("list")
def batches_list(out: OutOption = Path("ocrflow-out")) -> None:
    """Every batch of the output folder: its state, documents and counts."""
    _print_batches(out)


def _print_batches(out: Path) -> None:
    from ocrflow.batch import read_ledger

    table = Table(title=f"batches of {out}")
    for column in ("batch", "submitted", "documents", "state", "requests", "failed", "given back"):
        table.add_column(column, overflow="fold")
    for sub in read_ledger(out).submissions:
        counts = sub.counts or {}
        table.add_row(
            sub.batch_id or sub.id,
            f"{sub.created_at:%Y-%m-%d %H:%M}",
            str(len(sub.documents)),
            sub.status or sub.state,
            str(counts.get("total", "-")),
            str(counts.get("failed", "-")),
            "; ".join(f"{doc[:12]}: {why}" for doc, why in sub.returned.items()) or "-",
        )
    console.print(table)


def main() -> None:  # pragma: no cover - the console-script entry point
    try:
        app()
    except OcrflowError as exc:
        print_error(exc.message)
        sys.exit(2)
