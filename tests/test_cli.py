"""The command line: user errors are one line and exit code 2; run, review and eval work."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

os.environ["COLUMNS"] = "200"  # rich wraps tables at the terminal's width; keep rows on one line

from ocrflow.cli import app  # noqa: E402
from tests.conftest import EXAMPLES, eval_dev, examples_in

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "does/not/exist.png"], "does not exist"),
        (["run", str(EXAMPLES), "--doc-type", "passprot"], "unknown document type 'passprot'"),
        (["eval", "does/not/exist"], "is not a folder"),
    ],
)
def test_user_errors_are_one_clear_line(args, message, tmp_path):
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_run_then_review(tmp_path, prefect_server):
    inbox = examples_in(tmp_path / "inbox", ("bank_card_valid.png", "bank_card_bad_luhn.png"))
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(inbox), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 accepted, 1 needs_review, 0 rejected" in result.output

    with (out / "index.csv").open(encoding="utf-8") as index:  # written by the flow
        assert {Path(row["source"]).name: row["status"] for row in csv.DictReader(index)} == {
            "bank_card_valid.png": "accepted",
            "bank_card_bad_luhn.png": "needs_review",
        }

    listing = runner.invoke(app, ["review", "list", "--out", str(out)])
    assert listing.exit_code == 0
    assert "bank_card_bad_luhn.png" in listing.output and "invalid_checksum" in listing.output
    assert "bank_card_valid.png" not in listing.output

    document_id = next(
        p.stem for p in out.glob("*.json") if json.loads(p.read_text())["status"] == "needs_review"
    )
    shown = runner.invoke(app, ["review", "show", document_id[:10], "--out", str(out)])
    assert shown.exit_code == 0
    assert "************7897" in shown.output, "card numbers are masked unless asked"
    assert "6222021234567897" not in shown.output
    unmasked = runner.invoke(app, ["review", "show", document_id[:10], "--out", str(out), "--unmask"])
    assert "6222021234567897" in unmasked.output


def test_eval_scores_a_folder_with_ground_truth(tmp_path):
    folder = tmp_path / "gt"
    folder.mkdir()
    image = eval_dev("receipts/sroie_000.jpg")
    shutil.copy(image, folder)
    shutil.copy(image.with_suffix(".gt.json"), folder)
    result = runner.invoke(
        app, ["eval", str(folder), "--out", str(tmp_path / "ev"), "--json", str(tmp_path / "figures.json")]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads((tmp_path / "figures.json").read_text())["all"]
    assert figures["documents"] == 1
    assert figures["field_accuracy"]["date"] == 1.0 and figures["field_accuracy"]["total"] == 1.0
    assert 0.0 <= figures["cer_mean"] < 0.5


def test_version_is_the_installed_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"ocrflow {importlib.metadata.version('ocrflow')}"


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"]])
def test_help_lists_the_document_types(args, doctypes):
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    assert all(name in result.output for name in doctypes), result.output
