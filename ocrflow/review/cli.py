"""``ocrflow review``: every command of the human-review queue, in one Typer group.

A decision from here is the same as one from the web app: the reviewer must hold the item
(these commands claim it first when it is free), and the result and the Prefect event are
written the same way. An item is named by its number (``12``, or ``#12`` when digits could
also start a document id) or by its document id's first characters.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ocrflow.errors import OcrflowError
from ocrflow.review.queue import ReviewQueue, age_text, waited
from ocrflow.settings import Settings
from ocrflow.store import ReviewItemRow, ReviewState, now
from ocrflow.terminal import DbOption, OutOption, console, fail, settings_for

app = typer.Typer(no_args_is_help=True, help="The human-review queue.")

ReviewerOption = Annotated[
    str | None,
    typer.Option("--reviewer", "-r", help="Who decides (default: $OCRFLOW_REVIEWER or the login name)."),
]
ItemArgument = Annotated[
    str, typer.Argument(help="An item number (12 or #12) or a document id's first characters.")
]


def _on_item(out: Path, db: str | None, item: str, act, *, claim_for: str | None = None):
    """Open the queue, find ``item`` and do ``act(opened, row)``; a queue error is one line, exit 2.

    With ``claim_for``, that reviewer claims the item first unless they hold it already: a
    decision needs the lease.
    """
    try:
        opened = _open(out, db)
        row = opened.queue.find(item)
        if claim_for is not None and not opened.queue.is_held_by(row, claim_for):
            opened.queue.claim(claim_for, row.id)
        return row, act(opened, row)
    except OcrflowError as exc:
        fail(exc.message)


def _reviewer(given: str | None) -> str:
    return given or os.environ.get("OCRFLOW_REVIEWER") or getpass.getuser()


@dataclass
class Opened:
    settings: Settings
    queue: ReviewQueue


def _open(out: Path, db: str | None) -> Opened:
    from ocrflow.doctypes import load_doctypes
    from ocrflow.store import ResultStore

    settings = settings_for(out, db)
    store = ResultStore(settings.out_dir, settings.resolved_database_url())
    queue = ReviewQueue(
        store, load_doctypes(settings.schema_dir), lease_seconds=settings.review.lease_seconds
    )
    return Opened(settings, queue)


@app.command("list")
def review_list(
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    state: Annotated[
        str, typer.Option(help="pending, claimed, approved, corrected, rejected or all.")
    ] = "pending",
) -> None:
    """List review items in queue order: yours first, then priority, due time, age (no ID numbers)."""
    queue = _open(out, db).queue
    store = queue.store
    items = queue.items(states=ReviewState.ALL if state == "all" else (state,), reviewer=_reviewer(None))
    table = Table(title=f"review queue ({state})")
    for column in ("item", "document id", "type", "state"):
        table.add_column(column, no_wrap=True)
    table.add_column("file")
    table.add_column("reasons")
    table.add_column("waited", no_wrap=True)
    sources = store.sources([item.document_id for item in items])
    current = now()
    for item in items:
        table.add_row(
            f"#{item.id}",
            item.document_id[:12],
            item.doc_type or "-",
            item.state,
            Path(sources.get(item.document_id, "?")).name,
            ", ".join(r["code"] + (f" ({r['field']})" if r.get("field") else "") for r in item.reasons),
            age_text(waited(item, current)),
        )
    console.print(table)


@app.command("show")
def review_show(
    document: Annotated[
        str, typer.Argument(help="A document id's first characters, or an item number (12 or #12).")
    ],
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    unmask: Annotated[bool, typer.Option(help="Show ID and card numbers in full.")] = False,
) -> None:
    """Show one document's fields, confidence, errors and reasons."""
    from ocrflow.masking import masked_values

    opened = _open(out, db)
    store = opened.queue.store
    document_id = _document_for(opened.queue, document)
    result = store.load(document_id)
    if result is None:
        fail(f"the result of document {document_id[:12]} is missing from {out}")
    doctype = opened.queue.doctypes.get(result.doc_type or "")
    values = {name: f.value for name, f in result.fields.items()}
    shown = values if unmask else masked_values(values, doctype)
    console.print(f"[bold]{Path(result.source).name}[/bold]  {result.document_id}")
    console.print(f"type: {result.doc_type or '-'}   status: {result.status.value}   engine: {result.engine}")
    table = Table()
    for column in ("field", "value", "confidence", "errors"):
        table.add_column(column, overflow="fold")
    for name, field in result.fields.items():
        table.add_row(
            name,
            "" if shown[name] is None else str(shown[name]),
            f"{field.confidence:.2f}",
            "; ".join(e.message for e in field.errors),
        )
    console.print(table)
    for reason in result.reasons:
        where = "".join(f" {k}={v}" for k, v in (("field", reason.field), ("page", reason.page)) if v)
        console.print(f"- [{reason.stage.value}] {reason.code}: {reason.message}{where}", highlight=False)
    if result.reread is not None and result.reread.differs:
        newer = {
            name: result.reread.fields[name].value
            for name in result.reread.differs
            if name in result.reread.fields
        }
        newer_shown = newer if unmask else masked_values(newer, doctype)
        console.print(
            "a newer machine reading differs from the decision (kept; 'review reopen --take-new-reading' "
            "replaces it): " + ", ".join(f"{name}={newer_shown.get(name)}" for name in result.reread.differs)
        )
    _print_item_history(opened.queue, document_id)


