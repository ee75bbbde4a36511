"""Documents per minute with one and with two process workers on this machine.

Starts a real Prefect server on PostgreSQL (a fresh database on 127.0.0.1:5432, the scale
configuration of docs/scaling.md), runs `ocrflow setup` and `prefect deploy --all`, then
for each worker count: starts that many `prefect worker start --pool ocrflow --limit 1`
processes, creates RUNS flow runs of the `process-documents` deployment (each processes
the bundled examples into its own output folder, so nothing is skipped as already done)
and times from the first run created to the last run finished.

    .venv/bin/python bench/workers.py [--runs 4] [--workers 1 2] [--sqlite]

Prints one JSON line per worker count; bench/RESULTS-workers.md holds the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.prefect_servers import fresh_postgres_database, prefect_server, stop  # noqa: E402

BIN = Path(sys.executable).parent
EXAMPLES = ROOT / "examples"


class Usage:
    """CPU time and peak memory of the workers and their flow-run processes, sampled each second.

    CPU seconds per document do not depend on what else the machine runs (wall time does);
    a process's last second before it exits is missed, under 1 s of a run's ~50 s.
    """

    def __init__(self) -> None:
        self.cpu: dict[int, float] = {}
        self.peak_rss = 0

    def sample(self, workers: list[subprocess.Popen]) -> None:
        import psutil  # installed with prefect-dask's distributed

        for worker in workers:
            try:
                tree = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for process in tree:
                try:
                    times, rss = process.cpu_times(), process.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                self.cpu[process.pid] = times.user + times.system
                if process.pid != worker.pid:
                    self.peak_rss = max(self.peak_rss, rss)

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())


def measure(env: dict[str, str], workers: int, runs: int, out: Path) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    documents = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".png", ".pdf"))
    processes = [
        subprocess.Popen(
            [BIN / "prefect", "worker", "start", "--pool", "ocrflow", "--limit", "1", "--name", f"bench-{i}"],
            env=env,
            stdout=(out / f"worker-{workers}-{i}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for i in range(workers)
    ]
    try:
        with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as c:
            while (
                len([w for w in c.read_workers_for_work_pool("ocrflow") if w.name.startswith("bench-")])
                < workers
            ):
                time.sleep(1)
            deployment = c.read_deployment_by_name("process-documents/process-documents")
            started = time.monotonic()
            ids = [
                c.create_flow_run_from_deployment(
                    deployment.id,
                    parameters={
                        "paths": [str(p) for p in documents],
                        "out": str(out / f"w{workers}-run{i}"),
                        "reprocess": True,
                    },
                ).id
                for i in range(runs)
            ]
            usage = Usage()
            while True:
                usage.sample(processes)
                states = [c.read_flow_run(i).state for i in ids]
                if all(s.is_final() for s in states):
                    break
                time.sleep(1)
            elapsed = time.monotonic() - started
            durations = [c.read_flow_run(i).total_run_time.total_seconds() for i in ids]
    finally:
        for process in processes:
            stop(process)
        # Workers stop in the background; let them go before the next count starts.
        time.sleep(3)
    failed = [s.type.value for s in states if not s.is_completed()]
    return {
        "workers": workers,
        "runs": runs,
        "documents": runs * len(documents),
        "failed_runs": failed,
        "seconds": round(elapsed, 1),
        "documents_per_minute": round(runs * len(documents) / elapsed * 60, 1),
        "mean_run_seconds": round(sum(durations) / len(durations), 1),
        "cpu_seconds_per_document": round(usage.cpu_seconds / (runs * len(documents)), 2),
        "peak_flow_run_rss_mb": round(usage.peak_rss / 2**20),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL for the server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ocrflow-bench-") as tmp, contextlib.ExitStack() as stack:
        home = Path(tmp)
        database = None if args.sqlite else stack.enter_context(fresh_postgres_database("ocrflow_bench"))
        server = prefect_server(
            home,
            database,
            extra_env={"PREFECT_WORKER_QUERY_SECONDS": "1", "OCRFLOW_HOME": str(ROOT)},
            log_level="WARNING",
            start_seconds=300,
        )
        env = stack.enter_context(server).env
        for command in (
            [BIN / "ocrflow", "setup"],
            [BIN / "prefect", "--no-prompt", "deploy", "--all"],
        ):
            subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True)
        print(
            json.dumps({"cores": os.cpu_count(), "load_average_1m_at_start": os.getloadavg()[0]}), flush=True
        )
        for workers in args.workers:
            print(json.dumps(measure(env, workers, args.runs, home)), flush=True)


if __name__ == "__main__":
    main()
