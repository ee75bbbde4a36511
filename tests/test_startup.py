"""Starting a run: Prefect's temporary server only when needed, safely, and one clear line when it fails.

Each test runs ``ocrflow run`` as a user does, in processes of its own with a fresh
PREFECT_HOME (a fresh machine, as far as Prefect knows) and no Prefect server configured.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import examples_in

BIN = Path(sys.executable).parent
NAMES = ("bank_card_valid.png", "cn_id_card_valid.png")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OCRFLOW_"))}
    return {**env, "HOME": str(home), "PREFECT_HOME": str(home / ".prefect"), "COLUMNS": "200", **extra}


def _run(inbox: Path, out: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [BIN / "ocrflow", "run", str(inbox), "--out", str(out), "--runner", "prefect"],
        env=env,
        cwd=out.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_first_runs_at_once_both_finish(tmp_path: Path):
    """Both would migrate Prefect's new database at once; they take turns starting their servers."""
    inbox = examples_in(tmp_path / "inbox", NAMES)
    env = _env(tmp_path)
    runs = [_run(inbox, tmp_path / f"out-{i}", env) for i in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stdout[-2000:] + stderr[-3000:]
        assert "2 accepted, 0 needs_review, 0 rejected" in stdout
    assert (tmp_path / ".prefect" / "ocrflow-temporary-server.lock").exists()


def test_a_server_that_does_not_start_is_one_line_naming_the_setting(tmp_path: Path):
    inbox = examples_in(tmp_path / "inbox", NAMES)
    env = _env(tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")
    run = _run(inbox, tmp_path / "out", env)
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 2, stdout[-2000:] + stderr[-2000:]
    said = " ".join(stderr.split())
    assert "did not start within 1 s" in said
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in said and "PREFECT_API_URL" in said
    assert "Traceback" not in stderr
    assert not list((tmp_path / "out").glob("*.json")), "nothing was processed"