def _document_for(queue: ReviewQueue, ref: str) -> str:
    """The document a reference names: through its review item, else (no item) by id prefix."""
    try:
        return queue.find(ref).document_id
    except OcrflowError as exc:
        if exc.code == "ambiguous" or ref.strip().startswith("#"):
            fail(exc.message)
        document_id = queue.store.find(ref.strip().lower())
        if document_id is None:
            fail(f"no single document matches {ref!r}; run 'ocrflow review list' to see ids")
        return document_id


@app.command("add-user")
def add_user(
    username: Annotated[str, typer.Argument(help="The reviewer's sign-in name.")],
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="A group the reviewer belongs to (repeatable).")
    ] = None,
) -> None:
    """Create a reviewer account, or set a new password (and groups) for one."""
    from ocrflow.review.auth import Accounts

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        accounts = Accounts(_open(out, db).queue.store.engine)
        created = accounts.add_user(username, password)
        if group is not None:
            accounts.set_groups(username, group)
    except OcrflowError as exc:
        fail(exc.message)
    groups = f" in group(s) {', '.join(group)}" if group else ""
    console.print(f"{'added' if created else 'updated password of'} reviewer {username}{groups}")


@app.command("remove-user")
def remove_user(
    username: Annotated[str, typer.Argument(help="The reviewer's sign-in name.")],
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
) -> None:
    """Take a reviewer's access away: sign-in refused, sessions ended; their audit history stays."""
    from ocrflow.review.auth import Accounts

    if not Accounts(_open(out, db).queue.store.engine).remove_user(username):
        fail(f"there is no reviewer {username}")
    console.print(
        f"removed reviewer {username}: signed out everywhere, their decisions stay in the audit trail"
    )


@app.command("claim")
def claim(
    item: Annotated[
        str | None, typer.Argument(help="An item to claim (default: the oldest free one).")
    ] = None,
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    reviewer: ReviewerOption = None,
    doc_type: Annotated[str | None, typer.Option("--type", "-t", help="Only items of this type.")] = None,
) -> None:
    """Claim an item for a while (the lease); nobody else can decide it meanwhile."""
    name = _reviewer(reviewer)
    try:
        queue = _open(out, db).queue
        item_id = queue.find(item).id if item else None
        held = queue.claim(name, item_id, doc_type=doc_type)
    except OcrflowError as exc:
        fail(exc.message)
    if held is None:
        console.print("nothing to claim: the queue is empty")
        return
    until = held.expires_at.strftime("%H:%M:%S UTC")
    console.print(f"item {held.item_id} ({held.document_id[:12]}) is yours until {until}")


@app.command("release")
def release(
    item: ItemArgument,
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    reviewer: ReviewerOption = None,
) -> None:
    """Give a claimed item back to the queue."""
    name = _reviewer(reviewer)
    row, _ = _on_item(out, db, item, lambda opened, row: opened.queue.release(row.id, name))
    console.print(f"item {row.id} is back in the queue")


def _decide(item: str, out: Path, db: str | None, reviewer: str | None, **decision) -> None:
    name = _reviewer(reviewer)
    row, outcome = _on_item(
        out, db, item, lambda opened, row: opened.queue.decide(row.id, name, **decision), claim_for=name
    )
    console.print(
        f"item {row.id} {outcome.decision.value} by {name}: {outcome.result.status.value}, "
        f"result in {outcome.result_path}"
    )
    if not outcome.event_sent:
        console.print("its ocrflow.review.completed event waits in the outbox until Prefect is reachable")


OverrideOption = Annotated[
    bool,
    typer.Option(
        "--override",
        help="Keep values that fail validation, on purpose (needs --note); not ground truth until confirmed.",
    ),
]
NoteOption = Annotated[str, typer.Option(help="Why: for an override, a rejection or a reopening.")]


@app.command("approve")
def approve(
    item: ItemArgument,
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    reviewer: ReviewerOption = None,
    override: OverrideOption = False,
    note: NoteOption = "",
) -> None:
    """Approve the fields as read; the document becomes accepted. Invalid values block it."""
    _decide(item, out, db, reviewer, override=override, note=note)


