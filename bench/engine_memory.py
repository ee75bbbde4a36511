"""Resident memory of the embedded engine alone: C pages at once, the freed heap released or kept.

Reads eval-dev's first N SROIE scans with :class:`~ocrflow.engines.rapid.RapidOcrEngine`
(default options, ``parallel`` = C, ``release_memory`` as given) from C threads, and prints one
JSON line: the process's resident set before the models load, its peak (sampled every 20 ms,
and ``ru_maxrss``), after the last page, and the CPU and wall seconds of the reading. One
configuration a process; run several, interleaved, and read them side by side. glibc's
allocator settings apply through its environment (e.g. ``MALLOC_ARENA_MAX=2``,
``MALLOC_MMAP_THRESHOLD_=1048576``).

    .venv/bin/python bench/engine_memory.py --pages-at-once 2 --release [--scans 12]
    .venv/bin/python bench/engine_memory.py --pages-at-once 1 --release --option line_width=48

``--option NAME=VALUE`` sets a :class:`~ocrflow.settings.LocalEngineOptions` field (its CPU too).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def resident_mib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages-at-once", type=int, default=2)
    parser.add_argument("--release", action="store_true", help="OCRFLOW_LOCAL_ENGINE__RELEASE_MEMORY")
    parser.add_argument("--scans", type=int, default=12, help="eval-dev's first SROIE scans")
    parser.add_argument("--wildreceipt", type=int, default=0, help="eval-dev's first WildReceipt photos")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()

    from overhead import receipts

    from ocrflow.engines.rapid import RapidOcrEngine
    from ocrflow.models import OcrTask
    from ocrflow.settings import LocalEngineOptions

    scans = receipts(args.scans, args.wildreceipt)
    options = dict(item.split("=", 1) for item in args.option)
    engine = RapidOcrEngine(
        LocalEngineOptions(parallel=args.pages_at_once, release_memory=args.release, **options)
    )
    before, peak, finished = resident_mib(), [0], threading.Event()

    def sample() -> None:
        while not finished.wait(0.02):
            peak[0] = max(peak[0], resident_mib())

    threading.Thread(target=sample, daemon=True).start()
    cpu, wall = time.process_time(), time.monotonic()
    with ThreadPoolExecutor(args.pages_at_once) as pool:
        list(pool.map(lambda scan: engine.recognize(scan, OcrTask.TEXT_RECOGNITION), scans))
    finished.set()
    print(
        json.dumps(
            {
                "pages_at_once": args.pages_at_once,
                "release_memory": args.release,
                "options": options,
                "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
                "scans": len(scans),
                "rss_before_mib": before,
                "peak_sampled_mib": peak[0],
                "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                "rss_after_mib": resident_mib(),
                "cpu_s": round(time.process_time() - cpu, 1),
                "wall_s": round(time.monotonic() - wall, 1),
                "load_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
