"""Crash consistency and concurrent runs, with real ``ocrflow`` processes on SQLite and PostgreSQL.

A run or a review command is killed with SIGKILL at a step of the write path
(``OCRFLOW_CRASH_AT``, see :mod:`ocrflow.crash`) or at a random moment; afterwards every file
has its row and vice versa, no decision is half-applied (:func:`tests.reliability.check`), and
a re-run finishes exactly what was left. Two and four runs over one inbox process each
document once. ``bench/reliability.py`` runs the same over many seeds.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.reliability import (
    CRASH_POINTS,
    REVIEW_COMMANDS,
    check,
    concluded,
    inbox,
    killed,
    ocrflow,
    review_queue,
    run_args,
    start,
)

DOCUMENTS = ("bank_card_valid.png", "bank_card_bad_luhn.png", "cn_id_card_valid.png", "receipt_valid.png")


def _clean(out: Path, database_url: str):
    state = check(out, database_url)
    assert state.problems == []
    return state


@pytest.mark.parametrize("crash_at", ["staged@2", "committed@3", "signal"])
def test_a_run_killed_midway_loses_nothing_and_a_rerun_finishes_exactly_the_rest(
    tmp_path: Path, database_url: str, crash_at: str
):
    folder, out = inbox(tmp_path / "inbox", DOCUMENTS), tmp_path / "out"
    args = run_args(folder, out, database_url)
    if crash_at == "signal":
        process = start(args)
        time.sleep(random.Random(7).uniform(8, 20))  # from model loading to the last document
        process.kill()
        process.communicate()
    else:
        process = ocrflow(args, crash_at=crash_at)
        assert killed(process), process.stderr[-2000:]
    before = _clean(out, database_url)
    rerun = ocrflow(args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    done = {d for d, status in before.statuses.items() if status != "rejected"}  # rejected are tried again
    assert concluded(rerun.stdout) == len(DOCUMENTS) - len(done)
    after = _clean(out, database_url)
    assert len(after.statuses) == len(DOCUMENTS)
    assert {d: after.stored_at[d] for d in done} == {d: before.stored_at[d] for d in done}  # not redone


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_each_review_command_killed_midway_is_all_there_or_not_there(
    tmp_path: Path, database_url: str, point: str
):
    out = tmp_path / "out"
    queue = review_queue(out, database_url)
    where = ["--out", str(out), "--db", database_url]
    try:
        for action, command in REVIEW_COMMANDS:
            crashed = ocrflow([*command, *where], crash_at=point)
            assert killed(crashed), f"{action}: {crashed.stdout}{crashed.stderr[-1500:]}"
            _clean(out, database_url)
            applied = queue.events(int(command[2]))[-1].action == action
            assert applied == (point != "staged"), action  # committed: all of it; not committed: none
            if not applied:
                finished = ocrflow([*command, *where])
                assert finished.returncode == 0, f"{action}: {finished.stderr[-1500:]}"
                _clean(out, database_url)
                assert queue.events(int(command[2]))[-1].action == action
    finally:
        queue.store.engine.dispose()


@pytest.mark.parametrize("runs", [2, 4])
def test_runs_at_once_over_one_inbox_process_each_document_once(tmp_path: Path, database_url: str, runs: int):
    folder, out = inbox(tmp_path / "inbox", DOCUMENTS), tmp_path / "out"
    processes = [start(run_args(folder, out, database_url)) for _ in range(runs)]
    outputs = [process.communicate(timeout=900) for process in processes]
    assert [process.returncode for process in processes] == [0] * runs, [err[-1500:] for _, err in outputs]
    assert sum(concluded(stdout) for stdout, _ in outputs) == len(DOCUMENTS)  # each read by one run
    state = _clean(out, database_url)
    assert len(state.statuses) == len(DOCUMENTS)
    assert "rejected" not in state.statuses.values()  # nobody's outcome replaced by an internal error