@app.command("correct")
def correct(
    item: ItemArgument,
    values: Annotated[
        list[str],
        typer.Option("--set", "-s", help="FIELD=VALUE, as often as needed (empty VALUE: no value)."),
    ],
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    reviewer: ReviewerOption = None,
    override: OverrideOption = False,
    note: NoteOption = "",
) -> None:
    """Correct fields; the typed values become the result and ground truth. Invalid values block it."""
    parsed = {}
    for pair in values:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            fail(f"--set takes FIELD=VALUE, not {pair!r}")
        parsed[name.strip()] = value
    try:
        queue = _open(out, db).queue
        row = queue.find(item)
    except OcrflowError as exc:
        fail(exc.message)
    doctype = queue.doctypes.get(row.doc_type or "")
    if doctype is None:
        fail(
            f"item {row.id} has no document type yet, so no fields to correct; choose one first: "
            f"ocrflow review type {row.id} TYPE (one of {', '.join(sorted(queue.doctypes))})"
        )
    known = set(row.extracted_values or {}) | set(doctype.fields)
    unknown = sorted(set(parsed) - known)
    if unknown:
        fail(f"unknown field(s) {', '.join(unknown)}; a {doctype.name} has {', '.join(sorted(known))}")
    _decide(item, out, db, reviewer, values=parsed, override=override, note=note)


@app.command("type")
def choose_type(
    item: ItemArgument,
    doc_type: Annotated[str, typer.Argument(metavar="TYPE", help="The document type it is.")],
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    reviewer: ReviewerOption = None,
) -> None:
    """Choose the type of a document the machine could not type.

    Its fields are read from the stored OCR (nothing is sent again), then reviewed as usual.
    """
    from ocrflow.masking import masked_values

    name = _reviewer(reviewer)

    def choose(opened: Opened, row: ReviewItemRow) -> dict:
        min_confidence = opened.settings.routing.min_field_confidence
        typed = opened.queue.choose_type(row.id, name, doc_type, min_confidence=min_confidence)
        return masked_values({n: f.value for n, f in typed.fields.items()}, opened.queue.doctypes[doc_type])

    row, shown = _on_item(out, db, item, choose, claim_for=name)
    console.print(f"item {row.id} is a {doc_type} now, held by {name}; fields read from the stored OCR:")
    for field, value in shown.items():
        console.print(f"  {field}: {'' if value is None else value}", highlight=False)
    console.print(f"approve or correct it: ocrflow review correct {row.id} --set FIELD=VALUE")


@app.command("reopen")
def reopen(
    item: ItemArgument,
    reason: Annotated[str, typer.Option(help="Why the decision is reopened (required; audited).")],
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    reviewer: ReviewerOption = None,
    take_new_reading: Annotated[
        bool,
        typer.Option(
            "--take-new-reading",
            help="Replace the decided values with the machine's newer reading (from --reprocess).",
        ),
    ] = False,
) -> None:
    """Reopen a decided item: it is back in review, held by you, to decide again."""
    name = _reviewer(reviewer)
    _, held = _on_item(
        out,
        db,
        item,
        lambda opened, row: opened.queue.reopen(row.id, name, reason, take_new_reading=take_new_reading),
    )
    if take_new_reading:
        console.print(
            "warning: the decided values were replaced by the machine's newer reading; "
            "the decision stays in the item's history"
        )
    console.print(f"item {held.item_id} reopened by {name}; it is yours until {held.expires_at:%H:%M:%S UTC}")


@app.command("confirm")
def confirm(
    item: ItemArgument,
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    reviewer: ReviewerOption = None,
    note: NoteOption = "",
) -> None:
    """Confirm another reviewer's overridden values: they become ground truth."""
    name = _reviewer(reviewer)
    row, fields = _on_item(out, db, item, lambda opened, row: opened.queue.confirm(row.id, name, note))
    console.print(f"item {row.id}: {name} confirmed the overridden {', '.join(fields)}")


@app.command("reject")
def reject(
    item: ItemArgument,
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    reviewer: ReviewerOption = None,
    note: NoteOption = "",
) -> None:
    """Reject the document; it becomes rejected, with the reviewer's note as a reason."""
    _decide(item, out, db, reviewer, reject=True, note=note)


@app.command("assign")
def assign(
    item: ItemArgument,
    to: Annotated[str, typer.Option("--to", help="A reviewer's name, group:NAME, or '' for nobody.")],
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    reviewer: ReviewerOption = None,
    priority: Annotated[int | None, typer.Option(help="Also set the priority (higher first).")] = None,
) -> None:
    """Assign an open item to a reviewer or a group: it comes first in their queue."""
    name = _reviewer(reviewer)
    _, row = _on_item(
        out, db, item, lambda opened, row: opened.queue.assign(row.id, name, to or None, priority=priority)
    )
    console.print(f"item {row.id} assigned to {row.assigned_to or 'nobody'} (priority {row.priority})")


