"""``ocrflow review`` commands beyond list and show: accounts, claims, decisions, export, the app.

They are added to the CLI's ``review`` group by :func:`register`. A decision from here is
the same as one from the web app: the reviewer must hold the item (these commands claim
it first when it is free), and the result and the Prefect event are written the same way.
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
from rich.console import Console

from ocrflow.errors import OcrflowError
from ocrflow.review.queue import ReviewQueue
from ocrflow.settings import Settings
from ocrflow.store import ReviewItemRow, ReviewState

console = Console()
errors = Console(stderr=True)

OutOption = Annotated[Path, typer.Option("--out", "-o", help="Folder of results (and the default database).")]
DbOption = Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL of the database.")]
ReviewerOption = Annotated[
    str | None,
    typer.Option("--reviewer", "-r", help="Who decides (default: $OCRFLOW_REVIEWER or the login name)."),
]
ItemArgument = Annotated[str, typer.Argument(help="An item number or a document id's first characters.")]


def _fail(message: str) -> None:
    errors.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _reviewer(given: str | None) -> str:
    return given or os.environ.get("OCRFLOW_REVIEWER") or getpass.getuser()


@dataclass
class Opened:
    settings: Settings
    queue: ReviewQueue


def _open(out: Path, db: str | None) -> Opened:
    from ocrflow.doctypes import load_doctypes
    from ocrflow.store import ResultStore

    values: dict = {"out_dir": out}
    if db:
        values["database_url"] = db
    settings = Settings(**values)
    store = ResultStore(settings.out_dir, settings.resolved_database_url())
    queue = ReviewQueue(
        store, load_doctypes(settings.schema_dir), lease_seconds=settings.review.lease_seconds
    )
    return Opened(settings, queue)


def add_user(
    username: Annotated[str, typer.Argument(help="The reviewer's sign-in name.")],
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a reviewer account, or set a new password for one."""
    from ocrflow.review.auth import Accounts

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        opened = _open(out, db)
        created = Accounts(opened.queue.store.engine).add_user(username, password)
    except OcrflowError as exc:
        _fail(exc.message)
    console.print(f"{'added' if created else 'updated password of'} reviewer {username}")


def remove_user(
    username: Annotated[str, typer.Argument(help="The reviewer's sign-in name.")],
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
) -> None:
    """Take a reviewer's access away: sign-in refused, sessions ended; their audit history stays."""
    from ocrflow.review.auth import Accounts

    if not Accounts(_open(out, db).queue.store.engine).remove_user(username):
        _fail(f"there is no reviewer {username}")
    console.print(
        f"removed reviewer {username}: signed out everywhere, their decisions stay in the audit trail"
    )


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
        _fail(exc.message)
    if held is None:
        console.print("nothing to claim: the queue is empty")
        return
    until = held.expires_at.strftime("%H:%M:%S UTC")
    console.print(f"item {held.item_id} ({held.document_id[:12]}) is yours until {until}")


def release(
    item: ItemArgument,
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    reviewer: ReviewerOption = None,
) -> None:
    """Give a claimed item back to the queue."""
    try:
        queue = _open(out, db).queue
        row = queue.find(item)
        queue.release(row.id, _reviewer(reviewer))
    except OcrflowError as exc:
        _fail(exc.message)
    console.print(f"item {row.id} is back in the queue")


def _decide(item: str, out: Path, db: str | None, reviewer: str | None, **decision) -> None:
    from ocrflow.review.events import flush_events

    name = _reviewer(reviewer)
    try:
        queue = _open(out, db).queue
        row = queue.find(item)
        if not queue.is_held_by(row, name):
            queue.claim(name, row.id)
        outcome = queue.decide(row.id, name, **decision)
    except OcrflowError as exc:
        _fail(exc.message)
    if outcome.event_sent:
        flush_events()
    console.print(
        f"item {row.id} {outcome.decision.value} by {name}: {outcome.result.status.value}, "
        f"result in {outcome.result_path}"
    )


def approve(
    item: ItemArgument,
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    reviewer: ReviewerOption = None,
) -> None:
    """Approve the fields as read; the document becomes accepted."""
    _decide(item, out, db, reviewer)


def correct(
    item: ItemArgument,
    values: Annotated[
        list[str],
        typer.Option("--set", "-s", help="FIELD=VALUE, as often as needed (empty VALUE: no value)."),
    ],
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    reviewer: ReviewerOption = None,
) -> None:
    """Correct fields; the typed values become the result and ground truth."""
    parsed = {}
    for pair in values:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            _fail(f"--set takes FIELD=VALUE, not {pair!r}")
        parsed[name.strip()] = value
    try:
        row = _open(out, db).queue.find(item)
    except OcrflowError as exc:
        _fail(exc.message)
    known = set((row.extracted_values or {}).keys())
    unknown = sorted(set(parsed) - known)
    if unknown:
        _fail(f"unknown field(s) {', '.join(unknown)}; this document has {', '.join(sorted(known))}")
    _decide(item, out, db, reviewer, values=parsed)


def reject(
    item: ItemArgument,
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    reviewer: ReviewerOption = None,
    note: Annotated[str, typer.Option(help="Why, for the result's reasons.")] = "",
) -> None:
    """Reject the document; it becomes rejected, with the reviewer's note as a reason."""
    _decide(item, out, db, reviewer, reject=True, note=note)


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


def serve(
    out: OutOption = Path("ocrflow-out"),
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Run the review web app."""
    import uvicorn

    from ocrflow.review.app import create_app

    opened = _open(out, db)
    uvicorn.run(create_app(opened.settings, queue=opened.queue), host=host, port=port, log_level="info")


def register(review_app: typer.Typer) -> None:
    """Add these commands to the CLI's ``review`` group."""
    review_app.command("add-user")(add_user)
    review_app.command("remove-user")(remove_user)
    review_app.command("claim")(claim)
    review_app.command("release")(release)
    review_app.command("approve")(approve)
    review_app.command("correct")(correct)
    review_app.command("reject")(reject)
    review_app.command("export")(export)
    review_app.command("serve")(serve)


def eval_from_reviews(results: Path, db: str | None, json_out: Path | None) -> None:
    """Print (and optionally write) each engine's field accuracy on the reviewed documents."""
    from rich.table import Table

    from ocrflow.review.accuracy import review_accuracy

    queue = _open(results, db).queue
    engines = review_accuracy(queue.items(states=ReviewState.DECIDED))
    if not engines:
        _fail(f"no approved or corrected review items in {results}; decide some first")
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


def print_item_history(store, document_id: str) -> None:
    """The document's review item, if it has one: state, holder and every audit event."""
    from ocrflow.doctypes import load_doctypes

    queue = ReviewQueue(store, load_doctypes())
    try:
        item = queue.find(document_id)
    except OcrflowError:
        return
    holder = f" by {item.claimed_by}" if item.state == ReviewState.CLAIMED else ""
    decided = f" by {item.decided_by}" if item.decided_by else ""
    console.print(f"review item {item.id}: {item.state}{holder}{decided}", highlight=False)
    for entry in queue.events(item.id):
        console.print(f"  {entry.at:%Y-%m-%d %H:%M:%S} {entry.action} by {entry.actor}", highlight=False)
