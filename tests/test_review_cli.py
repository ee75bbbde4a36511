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
from tests.review_support import CARD, needs_review

runner = CliRunner()
VALID_CARD = "6222020200112233446"


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
    _ok(["review", "approve", "2", "--out", str(out), "-r", "bob"])  # a free item is claimed on the way
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
    _ok(["review", "approve", "1", "--out", str(out), "-r", "alice"])
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
    _ok(["review", "approve", "2", "--out", str(out), "-r", "alice"])
    _ok(["review", "reject", "3", "--out", str(out), "-r", "alice"])  # no ground truth: left out
    _ok(["review", "approve", "4", "--out", str(out), "-r", "alice"])
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

    ambiguous = runner.invoke(app, ["review", "approve", "0003", "--out", str(out), "-r", "alice"])
    assert ambiguous.exit_code == 2 and "write #3 for the item" in ambiguous.output
    assert "item 3 approved" in _ok(["review", "approve", "#3", "--out", str(out), "-r", "alice"]).output
    assert "item 5 approved" in _ok(["review", "approve", "0003b", "--out", str(out), "-r", "alice"]).output
    listing = _ok(["review", "list", "--out", str(out), "--state", "all"]).output
    assert "#4" in listing and "279654aaaaaa" in listing