@app.command("sweep")
def sweep_command(
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
) -> None:
    """Send ocrflow.review.requested for new items and ocrflow.review.overdue for late ones, once each."""
    from ocrflow.review.operations import sweep

    opened = _open(out, db)
    report = sweep(opened.queue, opened.settings.review, review_url=opened.settings.review_url)
    console.print(f"{len(report.requested)} item(s) announced, {len(report.overdue)} overdue")
    delivery = report.delivery
    console.print(
        f"{delivery.sent} event(s) sent to Prefect, {delivery.waiting} waiting"
        + (f" ({delivery.problem})" if delivery.problem else "")
    )


@app.command("health")
def health(
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
) -> None:
    """The queue's health, as markdown: waiting, throughput, handling time, audit agreement, accuracy.

    Accuracy of the machine's values is by confidence band, from reviewers' decisions, with a
    suggested threshold per field.
    """
    from ocrflow.review.operations import health_markdown, queue_health

    sys.stdout.write(health_markdown(queue_health(_open(out, db).queue)))


@app.command("export")
def export(
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    to: Annotated[Path | None, typer.Option(help="Write JSON Lines here (default: standard output).")] = None,
    mask: Annotated[bool, typer.Option(help="Mask ID and card numbers.")] = False,
) -> None:
    """Export decided items (decision, reviewer, values as read and as decided) as JSON Lines."""
    from ocrflow.masking import masked_values

    opened = _open(out, db)
    doctypes = opened.queue.doctypes
    lines = []
    for row in opened.queue.items(states=ReviewState.DECIDED):
        doctype = doctypes.get(row.doc_type or "")
        read, final = row.extracted_values or {}, row.final_values
        if mask:
            read = masked_values(read, doctype)
            final = masked_values(final, doctype) if final is not None else None
        lines.append(json.dumps(_export_record(row, read, final), ensure_ascii=False))
    text = "".join(line + "\n" for line in lines)
    if to is None:
        sys.stdout.write(text)
    else:
        to.write_text(text, encoding="utf-8")
        console.print(f"{len(lines)} decided item(s) written to {to}")


def _export_record(row: ReviewItemRow, read: dict, final: dict | None) -> dict:
    return {
        "item": row.id,
        "document_id": row.document_id,
        "doc_type": row.doc_type,
        "decision": row.state,
        "reviewer": row.decided_by,
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
        "engine": row.engine,
        "reasons": [r.get("code") for r in row.reasons],
        "extracted": read,
        "final": final,
    }


@app.command("serve")
def serve(
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Run the review web app."""
    import uvicorn

    from ocrflow.review.app import create_app, server_config

    opened = _open(out, db)
    uvicorn.Server(server_config(create_app(opened.settings, queue=opened.queue), host, port)).run()


def eval_from_reviews(results: Path, db: str | None, json_out: Path | None) -> None:
    """Print (and optionally write) each engine's field accuracy on the reviewed documents."""
    from ocrflow.review.accuracy import review_accuracy

    queue = _open(results, db).queue
    engines = review_accuracy(queue.items(states=ReviewState.DECIDED), queue.unconfirmed_overrides())
    if not engines:
        fail(f"no approved or corrected review items in {results}; decide some first")
    table = Table(title=f"field accuracy on reviewed documents ({results})")
    for column in ("engine", "docs", "all fields right", "fields", "accuracy", "by field"):
        table.add_column(column, overflow="fold")
    for name, scores in sorted(engines.items()):
        overall = scores.overall()
        table.add_row(
            name,
            str(scores.documents),
            f"{scores.documents_right}",
            str(sum(scores.total.values())),
            "-" if overall is None else f"{100 * overall:.1f}%",
            ", ".join(f"{k} {100 * v:.0f}%" for k, v in scores.field_accuracy().items()),
        )
    console.print(table)
    if json_out:
        figures = {name: scores.summary() for name, scores in sorted(engines.items())}
        json_out.write_text(json.dumps(figures, indent=2) + "\n")


def _print_item_history(queue: ReviewQueue, document_id: str) -> None:
    """The document's review item, if it has one: state, holder and every audit event."""
    try:
        item = queue.for_document(document_id)
    except OcrflowError:
        return
    holder = f" by {item.claimed_by}" if item.state == ReviewState.CLAIMED else ""
    decided = f" by {item.decided_by}" if item.decided_by else ""
    console.print(f"review item {item.id}: {item.state}{holder}{decided}", highlight=False)
    for entry in queue.events(item.id):
        console.print(f"  {entry.at:%Y-%m-%d %H:%M:%S} {entry.action} by {entry.actor}", highlight=False)
