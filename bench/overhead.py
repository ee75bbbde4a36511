"""What ocrflow costs beyond the engine: ``ocrflow run`` against a Prefect server vs a bare RapidOCR loop.

Runs, as separate processes and interleaved (A B C, then C B A, ...), so a change in the
machine's load touches every mode alike:

- ``bare``: a Python loop doing only RapidOCR, configured as ``ocrflow/engines/rapid.py``
  configures it (angle classifier off, detection side, line width and batch, text score from
  :class:`~ocrflow.settings.LocalEngineOptions`) and onnxruntime's own thread default, one
  page at a time: what a user would write without ocrflow;
- ``stages``: the plain composition (``ocrflow.pipeline.process_document``, no Prefect), one
  document after another, with the CPU of each stage taken around each stage function. As the
  stages run one at a time, the process's CPU clock is the stage's CPU (onnxruntime's threads
  included). This is the stage split;
- ``inline``: ``ocrflow run DOCS --out FRESH --runner inline``: the whole run (CLI, admission,
  every stage, the store, the index) in one thread, no Prefect: ``pipeline`` less ``inline`` is
  what Prefect and reading two pages at once cost;
- ``pipeline``: ``ocrflow run DOCS --out FRESH`` with ``PREFECT_API_URL`` naming a real
  ``prefect server start`` (SQLite, or PostgreSQL with ``--postgres``) started once for the
  whole measurement. The server's own CPU during the run is reported beside it.

CPU is the child's user + system time from ``wait4`` (its threads and reaped children),
peak memory its ``ru_maxrss``. The machine's load is recorded per run: the 1-minute load
average at the start and the CPU seconds the rest of the machine used meanwhile (from
``/proc/stat``, less the child's and the server's). On a shared machine read the ratios of
neighbouring runs, not the seconds.

``--pdf-pages N`` measures one N-page PDF (receipt scans, one a page, at 200 dpi) through
``ocrflow run`` instead: peak resident memory (sampled every 0.25 s, the flow process and its
children) and when the first task of each name started after the flow run did, read from the
server while it runs. ``--max-seconds`` stops the run early (the figures so far are kept).

    .venv/bin/python bench/overhead.py [--repetitions 3] [--modes bare stages pipeline]
    .venv/bin/python bench/overhead.py --pdf-pages 200 --max-seconds 600

Prints one JSON line per run and a summary; bench/RESULTS-overhead.md holds the figures.
``--set KEY=VALUE`` passes an ``OCRFLOW_*`` setting to ``stages`` and ``pipeline`` (e.g.
``--set OCRFLOW_LOCAL_ENGINE__THREADS=1``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIN = Path(sys.executable).parent
EVAL_DEV = Path(os.environ.get("OCRFLOW_EVAL_DEV", ROOT.parent / "shared" / "eval-dev"))
if not EVAL_DEV.is_dir():
    EVAL_DEV = ROOT.parents[1] / "shared" / "eval-dev"
MODES = ("bare", "stages", "inline", "pipeline")
"""Also ``engine-CxT``: the bare loop with C pages at once and T onnxruntime threads each."""
RUNNERS = {"inline": "inline", "pipeline": "prefect"}
"""``ocrflow run --runner`` of the modes that run the CLI."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def receipts(sroie: int, wildreceipt: int) -> list[Path]:
    """The first ``sroie`` SROIE scans and ``wildreceipt`` WildReceipt photos of eval-dev, by name."""
    folder = EVAL_DEV / "receipts"
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [p for p in images if p.name.startswith("sroie_")][:sroie] + [
        p for p in images if p.name.startswith("wildreceipt_")
    ][:wildreceipt]


# --- the child processes ----------------------------------------------------------------------


def bare_loop(documents: list[Path], concurrency: int = 1, threads: int | None = None) -> dict:
    """RapidOCR alone, configured as rapid.py configures it; ``concurrency`` pages at once.

    Each of the ``concurrency`` threads has its own RapidOCR with ``threads`` onnxruntime
    intra-op threads (0: onnxruntime's default, the machine's cores; None: the checkout's
    ``LocalEngineOptions().threads``). ``bare`` is one page at a time, threads as the checkout
    configures them: the engine's own work, with nothing of ocrflow around it.
    """
    from concurrent.futures import ThreadPoolExecutor

    from rapidocr import RapidOCR

    from ocrflow.settings import LocalEngineOptions

    options = LocalEngineOptions()
    threads = options.threads if threads is None else threads
    params = {
        "Global.use_cls": options.use_angle_classifier,
        "Global.max_side_len": options.max_side_len,
        "Global.text_score": options.text_score,
        "Det.limit_side_len": options.detection_side,
        "Rec.rec_img_shape": [3, 48, options.line_width],
        "Rec.rec_batch_num": options.line_batch,
        "Global.log_level": "warning",
    }
    if threads:
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
    local = threading.local()

    def read(path: Path) -> int:
        if not hasattr(local, "ocr"):
            local.ocr = RapidOCR(params=params)
        return len(local.ocr(str(path)).txts or ())

    with ThreadPoolExecutor(concurrency) as pool:
        return {"lines": sum(pool.map(read, documents))}


