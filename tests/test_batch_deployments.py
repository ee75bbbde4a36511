"""The Batch deployments on a real ``prefect server start``, served by ``ocrflow serve``.

``process-backlog`` (batch mode) is run; while its batch creation is in flight the serving
process is killed (SIGKILL, the whole process group: a crash between upload and batch creation).
After a restart and a re-run, exactly one batch exists for the backlog; ``collect-batches`` then
concludes every document and publishes the batches' summary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocrflow.batch import read_ledger
from tests.conftest import EXAMPLES, ROOT
from tests.fake_dashscope import FakeDashScope
from tests.prefect_servers import ServerDidNotStart, prefect_server

BIN = Path(sys.executable).parent
WAIT_SECONDS = 300


def _wait(condition, what: str, home: Path, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(home.glob("*.log")))
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.5)


def _serve(home: Path, env: dict[str, str], name: str) -> subprocess.Popen:
    with (home / f"{name}.log").open("w") as log:
        return subprocess.Popen(
            [BIN / "ocrflow", "serve", "-d", "process-backlog", "-d", "collect-batches"],
            cwd=home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_backlog_by_batch_survives_a_crash_between_upload_and_batch_creation(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Crashed

    home = tmp_path / "home"
    backlog = home / "backlog"
    backlog.mkdir(parents=True)
    for name in ("receipt_valid.png", "invoice_valid.png", "receipt_pages.pdf"):
        shutil.copy(EXAMPLES / name, backlog / name)
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(FakeDashScope())
        try:
            server = stack.enter_context(
                prefect_server(tmp_path / "prefect", extra_env={"PREFECT_RUNNER_POLL_FREQUENCY": "1"})
            )
        except ServerDidNotStart as exc:
            pytest.fail(str(exc))
        env = {
            **server.env,
            "OCRFLOW_ENGINE": "openai",
            "OCRFLOW_OPENAI__BASE_URL": fake.compat_url,
            "DASHSCOPE_API_KEY": "sk-test-batch-deploy-0123",
            "PYTHONPATH": str(ROOT),  # the flows of this checkout, whichever one the venv installed
        }
        stack.enter_context(temporary_settings({PREFECT_API_URL: server.url}))

        fake.batch.stall_create = 60
        first = _serve(home, env, "serve-1")
        stack.callback(_kill, first)
        _wait(lambda: _deployed(server.url), "serve to register the deployments", home)
        crashed = run_deployment("process-documents/process-backlog", timeout=0)
        _wait(fake.batch.create_started.is_set, "the batch creation to be sent", home)
        _kill(first)  # the worker dies between upload and batch creation
        (left,) = read_ledger(home / "ocrflow-out").submissions
        assert left.state == "uploaded" and len(left.documents) == 3
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(crashed.id, Crashed(message="killed in the test"), force=True)

        fake.batch.stall_create = None
        second = _serve(home, env, "serve-2")
        stack.callback(_kill, second)
        rerun = run_deployment("process-documents/process-backlog", timeout=WAIT_SECONDS)
        assert rerun.state.is_completed(), rerun.state
        (done,) = read_ledger(home / "ocrflow-out").submissions
        assert done.state == "submitted" and fake.batch.created == 1
        assert len([f for f in fake.batch.files.values() if f.purpose == "batch"]) == 1

        for _ in range(2):  # the fake's batch answers "in progress" once
            collected = run_deployment("collect-batches/collect-batches", timeout=WAIT_SECONDS)
            assert collected.state.is_completed(), collected.state
        results = [p for p in (home / "ocrflow-out").glob("*.json") if len(p.stem) == 64]
        assert len(results) == 3
        with get_client(sync_client=True) as client:
            artifact = client.read_latest_artifacts()
        summaries = [a for a in artifact if a.key == "ocrflow-batches"]
        assert summaries and "| completed |" in str(summaries[0].data)


def _deployed(url: str) -> bool:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        names = {d.name for d in client.read_deployments()}
    return {"process-backlog", "collect-batches"} <= names
