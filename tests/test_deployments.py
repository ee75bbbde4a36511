"""The deployments end to end on a real ``prefect server start`` (SQLite, then PostgreSQL).

Per database: one server on a free port of 127.0.0.1 with its own PREFECT_HOME, `ocrflow
setup` twice, `prefect deploy --all`, then `ocrflow serve` and `ocrflow watch` as separate
processes the way a user runs them. Files dropped into the inbox must become one
`process-upload` run that stores results and publishes artifacts; a review-completed event
must run `finalize-review`; a restarted watcher must not emit a document twice.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ocrflow.deploy import deployment_specs
from tests.conftest import EXAMPLES, ROOT
from tests.prefect_servers import (
    PostgresUnreachable,
    PrefectServer,
    ServerDidNotStart,
    fresh_postgres_database,
    prefect_server,
    stop,
)

BIN = Path(sys.executable).parent
SERVER_START_SECONDS = 240  # two shared cores: a cold server takes 10-60 s
RUN_SECONDS = 300


def _api_client(server: PrefectServer):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    @contextlib.contextmanager
    def client():
        with temporary_settings({PREFECT_API_URL: server.url}), get_client(sync_client=True) as c:
            yield c

    return client


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request, tmp_path_factory) -> Iterator[PrefectServer]:
    home = tmp_path_factory.mktemp(f"prefect-{request.param}")
    with contextlib.ExitStack() as stack:
        database = None
        if request.param == "postgres":
            pytest.importorskip("asyncpg")
            try:
                database = stack.enter_context(fresh_postgres_database("ocrflow_prefect"))
            except PostgresUnreachable as exc:
                pytest.fail(str(exc))
        try:
            server = stack.enter_context(
                prefect_server(
                    home,
                    database,
                    extra_env={"PREFECT_RUNNER_POLL_FREQUENCY": "1"},
                    start_seconds=SERVER_START_SECONDS,
                )
            )
        except ServerDidNotStart as exc:
            pytest.fail(str(exc))
        yield server


@pytest.fixture(scope="module")
def client(server):
    return _api_client(server)


def _ocrflow(server: PrefectServer, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "ocrflow", *args], env=server.env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_setup_twice_changes_nothing_and_keeps_secret_values(server, client):
    first = _ocrflow(server, "setup", "--local-ocr-slots", "2")
    assert first.returncode == 0, first.stderr
    assert "created   work pool ocrflow" in first.stdout
    assert "created   concurrency limit ocrflow-api" in first.stdout

    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server.url}):
        Secret(value="sk-real-key").save("dashscope-api-key", overwrite=True)

    second = _ocrflow(server, "setup", "--local-ocr-slots", "2")
    assert second.returncode == 0, second.stderr
    lines = [line for line in second.stdout.splitlines() if line.strip()]
    assert len(lines) == 4 and all(line.startswith("unchanged") for line in lines), second.stdout

    with client() as c:
        pool = c.read_work_pool("ocrflow")
        api = c.read_global_concurrency_limit_by_name("ocrflow-api")
        local = c.read_global_concurrency_limit_by_name("ocrflow-local-ocr")
    assert pool.type == "process"
    assert (api.limit, api.slot_decay_per_second) == (1, 1.0)  # 60 requests per minute, burst 1
    assert (local.limit, local.slot_decay_per_second) == (2, 0.0)
    with temporary_settings({PREFECT_API_URL: server.url}):
        assert Secret.load("dashscope-api-key").get() == "sk-real-key"


def _automations(client) -> dict[str, dict]:
    with client() as c:
        automations = c.read_automations()
    return {
        a.name: {
            "expect": set(a.trigger.expect),
            "match": a.trigger.match.model_dump(),
            "parameters": a.actions[0].parameters,
        }
        for a in automations
    }


def _expected_triggers() -> dict[str, dict]:
    expected = {}
    for spec in deployment_specs():
        for i, trigger in enumerate(spec.get("triggers") or [], start=1):
            expected[f"{spec['name']}__automation_{i}"] = {
                "expect": set(trigger["expect"]),
                "match": trigger["match"],
                "parameters": trigger["parameters"],
            }
    return expected


def _deployment(client, name: str):
    flows = ("finalize-review", "review-operations", "collect-batches")
    flow = name if name in flows else "process-documents"
    with client() as c:
        return c.read_deployment_by_name(f"{flow}/{name}")


def test_prefect_deploy_all_registers_every_deployment(server, client):
    deployed = subprocess.run(
        [BIN / "prefect", "--no-prompt", "deploy", "--all"],
        cwd=ROOT,
        env={**server.env, "OCRFLOW_HOME": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    for spec in deployment_specs():
        deployment = _deployment(client, spec["name"])
        assert deployment.work_pool_name == "ocrflow"
    inbox = _deployment(client, "process-inbox")
    assert [s.schedule.cron for s in inbox.schedules] == ["*/15 * * * *"]
    assert inbox.parameters["paths"] == ["inbox"]
    assert _automations(client) == _expected_triggers()


def test_several_process_workers_share_the_runs(server, client, tmp_path):
    """The scale configuration: PostgreSQL behind the server, one-run-at-a-time workers on the pool."""
    if server.kind != "postgres":
        pytest.skip("docs/scaling.md's configuration is the PostgreSQL one")
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    env = {**server.env, "OCRFLOW_HOME": str(ROOT), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    # Idempotent, so this test does not depend on the ones above (or on serve re-registering).
    assert _ocrflow(server, "setup").returncode == 0
    deployed = subprocess.run(
        [BIN / "prefect", "--no-prompt", "deploy", "--name", "process-documents"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    workers = []
    for i in range(2):
        with (tmp_path / f"worker-{i}.log").open("w") as log:
            workers.append(
                subprocess.Popen(
                    [
                        BIN / "prefect",
                        "worker",
                        "start",
                        "--pool",
                        "ocrflow",
                        "--limit",
                        "1",
                        "--name",
                        f"w{i}",
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    try:

        def both_polling():
            with client() as c:
                return {w.name for w in c.read_workers_for_work_pool("ocrflow")} >= {"w0", "w1"}

        # Runs created before both poll could all go to the first worker up.
        _wait_for(both_polling, "both workers to poll", None, tmp_path)
        with client() as c:
            deployment = c.read_deployment_by_name("process-documents/process-documents")
            ids = [
                c.create_flow_run_from_deployment(
                    deployment.id,
                    parameters={"paths": [str(EXAMPLES / name)], "out": str(tmp_path / f"out-{i}")},
                ).id
                for i, name in enumerate(("bank_card_valid.png", "receipt_valid.png"))
            ]

        def finished():
            with client() as c:
                runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
            return all(r.state.is_final() for r in runs)

        _wait_for(finished, "the runs on the workers", None, tmp_path)
    finally:
        for worker in workers:
            stop(worker)
    with client() as c:
        runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
    assert all(r.state.is_completed() for r in runs), [r.state for r in runs]
    assert len(list(tmp_path.glob("out-*/*.json"))) == 2
    # Each worker takes one run at a time, so the two runs created together went to both workers.
    logs = [(tmp_path / f"worker-{i}.log").read_text() for i in range(2)]
    assert all(any(str(i) in log for i in ids) for log in logs), logs


@pytest.fixture(scope="module")
def home(server, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("ocrflow-home")
    (home / "inbox").mkdir()
    return home


@pytest.fixture(scope="module")
def served(server, client, home) -> Iterator[subprocess.Popen]:
    """`ocrflow serve` in the ocrflow home, until its deployments and triggers are registered."""
    env = {**server.env, "OCRFLOW_REVIEW_URL": "http://review.test"}
    with (home / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [BIN / "ocrflow", "serve"], cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_for(lambda: _automations(client) == _expected_triggers(), "serve to register", process, home)
        yield process
    finally:
        stop(process)


def _start_watcher(server: PrefectServer, home: Path, log_name: str) -> subprocess.Popen:
    with (home / log_name).open("w") as log:
        process = subprocess.Popen(
            [BIN / "ocrflow", "watch", "inbox", "--poll", "0.3", "--settle", "0.6", "--quiet", "2"],
            cwd=home,
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    _wait_for(lambda: "watching" in (home / log_name).read_text(), "the watcher to start", process, home)
    return process


def _wait_for(condition, what: str, process: subprocess.Popen | None, home: Path, timeout=RUN_SECONDS):
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"process ended while waiting for {what}:\n{_logs(home)}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{_logs(home)}")
        time.sleep(1)


def _logs(home: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(home.glob("*.log")))


def _flow_runs(client, deployment_name: str):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with client() as c:
        return c.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment_name]))
        )


def _finished_run(client, deployment_name: str, served, home, count: int = 1):
    def finished():
        runs = _flow_runs(client, deployment_name)
        return len(runs) >= count and all(r.state and r.state.is_final() for r in runs)

    _wait_for(finished, f"{count} finished {deployment_name} run(s)", served, home)
    return sorted(_flow_runs(client, deployment_name), key=lambda r: r.created)


def _artifacts(client, flow_run_id) -> dict[str, object]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with client() as c:
        artifacts = c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key or a.type: a for a in artifacts}


def _uploaded_events(server: PrefectServer) -> list[dict]:
    events = []
    body = {"filter": {"event": {"name": ["ocrflow.document.uploaded"]}}, "limit": 50}
    response = httpx.post(f"{server.url}/events/filter", json=body, timeout=30)
    response.raise_for_status()
    page = response.json()
    events += page["events"]
    while page.get("next_page"):
        page = httpx.get(page["next_page"], timeout=30).json()
        events += page["events"]
    return events


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def upload_run(server, client, home, served):
    """Two files dropped into the watched inbox at once; the run they trigger, finished."""
    watcher = _start_watcher(server, home, "watch-1.log")
    try:
        for name in ("bank_card_valid.png", "bank_card_bad_luhn.png"):
            shutil.copy(EXAMPLES / name, home / "inbox" / name)
        runs = _finished_run(client, "process-upload", served, home)
    finally:
        stop(watcher)
    return runs[0]


def test_upload_burst_is_one_run_with_results_and_artifacts(client, home, upload_run):
    assert upload_run.state.is_completed(), upload_run.state
    assert upload_run.name == "upload of 2 files in 'inbox'"
    valid, bad = (_sha256(EXAMPLES / n) for n in ("bank_card_valid.png", "bank_card_bad_luhn.png"))
    results = {d: json.loads((home / "ocrflow-out" / f"{d}.json").read_text()) for d in (valid, bad)}
    assert results[valid]["status"] == "accepted"
    assert results[bad]["status"] == "needs_review"

    artifacts = _artifacts(client, upload_run.id)
    assert {"ocrflow-outcomes", "ocrflow-summary", "progress"} <= set(artifacts)
    assert artifacts["progress"].data == 100.0
    table = artifacts["ocrflow-outcomes"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert {row["status"] for row in rows} == {"accepted", "needs_review"}
    assert not any("6222021234567894" in row["fields"] for row in rows)  # card numbers masked
    summary = artifacts["ocrflow-summary"].data
    assert f"(http://review.test/items/{bad})" in summary
    assert f"/items/{valid}" not in summary


def test_upload_events_share_a_batch_and_only_the_last_carries_the_paths(server, upload_run):
    events = _uploaded_events(server)
    assert len(events) == 2
    assert len({e["resource"]["ocrflow.batch.id"] for e in events}) == 1
    final = [e for e in events if e["resource"]["ocrflow.batch.final"] == "true"]
    assert len(final) == 1
    assert sorted(Path(p).name for p in final[0]["payload"]["paths"]) == [
        "bank_card_bad_luhn.png",
        "bank_card_valid.png",
    ]


def test_review_completed_event_runs_finalize_review(server, client, home, served, upload_run):
    from prefect.events import Event
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ocrflow.watch import post_events

    document_id = _sha256(EXAMPLES / "bank_card_bad_luhn.png")
    result = (home / "ocrflow-out" / f"{document_id}.json").resolve()
    event = Event(
        event="ocrflow.review.completed",
        resource={"prefect.resource.id": f"ocrflow.document.{document_id}"},
        payload={
            "document_id": document_id,
            "status": "accepted",
            "decision": "corrected",
            "result": str(result),
            "reviewer": "alice",
        },
    )
    with temporary_settings({PREFECT_API_URL: server.url}):
        post_events([event.model_dump(mode="json")])

    (run,) = _finished_run(client, "finalize-review", served, home)
    assert run.state.is_completed(), run.state
    assert run.name == f"finalize review {document_id[:12]} (corrected)"
    final = json.loads((home / "ocrflow-out" / "final" / f"{document_id}.json").read_text())
    assert final["status"] == "accepted"
    assert final["review"]["decision"] == "corrected" and final["review"]["reviewer"] == "alice"
    review = _artifacts(client, run.id)["ocrflow-review"].data
    assert "corrected by alice" in review and f"http://review.test/items/{document_id}" in review
    assert "6222" not in review or "*" in review  # the card number is masked


def test_restarted_watcher_emits_new_files_but_never_a_document_twice(
    server, client, home, served, upload_run
):
    watcher = _start_watcher(server, home, "watch-2.log")
    try:
        # The same bytes as an uploaded file under a new name, and one file that is new.
        shutil.copy(EXAMPLES / "bank_card_valid.png", home / "inbox" / "again.png")
        shutil.copy(EXAMPLES / "receipt_valid.png", home / "inbox" / "receipt_valid.png")
        runs = _finished_run(client, "process-upload", served, home, count=2)
    finally:
        stop(watcher)
    assert runs[1].name == "receipt_valid.png"
    hashes = [e["resource"]["prefect.resource.id"] for e in _uploaded_events(server)]
    assert len(hashes) == 3 and len(set(hashes)) == 3, hashes
    assert f"ocrflow.document.{_sha256(EXAMPLES / 'receipt_valid.png')}" in hashes


def test_dask_task_runner_runs_the_flow_in_worker_processes(server, client, tmp_path):
    if server.kind != "sqlite":
        pytest.skip("the task runner does not depend on the server's database")
    out = tmp_path / "out"
    script = (
        "import sys\n"
        "from flows.dask_runner import process_documents_on_dask\n"
        "results = process_documents_on_dask(paths=sys.argv[1:-1], out=sys.argv[-1])\n"
        "print(sorted(r.status.value for r in results))\n"
    )
    names = ("bank_card_valid.png", "invoice_valid.png")
    done = subprocess.run(
        [sys.executable, "-c", script, *(str(EXAMPLES / n) for n in names), str(out)],
        cwd=ROOT,
        env={**server.env, "OCRFLOW_DASK_WORKERS": "2", "OCRFLOW_LOCAL_ENGINE__THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "['accepted', 'accepted']" in done.stdout
    assert "LocalCluster" in done.stdout + done.stderr  # the runner made a Dask cluster
    for name in names:
        assert json.loads((out / f"{_sha256(EXAMPLES / name)}.json").read_text())["status"] == "accepted"

    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with client() as c:
        document_runs = c.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[f"document {n}" for n in names]))
        )
    assert len(document_runs) >= 2 and all(r.state.is_completed() for r in document_runs)


def test_served_inbox_run_skips_what_was_already_processed(client, home, served, upload_run):
    inbox = _deployment(client, "process-inbox")
    assert [s.schedule.cron for s in inbox.schedules] == ["*/15 * * * *"]
    assert inbox.global_concurrency_limit.limit == 1
    # The uploads of the tests above are all in the inbox and all processed: a run finds nothing new.
    files = sorted(p.name for p in (home / "inbox").iterdir() if not p.name.startswith("."))
    with client() as c:
        flow_run = c.create_flow_run_from_deployment(inbox.id)
    _wait_for(lambda: _flow_runs(client, "process-inbox")[0].state.is_final(), "the inbox run", served, home)
    (run,) = _flow_runs(client, "process-inbox")
    assert run.id == flow_run.id and run.state.is_completed(), run.state
    assert run.name == f"inbox 'inbox' ({len(files)} files)"
    summary = _artifacts(client, run.id)["ocrflow-summary"].data
    assert summary.startswith("# ocrflow: 0 documents")  # every document skipped by its hash