def stage_split(documents: list[Path], out: Path) -> dict:
    """The plain composition with the process CPU of each stage function added up."""
    from ocrflow import pipeline
    from ocrflow.settings import Settings

    cpu: dict[str, float] = {}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            started = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                cpu[name] = cpu.get(name, 0.0) + time.process_time() - started

        return wrapper

    for name in ("open_document", "ingest_page", "preprocess", "recognize", "interpret", "store_result"):
        setattr(pipeline, name, timed(name, getattr(pipeline, name)))
    start_up = time.process_time()
    ctx = pipeline.Context(Settings(out_dir=out))
    statuses = [pipeline.process_document(ctx, path).status.value for path in documents]
    return {
        "stage_cpu": {"start-up": round(start_up, 2), **{k: round(v, 2) for k, v in cpu.items()}},
        "statuses": statuses,
    }


def engine_shape(mode: str) -> tuple[int, int | None] | None:
    """``engine-CxT``: C pages at once, T onnxruntime threads each (``bare``: 1, the checkout's)."""
    name, _ = split_mode(mode)
    if name == "bare":
        return 1, None
    match = re.fullmatch(r"engine-(\d+)x(\d+)", name)
    return (int(match[1]), int(match[2])) if match else None


def child_main(mode: str, documents: list[Path], out: Path | None, code: Path) -> None:
    sys.path.insert(0, str(code))  # the measured checkout's ocrflow, before any import of it
    shape = engine_shape(mode)
    result = bare_loop(documents, *shape) if shape else stage_split(documents, out)
    print(json.dumps(result))


# --- measuring a child ------------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (all cores)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


class RssSampler(threading.Thread):
    """Peak resident memory of a process and its children, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak, self.samples = pid, interval, 0, []
        self.finished = threading.Event()

    def run(self) -> None:
        import psutil

        started = time.monotonic()
        while not self.finished.wait(self.interval):
            try:
                root = psutil.Process(self.pid)
                rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
            except psutil.Error:
                continue
            self.peak = max(self.peak, rss)
            self.samples.append((round(time.monotonic() - started, 1), rss))


def run_child(
    command: list[str], env: dict[str, str], *, server_pid: int | None, limit: float | None
) -> dict:
    """Run ``command``; its CPU, peak RSS, wall time, and what the server and the machine did meanwhile.

    The child's CPU is the growth of this process's ``RUSAGE_CHILDREN`` (the child and what it
    waited for); nothing else of this process's is reaped meanwhile (the server keeps running).
    """
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, server = machine_busy_seconds(), tree_cpu_seconds(server_pid) if server_pid else 0.0
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = RssSampler(process.pid)
    sampler.start()
    timer = threading.Timer(limit, process.send_signal, [signal.SIGINT]) if limit else None
    if timer:
        timer.start()
    stdout, stderr = process.communicate()
    wall = time.monotonic() - started
    sampler.finished.set()
    if timer:
        timer.cancel()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    server_cpu = (tree_cpu_seconds(server_pid) - server) if server_pid else 0.0
    others = max(machine_busy_seconds() - busy - cpu - server_cpu, 0.0)
    return {
        "returncode": process.returncode,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 2),
        "peak_rss_mib": round(sampler.peak / 2**20),
        "server_cpu_s": round(server_cpu, 2),
        "load_1m_at_start": round(load, 2),
        "others_cpu_s": round(others, 1),
        "others_cores": round(others / wall, 2),
        "stdout": stdout,
        "stderr_tail": stderr[-2000:],
        "rss_samples": sampler.samples,
    }


def git_commit(code: Path) -> str:
    command = ["git", "-C", str(code), "rev-parse", "--short", "HEAD"]
    return subprocess.run(command, capture_output=True, text=True).stdout.strip()


def split_mode(mode: str) -> tuple[str, Path]:
    """``pipeline@/path/to/checkout`` -> ("pipeline", that checkout); no ``@``: this checkout."""
    name, _, code = mode.partition("@")
    return name, Path(code).resolve() if code else ROOT


def child_env(settings: list[str], prefect_api: str | None, code: Path = ROOT) -> dict[str, str]:
    """The environment without the caller's OCRFLOW_/PREFECT_ variables, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCRFLOW_", "PREFECT_"))}
    env.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        OCRFLOW_EVAL_DEV=str(EVAL_DEV),
        # The checkout's own code, whichever checkout the virtualenv was installed from.
        PYTHONPATH=str(code),
    )
    if prefect_api:
        env["PREFECT_API_URL"] = prefect_api
    env.update(item.split("=", 1) for item in settings)
    return env


