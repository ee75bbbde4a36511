"""How long a one-image ``ocrflow run`` takes, against the bare OCR of the same image.

Each measurement is a fresh process timed from start to exit, as a user waits for it:

- ``bare``: ``python -c "from rapidocr import RapidOCR; RapidOCR(params)(image)"`` with
  ocrflow's engine parameters (import, model load, one OCR call);
- ``run``: ``ocrflow run IMAGE --out NEW`` (default runner: inline for one document when no
  Prefect server is configured);
- ``run-again``: the same, into the folder of the previous ``run`` (nothing to do: skipped);
- ``run-prefect``: ``ocrflow run IMAGE --out NEW --runner prefect`` (Prefect's temporary
  server, started per run, on a fresh PREFECT_HOME each time unless ``--warm-home``);
- ``run-server``: ``--runner prefect`` with PREFECT_API_URL set to a server started once.

Modes are interleaved round by round so load changes hit them alike; medians are reported.
The target (issue 11): ``run`` within 2 x ``bare`` + 5 s on an idle machine.

    .venv/bin/python bench/startup.py [--image examples/receipt_valid.png] [--rounds 5]
        [--modes bare run run-again run-prefect run-server] [--breakdown]

``--breakdown`` also prints where a run's time goes: ``python -X importtime`` of the CLI,
and the stage timings of one inline run. Prints JSON lines; bench/RESULTS-startup.md holds
the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIN = Path(sys.executable).parent
# RapidOCR alone, with ocrflow's default engine parameters (LocalEngineOptions); nothing of ocrflow imported.
BARE = """
import sys
from rapidocr import RapidOCR
params = {"Global.use_cls": False, "Global.max_side_len": 960, "Global.text_score": 0.5,
          "Global.log_level": "warning"}
result = RapidOCR(params=params)(sys.argv[1])
print(len(result.txts or ()))
"""


def timed(args: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    return elapsed


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OCRFLOW_"))}
    env.update(HOME=str(home), PREFECT_HOME=str(home / ".prefect"), COLUMNS="200")
    return env


@contextlib.contextmanager
def server(home: Path):
    from tests.prefect_servers import prefect_server

    with prefect_server(home / "server") as running:
        yield running.url


def measure(
    mode: str, image: Path, work: Path, state: dict, server_url: str | None, warm_home: bool
) -> float:
    n = state.setdefault("n", 0) + 1
    state["n"] = n
    home = work / ("home" if warm_home else f"home-{n}")
    home.mkdir(exist_ok=True)
    env = base_env(home)
    ocrflow = [str(BIN / "ocrflow"), "run", str(image)]
    if mode == "bare":
        return timed([sys.executable, "-c", BARE, str(image)], env, work)
    if mode == "run":
        state["last_out"] = work / f"out-{n}"
        return timed([*ocrflow, "--out", str(state["last_out"])], env, work)
    if mode == "run-again":
        out = state.get("last_out") or work / f"out-{n}"
        return timed([*ocrflow, "--out", str(out)], env, work)
    if mode == "run-prefect":
        return timed([*ocrflow, "--out", str(work / f"out-{n}"), "--runner", "prefect"], env, work)
    if mode == "run-server":
        env["PREFECT_API_URL"] = server_url
        return timed([*ocrflow, "--out", str(work / f"out-{n}"), "--runner", "prefect"], env, work)
    raise ValueError(mode)


def breakdown(image: Path, work: Path) -> dict:
    env = base_env(work)
    imports = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import ocrflow.cli, ocrflow.pipeline"],
        env=env,
        capture_output=True,
        text=True,
    ).stderr.splitlines()
    top = []
    for line in imports:
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[1].isdigit() and not parts[2].startswith(" "):
            top.append((int(parts[1]), parts[2]))
    stages = subprocess.run(
        [sys.executable, "-c", STAGES, str(image), str(work / "stages")],
        env=env,
        capture_output=True,
        text=True,
    )
    return {
        "slowest_imports_ms": [(name, ms // 1000) for ms, name in sorted(top, reverse=True)[:12]],
        "stages": json.loads(stages.stdout.strip().splitlines()[-1])
        if stages.returncode == 0
        else stages.stderr,
    }


STAGES = """
import json, sys, time
t0 = time.perf_counter()
from ocrflow.pipeline import Context, Job, collect, conclude, ingest, page_groups, read_pages
from ocrflow.settings import Settings
from pathlib import Path
t1 = time.perf_counter()
ctx = Context(Settings(out_dir=Path(sys.argv[2])))
engine = ctx.engine
t2 = time.perf_counter()
ingested = ingest(Path(sys.argv[1]), ctx.settings.work_dir, ctx.settings.ingest)
t3 = time.perf_counter()
reads = [(group, read_pages(ctx, ingested, group, Job())) for group in page_groups(ctx, ingested, Job())]
readings = collect(ingested, reads)
t4 = time.perf_counter()
result = conclude(ctx, readings, Job())
t5 = time.perf_counter()
print(json.dumps({"import": round(t1 - t0, 2), "engine": round(t2 - t1, 2), "ingest": round(t3 - t2, 2),
                  "preprocess+ocr": round(t4 - t3, 2), "extract+route+store": round(t5 - t4, 2),
                  "status": result.status.value}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "receipt_valid.png")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--modes", nargs="+", default=["bare", "run", "run-again", "run-prefect", "run-server"]
    )
    parser.add_argument(
        "--warm-home", action="store_true", help="Reuse one PREFECT_HOME (Prefect's DB made once)."
    )
    parser.add_argument("--breakdown", action="store_true")
    args = parser.parse_args()
    image = args.image.resolve()
    print(
        json.dumps({"image": str(image), "load_before": os.getloadavg(), "cpus": os.cpu_count()}), flush=True
    )
    with tempfile.TemporaryDirectory(prefix="ocrflow-startup-") as tmp:
        work = Path(tmp)
        with contextlib.ExitStack() as stack:
            url = stack.enter_context(server(work)) if "run-server" in args.modes else None
            times: dict[str, list[float]] = {mode: [] for mode in args.modes}
            state: dict = {}
            for round_ in range(args.rounds):
                for mode in args.modes:
                    seconds = measure(mode, image, work, state, url, args.warm_home)
                    times[mode].append(seconds)
                    print(
                        json.dumps({"round": round_, "mode": mode, "seconds": round(seconds, 2)}), flush=True
                    )
        medians = {mode: round(statistics.median(values), 2) for mode, values in times.items()}
        summary = {"median_seconds": medians, "load_after": os.getloadavg()}
        if "bare" in medians and "run" in medians:
            summary["target_seconds"] = round(2 * medians["bare"] + 5, 2)
            summary["run_meets_target"] = medians["run"] <= summary["target_seconds"]
        print(json.dumps(summary), flush=True)
        if args.breakdown:
            print(json.dumps(breakdown(image, work)), flush=True)


if __name__ == "__main__":
    main()
