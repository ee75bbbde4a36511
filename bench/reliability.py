"""Crash consistency and concurrent runs over many seeds (issue 13's reliability suite, at length).

    flock /tmp/ocrflow-heavy.lock .venv/bin/python bench/reliability.py --runs 20 --decisions 12 --rounds 2

Each seed picks a database (SQLite or PostgreSQL) and how to die: at a write-path crash
point (``staged``, ``committed``, ``renamed``; the n-th time) or by SIGKILL at a random
moment. It kills ``ocrflow run`` (or a review command), checks the store as the next
process sees it (:func:`tests.reliability.check`), re-runs, and checks again: the re-run
must conclude exactly the documents the killed run had not stored, and leave the ones it
had alone. ``--rounds`` runs 2 and 4 ``ocrflow run`` processes at once over one inbox on
each database. Prints a markdown report (the figures in bench/RESULTS-reliability.md).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.prefect_servers import fresh_postgres_schema  # noqa: E402
from tests.reliability import (  # noqa: E402
    CRASH_POINTS,
    DOCUMENTS,
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


@contextlib.contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'db.sqlite3'}"
        return
    with fresh_postgres_schema("ocrflow_bench") as url:
        yield url


def run_seed(seed: int, folder: Path) -> dict:
    rng = random.Random(seed)
    kind = rng.choice(("sqlite", "postgres"))
    how = rng.choice((*CRASH_POINTS, "signal"))
    crash_at = f"{how}@{rng.randint(1, len(DOCUMENTS))}" if how != "signal" else None
    with database(kind, folder) as url:
        docs, out = inbox(folder / "inbox"), folder / "out"
        args = run_args(docs, out, url)
        started = time.monotonic()
        if crash_at:
            first = ocrflow(args, crash_at=crash_at)
        else:
            first = start(args)
            time.sleep(rng.uniform(3, 40))
            first.kill()
            first.communicate()
        died = killed(first)
        before = check(out, url)
        rerun = ocrflow(args)
        after = check(out, url)
        done = {d for d, s in before.statuses.items() if s != "rejected"}
        exact = rerun.returncode == 0 and concluded(rerun.stdout) == len(DOCUMENTS) - len(done)
        untouched = all(after.stored_at[d] == before.stored_at[d] for d in done)
    return {
        "seed": seed,
        "db": kind,
        "kill": crash_at or "signal",
        "died": died,
        "stored before re-run": len(before.statuses),
        "problems": before.problems + after.problems,
        "re-run exact": exact and untouched and len(after.statuses) == len(DOCUMENTS),
        "seconds": round(time.monotonic() - started, 1),
    }


def decision_seed(seed: int, folder: Path) -> dict:
    rng = random.Random(seed)
    kind = rng.choice(("sqlite", "postgres"))
    kills, problems, wrong = 0, [], []
    with database(kind, folder) as url:
        out = folder / "out"
        queue = review_queue(out, url)
        where = ["--out", str(out), "--db", url]
        for action, command in REVIEW_COMMANDS:
            point = rng.choice(CRASH_POINTS)
            crashed = ocrflow([*command, *where], crash_at=point)
            kills += killed(crashed)
            problems += check(out, url).problems
            applied = queue.events(int(command[2]))[-1].action == action
            if applied != (point != "staged"):
                wrong.append(f"{action}@{point}")
            if not applied:
                ocrflow([*command, *where])
                problems += check(out, url).problems
                if queue.events(int(command[2]))[-1].action != action:
                    wrong.append(f"{action} not finished by the re-run")
        queue.store.engine.dispose()
    return {"seed": seed, "db": kind, "kills": kills, "problems": problems, "wrong": wrong}


def concurrency_round(kind: str, runs: int, folder: Path) -> dict:
    with database(kind, folder) as url:
        docs, out = inbox(folder / "inbox"), folder / "out"
        started = time.monotonic()
        processes = [start(run_args(docs, out, url)) for _ in range(runs)]
        outputs = [process.communicate(timeout=1800) for process in processes]
        seconds = time.monotonic() - started
        state = check(out, url)
    return {
        "db": kind,
        "runs": runs,
        "exit codes": [p.returncode for p in processes],
        "concluded": sum(concluded(stdout) for stdout, _ in outputs if stdout),
        "statuses": Counter(state.statuses.values()),
        "problems": state.problems,
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="seeds killing 'ocrflow run'")
    parser.add_argument("--decisions", type=int, default=12, help="seeds killing each review command")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of 2 and 4 runs at once per database")
    parser.add_argument("--first-seed", type=int, default=1)
    options = parser.parse_args()
    print(f"# {len(DOCUMENTS)} documents: {', '.join(DOCUMENTS)}\n")
    print("| seed | db | killed at | died | stored before re-run | problems | re-run exact | s |")
    print("|---|---|---|---|---|---|---|---|")
    for seed in range(options.first_seed, options.first_seed + options.runs):
        with tempfile.TemporaryDirectory() as tmp:
            r = run_seed(seed, Path(tmp))
        print(
            f"| {r['seed']} | {r['db']} | {r['kill']} | {r['died']} | {r['stored before re-run']} | "
            f"{'; '.join(r['problems']) or 0} | {r['re-run exact']} | {r['seconds']} |",
            flush=True,
        )
    print("\n| seed | db | commands killed | problems | not all-or-nothing |")
    print("|---|---|---|---|---|")
    for seed in range(options.first_seed, options.first_seed + options.decisions):
        with tempfile.TemporaryDirectory() as tmp:
            r = decision_seed(seed, Path(tmp))
        print(
            f"| {r['seed']} | {r['db']} | {r['kills']} | {'; '.join(r['problems']) or 0} | "
            f"{', '.join(r['wrong']) or 0} |",
            flush=True,
        )
    print(f"\n| db | runs at once | exit codes | concluded (of {len(DOCUMENTS)}) | outcomes | problems | s |")
    print("|---|---|---|---|---|---|---|")
    for _ in range(options.rounds):
        for kind in ("sqlite", "postgres"):
            for runs in (2, 4):
                with tempfile.TemporaryDirectory() as tmp:
                    r = concurrency_round(kind, runs, Path(tmp))
                print(
                    f"| {r['db']} | {r['runs']} | {r['exit codes']} | {r['concluded']} | "
                    f"{dict(r['statuses'])} | {'; '.join(r['problems']) or 0} | {r['seconds']} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