def command_for(mode: str, documents: list[Path], out: Path) -> list[str]:
    name, code = split_mode(mode)
    if name in RUNNERS:
        run = [str(BIN / "ocrflow"), "run", *map(str, documents), "--out", str(out)]
        return run + ["--runner", RUNNERS[name]]
    child = [sys.executable, __file__, "--child", name, "--code", str(code), "--out", str(out)]
    return child + [str(p) for p in documents]


# --- the task timeline of a flow run (PDF mode) -------------------------------------------------


class Timeline(threading.Thread):
    """When the first task run of each name (its first word) started, after the flow run started."""

    def __init__(self, api_url: str, after: datetime) -> None:
        super().__init__(daemon=True)
        self.api_url, self.after = api_url, after
        self.first: dict[str, float] = {}
        self.completed: dict[str, int] = {}
        self.finished = threading.Event()

    def run(self) -> None:
        while not self.finished.wait(1.0):
            with contextlib.suppress(Exception):
                self.poll()
        with contextlib.suppress(Exception):
            self.poll()

    def poll(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterStartTime
        from prefect.client.schemas.sorting import FlowRunSort
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.api_url}), get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=self.after)),
                sort=FlowRunSort.START_TIME_DESC,
                limit=1,
            )
            if not runs or runs[0].start_time is None:
                return
            flow_run = runs[0]
            first: dict[str, float] = {}
            completed: dict[str, int] = {}
            offset = 0
            while True:
                batch = client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id={"any_": [flow_run.id]}), offset=offset, limit=200
                )
                for task_run in batch:
                    name = task_run.name.split(" ")[0]
                    if task_run.start_time is not None:
                        seconds = (task_run.start_time - flow_run.start_time).total_seconds()
                        first[name] = min(first.get(name, seconds), seconds)
                    if task_run.state is not None and task_run.state.is_completed():
                        completed[name] = completed.get(name, 0) + 1
                if len(batch) < 200:
                    break
                offset += 200
            self.first = {k: round(v, 1) for k, v in sorted(first.items(), key=lambda kv: kv[1])}
            self.completed = completed


def receipts_pdf(path: Path, pages: int) -> Path:
    """An N-page PDF of eval-dev's SROIE scans in turn, each page sized so 200 dpi renders it 1:1."""
    from PIL import Image

    scans = [p for p in receipts(30, 0)]
    images = [Image.open(scans[i % len(scans)]).convert("RGB") for i in range(pages)]
    images[0].save(path, "PDF", save_all=True, append_images=images[1:], resolution=200.0)
    return path


# --- main ------------------------------------------------------------------------------------


def summary(runs: list[dict]) -> dict:
    by_mode: dict[str, list[dict]] = {}
    for run in runs:
        by_mode.setdefault(run["mode"], []).append(run)
    result: dict = {"modes": {}}
    for mode, items in by_mode.items():
        result["modes"][mode] = {
            key: {"min": min(r[key] for r in items), "median": statistics.median(r[key] for r in items)}
            for key in ("cpu_s", "wall_s", "peak_rss_mib", "server_cpu_s", "others_cores")
        }

    def ratios(mode: str, reference: str) -> None:
        against = {r["repetition"]: r for r in by_mode.get(reference, [])}
        pairs = [(r, against[r["repetition"]]) for r in by_mode[mode] if r["repetition"] in against]
        for key in ("cpu", "wall"):
            values = [r[f"{key}_s"] / b[f"{key}_s"] for r, b in pairs]
            if values:
                result[f"{key}_ratio {mode} / {reference}"] = {
                    "per_repetition": [round(x, 3) for x in values],
                    "min": round(min(values), 3),
                    "median": round(statistics.median(values), 3),
                }

    for mode in by_mode:
        name, code = split_mode(mode)
        suffix = "" if code == ROOT else "@" + mode.partition("@")[2]
        if name != "bare":
            ratios(mode, "bare" + suffix)  # over the engine alone, configured as the same checkout does
        if suffix and name in by_mode:
            ratios(name, mode)  # this checkout over the other one
    splits = [r["stage_cpu"] for r in by_mode.get("stages", []) if "stage_cpu" in r]
    if splits:
        result["stage_cpu_median"] = {
            name: round(statistics.median(s.get(name, 0.0) for s in splits), 2) for name in splits[0]
        }
    return result


