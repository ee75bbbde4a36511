"""``ocrflow review`` from the command line: the same queue, decisions and results as the app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ocrflow.cli import app
from ocrflow.review.auth import Accounts
from ocrflow.settings import Settings
from ocrflow.store import ResultStore
from tests.review_support import CARD, VALID_CARD, needs_review, untyped

runner = CliRunner()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    settings = Settings(out_dir=out)
    store = ResultStore(out, settings.resolved_database_url())
    for n in range(3):
        store.save(needs_review(n))
    store.engine.dispose()
    return out


def _ok(args: list[str], **kwargs):
    result = runner.invoke(app, args, **kwargs)
    assert result.exit_code == 0, result.output
    return result


def test_claim_correct_approve_reject_and_export(out: Path, tmp_path: Path):
    store = ResultStore(out, Settings(out_dir=out).resolved_database_url())
    claimed = _ok(["review", "claim", "--out", str(out), "--reviewer", "alice"])
    assert "item 1" in claimed.output
    taken = runner.invoke(app, ["review", "approve", "1", "--out", str(out), "--reviewer", "bob"])
    assert taken.exit_code == 2 and "claimed by alice" in taken.output

    corrected = _ok(
        ["review", "correct", "1", "--set", f"card_number={VALID_CARD}", "--out", str(out), "-r", "alice"]
    )
    assert "corrected by alice: accepted" in corrected.output
    blocked = runner.invoke(app, ["review", "approve", "2", "--out", str(out), "-r", "bob"])
    assert blocked.exit_code == 2 and "invalid values block the approval (card_number: " in blocked.output
    _ok(["review", "approve", "2", "--override", "--note", "as printed", "--out", str(out), "-r", "bob"])
    rejected = _ok(["review", "reject", "3", "--note", "not a card", "--out", str(out), "-r", "carol"])
    assert "rejected by carol: rejected" in rejected.output

    first = store.load(store.review_items(None)[0].document_id)
    assert first.status.value == "accepted" and first.fields["card_number"].value == VALID_CARD

    export = tmp_path / "decisions.jsonl"
    _ok(["review", "export", "--out", str(out), "--to", str(export)])
    records = [json.loads(line) for line in export.read_text().splitlines()]
    assert [(r["item"], r["decision"], r["reviewer"]) for r in records] == [
        (1, "corrected", "alice"),
        (2, "approved", "bob"),
        (3, "rejected", "carol"),
    ]
    assert records[0]["extracted"]["card_number"] == CARD and records[0]["final"]["card_number"] == VALID_CARD
    masked = _ok(["review", "export", "--out", str(out), "--mask"]).output
    assert CARD not in masked and VALID_CARD not in masked and "***************3446" in masked

    shown = _ok(["review", "show", first.document_id[:10], "--out", str(out)]).output
    assert "review item 1: corrected by alice" in shown
    assert "claimed by alice" in shown and "corrected by alice" in shown and VALID_CARD not in shown

    listing = _ok(["review", "list", "--out", str(out), "--state", "all"]).output
    assert "corrected" in listing and "rejected" in listing and CARD not in listing
    store.engine.dispose()


def test_user_errors_are_one_line(out: Path):
    unknown = runner.invoke(app, ["review", "correct", "1", "--set", "colour=red", "--out", str(out)])
    assert unknown.exit_code == 2 and "unknown field(s) colour" in unknown.output
    malformed = runner.invoke(app, ["review", "correct", "1", "--set", "card_number", "--out", str(out)])
    assert malformed.exit_code == 2 and "FIELD=VALUE" in malformed.output
    missing = runner.invoke(app, ["review", "approve", "99", "--out", str(out)])
    assert missing.exit_code == 2 and "no review item 99" in missing.output
    assert "Traceback" not in unknown.output + malformed.output + missing.output


def test_add_user_hashes_the_password(out: Path):
    _ok(["review", "add-user", "alice", "--out", str(out), "--password-stdin"], input="correct horse\n")
    short = runner.invoke(
        app, ["review", "add-user", "bob", "--out", str(out), "--password-stdin"], input="short\n"
    )
    assert short.exit_code == 2 and "at least 8" in short.output
    store = ResultStore(out, Settings(out_dir=out).resolved_database_url())
    accounts = Accounts(store.engine)
    assert accounts.usernames() == ["alice"]
    assert accounts.authenticate("alice", "correct horse") and not accounts.authenticate("alice", "wrong")
    with store.engine.connect() as connection:
        (stored,) = connection.exec_driver_sql("SELECT password_hash FROM reviewers").one()
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    store.engine.dispose()


def test_remove_user_disables_the_account_and_keeps_its_row(out: Path):
    _ok(["review", "add-user", "alice", "--out", str(out), "--password-stdin"], input="correct horse\n")
    _ok(["review", "add-user", "bob", "--out", str(out), "--password-stdin"], input="battery staple\n")
    _ok(["review", "approve", "1", "--override", "--note", "as printed", "--out", str(out), "-r", "alice"])
    store = ResultStore(out, Settings(out_dir=out).resolved_database_url())
    accounts = Accounts(store.engine)
    token, _ = accounts.open_session("alice")

    removed = _ok(["review", "remove-user", "alice", "--out", str(out)])
    assert "removed reviewer alice" in removed.output
    assert accounts.usernames() == ["bob"]
    assert not accounts.authenticate("alice", "correct horse") and accounts.signed_in(token) is None
    with store.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT username, disabled_at FROM reviewers ORDER BY 1").all()
        sessions = connection.exec_driver_sql("SELECT count(*) FROM review_sessions").scalar()
    assert [name for name, _ in rows] == ["alice", "bob"] and rows[0][1] is not None and rows[1][1] is None
    assert sessions == 0
    shown = _ok(["review", "show", "1", "--out", str(out)]).output
    assert "approved by alice" in shown  # the audit trail still names her

    unknown = runner.invoke(app, ["review", "remove-user", "mallory", "--out", str(out)])
    assert unknown.exit_code == 2 and "there is no reviewer mallory" in unknown.output
    _ok(["review", "add-user", "alice", "--out", str(out), "--password-stdin"], input="a new password\n")
    assert accounts.authenticate("alice", "a new password")  # adding her again gives access back
    store.engine.dispose()


def test_eval_from_reviews_scores_each_engine_on_the_decisions(out: Path, tmp_path: Path):
    store = ResultStore(out, Settings(out_dir=out).resolved_database_url())
    store.save(needs_review(3).model_copy(update={"engine": "dashscope:qwen-vl-ocr"}))
    store.engine.dispose()
    _ok(["review", "correct", "1", "--set", f"card_number={VALID_CARD}", "--out", str(out), "-r", "alice"])
    _ok(["review", "approve", "2", "--override", "--note", "as printed", "--out", str(out), "-r", "alice"])
    _ok(["review", "reject", "3", "--out", str(out), "-r", "alice"])  # no ground truth: left out
    _ok(["review", "approve", "4", "--override", "--note", "as printed", "--out", str(out), "-r", "alice"])
    for item in ("2", "4"):  # an override is ground truth once a second reviewer confirms it
        _ok(["review", "confirm", item, "--out", str(out), "-r", "bob"])
    figures = tmp_path / "accuracy.json"
    shown = _ok(["eval", "--from-reviews", str(out), "--json", str(figures)]).output
    assert "field accuracy on reviewed documents" in shown and "75.0%" in shown
    data = json.loads(figures.read_text())
    local = data["rapidocr:PP-OCRv5"]
    assert local["documents"] == 2 and local["documents_all_right"] == 1
    assert local["field_accuracy"] == {"bank": 1.0, "card_number": 0.5}
    assert local["accuracy"] == 3 / 4
    assert data["dashscope:qwen-vl-ocr"]["accuracy"] == 1.0


def test_eval_from_reviews_with_nothing_decided_says_so(out: Path):
    result = runner.invoke(app, ["eval", "--from-reviews", str(out)])
    assert result.exit_code == 2 and "no approved or corrected review items" in result.output


def test_an_all_digit_document_id_prefix_names_its_document_never_another_item(out: Path):
    store = ResultStore(out, Settings(out_dir=out).resolved_database_url())
    store.save(needs_review(7, doc_id="279654" + "a" * 58))  # item 4
    store.save(needs_review(8, doc_id="0003" + "b" * 60))  # item 5: its id starts like item 3's number
    store.engine.dispose()

    shown = _ok(["review", "show", "279654", "--out", str(out)]).output
    assert "279654aaaa" in shown and "review item 4: pending" in shown
    corrected = _ok(
        [
            "review",
            "correct",
            "279654",
            "--set",
            f"card_number={VALID_CARD}",
            "--out",
            str(out),
            "-r",
            "alice",
        ]
    )
    assert "item 4 corrected by alice" in corrected.output

    kept = ["--override", "--note", "as printed", "--out", str(out), "-r", "alice"]
    ambiguous = runner.invoke(app, ["review", "approve", "0003", *kept])
    assert ambiguous.exit_code == 2 and "write #3 for the item" in ambiguous.output
    assert "item 3 approved" in _ok(["review", "approve", "#3", *kept]).output
    assert "item 5 approved" in _ok(["review", "approve", "0003b", *kept]).output
    listing = _ok(["review", "list", "--out", str(out), "--state", "all"]).output
    assert "#4" in listing and "279654aaaaaa" in listing


def test_choosing_the_type_of_an_unknown_document_reads_its_fields_from_the_stored_ocr(out: Path):
    store = ResultStore(out, Settings(out_dir=out).resolved_database_url())
    store.save(untyped(9))  # item 4
    store.engine.dispose()
    refused = runner.invoke(app, ["review", "correct", "4", "--set", "card_number=1", "--out", str(out)])
    assert refused.exit_code == 2 and "ocrflow review type 4 TYPE (one of" in refused.output
    assert "bank_card" in refused.output and refused.output.count("\n") == 1  # one whole line
    unknown = runner.invoke(app, ["review", "type", "4", "spaceship", "--out", str(out), "-r", "alice"])
    assert unknown.exit_code == 2 and "unknown document type 'spaceship'" in unknown.output

    typed = _ok(["review", "type", "4", "bank_card", "--out", str(out), "-r", "alice"]).output
    assert "item 4 is a bank_card now" in typed and VALID_CARD not in typed  # masked
    store = ResultStore(out, Settings(out_dir=out).resolved_database_url())
    result = store.load(store.review_items(None)[3].document_id)
    assert result.doc_type == "bank_card" and result.status.value == "needs_review"
    assert result.fields["card_number"].value == VALID_CARD
    assert "unknown_doc_type" not in [r.code for r in result.reasons]
    _ok(["review", "approve", "4", "--out", str(out), "-r", "alice"])
    assert store.load(result.document_id).status.value == "accepted"
    store.engine.dispose()


def test_an_override_needs_a_note_and_is_ground_truth_only_once_someone_else_confirms_it(out: Path):
    no_note = runner.invoke(app, ["review", "approve", "1", "--override", "--out", str(out), "-r", "alice"])
    assert no_note.exit_code == 2 and "write a note saying why" in no_note.output
    _ok(
        [
            "review",
            "approve",
            "1",
            "--override",
            "--note",
            "printed so on the card",
            "--out",
            str(out),
            "-r",
            "alice",
        ]
    )
    store = ResultStore(out, Settings(out_dir=out).resolved_database_url())
    result = store.load(store.review_items(None)[0].document_id)
    assert result.status.value == "accepted"
    override = result.fields["card_number"].override
    assert (override.reviewer, override.note, override.confirmed_by) == (
        "alice",
        "printed so on the card",
        None,
    )
    assert result.fields["card_number"].errors  # the value still fails its check, and says so
    figures = out.parent / "accuracy.json"
    _ok(["eval", "--from-reviews", str(out), "--json", str(figures)])
    scored = json.loads(figures.read_text())["rapidocr:PP-OCRv5"]["field_accuracy"]
    assert scored == {"bank": 1.0}  # not ground truth yet: only the bank name is scored

    own = runner.invoke(app, ["review", "confirm", "1", "--out", str(out), "-r", "alice"])
    assert own.exit_code == 2 and "another reviewer must confirm" in own.output
    assert (
        "bob confirmed the overridden card_number"
        in _ok(["review", "confirm", "1", "--out", str(out), "-r", "bob"]).output
    )
    assert store.load(result.document_id).fields["card_number"].override.confirmed_by == "bob"
    _ok(["eval", "--from-reviews", str(out), "--json", str(figures)])
    assert json.loads(figures.read_text())["rapidocr:PP-OCRv5"]["field_accuracy"]["card_number"] == 1.0
    store.engine.dispose()


def test_a_decision_is_reopened_with_a_reason_and_decided_again(out: Path):
    _ok(["review", "correct", "1", "--set", f"card_number={VALID_CARD}", "--out", str(out), "-r", "alice"])
    no_reason = runner.invoke(app, ["review", "reopen", "1", "--reason", " ", "--out", str(out), "-r", "bob"])
    assert no_reason.exit_code == 2 and "reason is required" in no_reason.output
    pending = runner.invoke(app, ["review", "reopen", "2", "--reason", "x", "--out", str(out), "-r", "bob"])
    assert pending.exit_code == 2 and "not decided" in pending.output

    reopened = _ok(["review", "reopen", "1", "--reason", "wrong card read", "--out", str(out), "-r", "bob"])
    assert "item 1 reopened by bob" in reopened.output
    store = ResultStore(out, Settings(out_dir=out).resolved_database_url())
    item = store.review_items(None)[0]
    result = store.load(item.document_id)
    assert (item.state, item.claimed_by, item.final_values) == ("claimed", "bob", None)
    assert result.status.value == "needs_review" and result.fields["card_number"].value == VALID_CARD
    assert result.reasons[-1].message == "reopened by bob: wrong card read"
    _ok(["review", "reject", "1", "--note", "not our customer", "--out", str(out), "-r", "bob"])
    assert store.load(item.document_id).status.value == "rejected"
    history = _ok(["review", "show", "1", "--out", str(out)]).output
    assert "corrected by alice" in history and "reopened by bob" in history and "rejected by bob" in history
    store.engine.dispose()
