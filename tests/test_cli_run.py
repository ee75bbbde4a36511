"""``ocrflow run`` and ``ocrflow results`` as a user meets them, at an 80-column terminal.

Each test runs the installed ``ocrflow`` in a process of its own, as a user does, with no
Prefect server or ocrflow settings from the environment.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, examples_in

BIN = Path(sys.executable).parent
LONG_NAME = "scan_2026-11-30_branch-office_card_front_page.png"
"""The bad-Luhn card under a scanner's long name: longer than the old table's folded column."""
VALID_NUMBER, BAD_NUMBER = "6222021234567894", "6222021234567897"


def _env(home: Path, columns: int = 80) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OCRFLOW_"))}
    return {**env, "HOME": str(home), "PREFECT_HOME": str(home / ".prefect"), "COLUMNS": str(columns)}


def _ocrflow(*args: str | Path, home: Path, columns: int = 80) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "ocrflow", *map(str, args)],
        env=_env(home, columns),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _one_line_error(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-3000:]
    assert "Traceback" not in run.stderr + run.stdout
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    return lines[0]


@dataclass(frozen=True)
class Batch:
    home: Path
    out: Path
    run: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Batch:
    """One run of two cards (one valid, one long-named failing Luhn) and a path that is not there."""
    home = tmp_path_factory.mktemp("batch")
    inbox = examples_in(
        home / "inbox", {"bank_card_valid.png": "bank_card_valid.png", LONG_NAME: "bank_card_bad_luhn.png"}
    )
    out = home / "out"
    paths = (inbox / "bank_card_valid.png", home / "scans" / "missing.png", inbox / LONG_NAME)
    return Batch(home, out, _ocrflow("run", *paths, "--out", out, "--runner", "inline", home=home))


def test_a_missing_path_is_reported_and_the_others_are_processed(batch: Batch):
    run = batch.run
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    said = " ".join(run.stdout.split())
    assert f"{batch.home / 'scans' / 'missing.png'} does not exist" in said
    assert "1 accepted, 1 needs_review, 0 rejected, 1 not found" in said
    assert len(list(batch.out.glob("*.json"))) == 2


def test_the_run_table_keeps_file_names_whole_at_80_columns(batch: Batch):
    lines = batch.run.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any(LONG_NAME in line for line in lines), batch.run.stdout


def test_each_reason_is_one_summary_line_with_its_message(batch: Batch):
    said = " ".join(batch.run.stdout.split())
    assert (
        "- invalid_checksum (card_number): Card number ************7897: the check digit is wrong "
        f"(expected 4): {LONG_NAME}"
    ) in said
    assert BAD_NUMBER not in batch.run.stdout


def _index(out: Path) -> dict[str, dict[str, str]]:
    with (out / "index.csv").open(encoding="utf-8", newline="") as file:
        return {Path(row["source"]).name: row for row in csv.DictReader(file)}


def test_the_index_names_each_source_with_its_result_status_and_reasons(batch: Batch):
    index = _index(batch.out)
    assert set(index) == {"bank_card_valid.png", LONG_NAME}
    for name, row in index.items():
        result = json.loads((batch.out / row["result"]).read_text())
        assert Path(result["source"]).name == name and result["document_id"] == row["document_id"]
        assert row["status"] == result["status"]
    assert (
        index["bank_card_valid.png"]["status"] == "accepted" and index["bank_card_valid.png"]["reasons"] == ""
    )
    assert index[LONG_NAME]["reasons"].startswith(
        "invalid_checksum (card_number): Card number ************7897"
    )


def test_ocrflow_results_rebuilds_the_index_from_the_database(batch: Batch):
    before = (batch.out / "index.csv").read_text()
    (batch.out / "index.csv").unlink()
    listing = _ocrflow("results", batch.out, home=batch.home)
    assert listing.returncode == 0, listing.stderr
    assert (batch.out / "index.csv").read_text() == before


def test_ocrflow_results_lists_by_status(batch: Batch):
    waiting = _ocrflow("results", batch.out, "--status", "needs_review", home=batch.home)
    assert waiting.returncode == 0, waiting.stderr
    assert LONG_NAME in waiting.stdout and "bank_card_valid.png" not in waiting.stdout
    assert "1 document(s) (1 needs_review)" in " ".join(waiting.stdout.split())


def test_the_csv_holds_accepted_documents_fields_masked_unless_asked(batch: Batch):
    masked, full = batch.home / "masked.csv", batch.home / "full.csv"
    assert _ocrflow("results", batch.out, "--csv", masked, home=batch.home).returncode == 0
    assert _ocrflow("results", batch.out, "--csv", full, "--unmask", home=batch.home).returncode == 0
    rows = list(csv.DictReader(masked.open(encoding="utf-8")))
    assert [row["source"] for row in rows] == ["bank_card_valid.png"], "only accepted documents"
    assert rows[0]["doc_type"] == "bank_card" and rows[0]["card_number"] == "************7894"
    assert VALID_NUMBER not in masked.read_text()
    assert next(csv.DictReader(full.open(encoding="utf-8")))["card_number"] == VALID_NUMBER


def test_results_of_a_folder_that_is_not_there_is_one_line(tmp_path: Path):
    line = _one_line_error(_ocrflow("results", tmp_path / "nowhere", home=tmp_path))
    assert "is not a results folder" in line
    assert not (tmp_path / "nowhere").exists(), "never created by looking"


def _read_only_mount_works(folder: Path) -> bool:
    probe = subprocess.run(
        ["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "ro", "tmpfs", folder], capture_output=True
    )
    return probe.returncode == 0


def test_a_read_only_output_folder_is_one_line_before_anything_is_read(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    if not _read_only_mount_works(out):
        pytest.skip("no user and mount namespaces here (unshare -rm) to mount a read-only folder")
    # A read-only file system refuses root too, unlike permission bits.
    command = 'mount -t tmpfs -o ro tmpfs "$1" && exec "$2" run "$3" "$4" --out "$1" --runner inline'
    run = subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            command,
            "sh",
            out,
            BIN / "ocrflow",
            EXAMPLES / "bank_card_valid.png",
            EXAMPLES / "receipt_valid.png",
        ],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    line = _one_line_error(run)
    assert line == f"error: cannot write results to {out}: Read-only file system; choose another --out"


def test_an_engine_that_cannot_do_the_task_is_one_line_naming_the_engines_that_can(tmp_path: Path):
    inbox = examples_in(tmp_path / "inbox", ("receipt_valid.png", "invoice_valid.png"))
    # Two documents and no server: the run would be the Prefect flow on a temporary server.
    run = _ocrflow("run", inbox, "--task", "document_parsing", "--out", tmp_path / "out", home=tmp_path)
    line = _one_line_error(run)
    assert "the local engine (rapidocr-ppocrv6-small) cannot do document_parsing" in line
    assert "Engines that can: the dashscope engine, or the openai engine" in line
    assert not (tmp_path / "out").exists(), "nothing was read or stored"