def measure_modes(args, documents: list[Path], work: Path, server) -> None:
    runs = []
    for repetition in range(args.first_repetition, args.first_repetition + args.repetitions):
        order = list(args.modes) if repetition % 2 == 0 else list(reversed(args.modes))
        for mode in order:
            out = work / f"{mode}-{repetition}"
            name, code = split_mode(mode)
            settings = [] if engine_shape(mode) else args.set
            env = child_env(settings, server.url if name == "pipeline" else None, code)
            run = run_child(
                command_for(mode, documents, out),
                env,
                server_pid=server.process.pid if name == "pipeline" else None,
                limit=None,
            )
            if run["returncode"] != 0:
                print(run["stderr_tail"], file=sys.stderr)
                raise SystemExit(f"{mode} failed with exit code {run['returncode']}")
            if name not in RUNNERS:
                run |= json.loads(run["stdout"].strip().splitlines()[-1])
            del run["stdout"], run["stderr_tail"], run["rss_samples"]
            run |= {
                "mode": mode,
                "commit": git_commit(code),
                "repetition": repetition,
                "documents": len(documents),
            }
            runs.append(run)
            print(json.dumps(run), flush=True)
    print(json.dumps({"summary": summary(runs)}), flush=True)


def measure_pdf(args, work: Path, server) -> None:
    pdf = receipts_pdf(work / f"receipts-{args.pdf_pages}p.pdf", args.pdf_pages)
    timeline = Timeline(server.url, datetime.now(UTC))
    timeline.start()
    mode = next((m for m in args.modes if split_mode(m)[0] == "pipeline"), "pipeline")
    run = run_child(
        command_for(mode, [pdf], work / "pdf-out"),
        child_env(args.set, server.url, split_mode(mode)[1]),
        server_pid=server.process.pid,
        limit=args.max_seconds,
    )
    timeline.finished.set()
    timeline.join()
    samples = run.pop("rss_samples")
    run.pop("stdout")
    print(
        json.dumps(
            {
                "mode": f"pdf {mode}",
                "commit": git_commit(split_mode(mode)[1]),
                "pages": args.pdf_pages,
                **{k: v for k, v in run.items() if k != "stderr_tail"},
                "first_start_s": timeline.first,
                "completed": timeline.completed,
                # One sample a minute: how memory grows (or not) along the run.
                "rss_mib_by_minute": {f"{t:.0f}": round(rss / 2**20) for t, rss in samples[::240]},
            }
        ),
        flush=True,
    )


def mode_name(value: str) -> str:
    if split_mode(value)[0] in MODES or engine_shape(value):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is none of {', '.join(MODES)} or engine-CxT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", type=mode_name, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--code", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("documents", nargs="*", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument(
        "--first-repetition", type=int, default=0, help="number runs on from here (to split a measurement)"
    )
    parser.add_argument(
        "--summarize", nargs="+", type=Path, metavar="JSONL", help="summarise earlier runs' output files"
    )
    parser.add_argument("--modes", nargs="+", type=mode_name, default=list(MODES))
    parser.add_argument("--sroie", type=int, default=12, help="SROIE scans (eval-dev receipts)")
    parser.add_argument("--wildreceipt", type=int, default=8, help="WildReceipt photos (eval-dev receipts)")
    parser.add_argument("--postgres", action="store_true", help="the Prefect server on PostgreSQL")
    parser.add_argument("--pdf-pages", type=int, help="measure one PDF of this many pages instead")
    parser.add_argument("--max-seconds", type=float, help="stop the PDF run after this long")
    parser.add_argument("--set", action="append", default=[], metavar="OCRFLOW_X=VALUE")
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.documents, args.out, args.code)
        return
    if args.summarize:
        runs = [
            json.loads(line)
            for path in args.summarize
            for line in path.read_text().splitlines()
            if line.startswith('{"returncode"')
        ]
        print(json.dumps(summary(runs), indent=1))
        return

    from tests.prefect_servers import fresh_postgres_database, prefect_server

    documents = receipts(args.sroie, args.wildreceipt)
    with tempfile.TemporaryDirectory(prefix="ocrflow-overhead-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        database = stack.enter_context(fresh_postgres_database("ocrflow_overhead")) if args.postgres else None
        server = stack.enter_context(prefect_server(work / "prefect", database, log_level="WARNING"))
        print(
            json.dumps(
                {
                    "cores": os.cpu_count(),
                    "commit": git_commit(ROOT),
                    "server": server.kind,
                    "settings": args.set,
                    "documents": [p.name for p in documents] if not args.pdf_pages else args.pdf_pages,
                    "load_1m_at_start": os.getloadavg()[0],
                }
            ),
            flush=True,
        )
        if args.pdf_pages:
            measure_pdf(args, work, server)
        else:
            measure_modes(args, documents, work, server)


if __name__ == "__main__":
    main()
