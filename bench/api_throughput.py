"""API throughput: documents per second the flow gets out of a rate-limited API, against the limit.

The loopback fake (``tests/fake_dashscope.py``, a fresh one per run) answers every request
after ``--latency`` seconds and refuses (HTTP 429) beyond ``--rpm`` requests in any 60 s, like a
DashScope account quota. The Prefect global concurrency limit ``ocrflow-api`` is created on a
temporary Prefect server with one slot decaying at ``rpm / 60`` per second, as ``ocrflow setup``
would. Each document is one page (a copy of ``examples/receipt_valid.png`` with its own number,
so no two share a cache entry) read by the ``dashscope`` engine through the real SDK.

Measured, each as documents per second and as a share of the limit (``rpm / 60`` requests/s):

- ``loop``: one request at a time, as the DashScope documentation's examples do
  (``MultiModalConversation.call`` in a ``for`` loop, no ocrflow);
- ``flow``: ``process_documents`` with its default ``ThreadPoolTaskRunner`` (as many threads
  as CPU cores, at least 2) and with ``--workers`` threads, pages of many documents in flight
  at once, each request taking a slot of ``ocrflow-api`` first (ocrflow's pacing,
  ``ocrflow/engines/_ratelimit.py``), and once more with slots taken by Prefect's own
  ``rate_limit()`` helper for comparison.

"requests/s while sending" counts the requests between the first and the last the fake saw:
the API's share of the limit, without the flow's start and finish.

Preprocessing and the independent reading (the embedded engine reading each page again to vouch
for the API's values) are off for the flow runs by default (``--preprocess``, ``--verify`` turn
them on), so the figure is about the API, not about local OCR on a shared CPU. Wall time is the
whole flow call: ingest, extraction, storing and Prefect's own bookkeeping included; "CPU/doc"
is this process's CPU (the flow and its threads; not the Prefect server's) per document.
``--runs`` picks some of ``loop default wide prefect-helper``.

The Prefect server runs on PostgreSQL (127.0.0.1:5432, a database made for the run and dropped
after; ``OCRFLOW_TEST_POSTGRES_URL`` names the server) as a production server would. On
``--prefect-db sqlite`` (``prefect_test_harness``) the server answers slot requests with
"database is locked" 503s while task runs are written, and the client's retries, not the limit,
set the pace.

Usage::

    .venv/bin/python bench/api_throughput.py [--documents 40] [--latency 1] [--rpm 120] [--workers 8]
        [--runs loop default wide prefect-helper] [--preprocess] [--verify]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocrflow.engines import encode_image  # noqa: E402
from ocrflow.settings import (  # noqa: E402
    ApiLimits,
    DashScopeOptions,
    PreprocessOptions,
    Settings,
    VerifyOptions,
)
from tests.fake_dashscope import FakeDashScope  # noqa: E402
from tests.prefect_servers import fresh_postgres_database, prefect_server  # noqa: E402

KEY = "sk-bench-not-a-real-key"


def make_documents(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    base = Image.open(ROOT / "examples" / "receipt_valid.png").convert("RGB")
    paths = []
    for number in range(count):
        page = base.copy()
        ImageDraw.Draw(page).text((10, 10), f"#{number:05d}", fill="black")
        path = folder / f"receipt_{number:05d}.png"
        page.save(path)
        paths.append(path)
    return paths


@contextlib.contextmanager
def flow_server(database: str, work: Path) -> Iterator[None]:
    """A Prefect server for the flow runs, on a fresh PostgreSQL database or the SQLite test harness."""
    if database == "sqlite":
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            yield
        return
    with (
        fresh_postgres_database("ocrflow_api_bench") as url,
        prefect_server(
            work / "prefect-home", url, log_level=os.environ["PREFECT_LOGGING_LEVEL"], start_seconds=180
        ) as server,
    ):
        os.environ["PREFECT_API_URL"] = server.url
        yield


def docs_loop(paths: list[Path], native_url: str) -> float:
    """One request at a time, as the DashScope documentation's examples do; seconds taken."""
    from dashscope import MultiModalConversation

    started = time.perf_counter()
    for path in paths:
        image = encode_image(path)
        response = MultiModalConversation.call(
            model="qwen-vl-ocr",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"image": image.data_url, "min_pixels": 32 * 32 * 3, "max_pixels": 32 * 32 * 8192}
                    ],
                }
            ],
            api_key=KEY,
            ocr_options={"task": "advanced_recognition"},
            base_address=native_url,
        )
        if response.status_code != 200:
            raise SystemExit(f"the loop got HTTP {response.status_code} {response.code}")
    return time.perf_counter() - started


async def create_limit(limits: ApiLimits) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    async with get_client() as client:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(
                name=limits.name, limit=limits.burst, slot_decay_per_second=limits.slot_decay_per_second
            )
        )


def flow_run(
    paths: list[Path], out: Path, settings: Settings, workers: int | None
) -> tuple[float, float, int]:
    """Seconds and process CPU seconds the flow took over ``paths``, and documents with an OCR failure."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.process_documents import process_documents

    flow = process_documents
    if workers:
        flow = process_documents.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))
    started, cpu = time.perf_counter(), time.process_time()
    results = flow(paths=[str(p) for p in paths], out=str(out), settings=settings)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    failed = sum(1 for r in results if any(reason.stage.value == "ocr" for reason in r.reasons))
    return seconds, cpu, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=40)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--rpm", type=int, default=120)
    parser.add_argument("--workers", type=int, default=8, help="threads for the wider flow runs")
    parser.add_argument("--preprocess", action="store_true", help="keep the preprocessing stage on")
    parser.add_argument("--verify", action="store_true", help="keep the independent reading on")
    parser.add_argument("--prefect-db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--runs", nargs="+", default=["loop", "default", "wide", "prefect-helper"])
    args = parser.parse_args()

    os.environ["DASHSCOPE_API_KEY"] = KEY
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    load = os.getloadavg()[0]
    limits = ApiLimits(requests_per_minute=args.rpm)
    limit_rate = limits.slot_decay_per_second
    preprocess = (
        PreprocessOptions()
        if args.preprocess
        else PreprocessOptions(denoise=False, clahe=False, deskew=False, orientation=False)
    )
    rows: list[tuple[str, float, float | None, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="ocrflow-bench-") as folder:
        work = Path(folder)
        # Each run gets its own fake, so no run inherits another's requests in the 60 s window.
        if "loop" in args.runs:
            with FakeDashScope(latency=args.latency, rpm=args.rpm) as fake:
                seconds = docs_loop(make_documents(work / "loop", args.documents), fake.native_url)
                label = "loop, one request at a time (DashScope docs)"
                rows.append((label, seconds, None, 0, request_rate(fake)))
        with flow_server(args.prefect_db, work):
            asyncio.run(create_limit(limits))
            default_workers = max(os.cpu_count() or 1, 2)
            runs = {
                "default": (f"flow, default runner ({default_workers} threads)", None, False),
                "wide": (f"flow, {args.workers} threads", args.workers, False),
                "prefect-helper": (
                    f"flow, {args.workers} threads, Prefect's rate_limit() instead",
                    args.workers,
                    True,
                ),
            }
            chosen = [runs[name] for name in args.runs if name in runs]
            for number, (label, workers, prefect_helper) in enumerate(chosen):
                with FakeDashScope(latency=args.latency, rpm=args.rpm) as fake, pacing(prefect_helper):
                    settings = Settings(
                        engine="dashscope",
                        dashscope=DashScopeOptions(base_url=fake.native_url),
                        preprocess=preprocess,
                        verify=VerifyOptions(independent_reading=args.verify),
                        api_limits=limits,
                    )
                    docs = make_documents(work / f"flow-{number}", args.documents)
                    seconds, cpu, failed = flow_run(docs, work / f"out-{number}", settings, workers)
                    rows.append((label, seconds, cpu, failed, request_rate(fake)))

    print(
        f"{args.documents} one-page documents; fake latency {args.latency:g} s; limit {args.rpm} requests/min"
        f" = {limit_rate:g}/s; preprocessing {'on' if args.preprocess else 'off'}; independent reading "
        f"{'on' if args.verify else 'off'}; Prefect on {args.prefect_db}; load average at the start: "
        f"{load:.1f}, at the end: {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| run | seconds | documents/s | of the limit | requests/s while sending | CPU/doc | OCR failures |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, seconds, cpu, failed, requests in rows:
        rate = args.documents / seconds
        per_doc = "–" if cpu is None else f"{cpu / args.documents:.2f} s"
        print(
            f"| {label} | {seconds:.1f} | {rate:.2f} | {rate / limit_rate:.0%} | {requests:.2f} "
            f"({requests / limit_rate:.0%}) | {per_doc} | {failed} |"
        )


def request_rate(fake: FakeDashScope) -> float:
    """Requests per second between the first and the last request the fake admitted."""
    arrivals = sorted(r.at for r in fake.requests)
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0


@contextlib.contextmanager
def pacing(prefect_helper: bool) -> Iterator[None]:
    """With ``prefect_helper``, take slots with ``prefect.concurrency.sync.rate_limit`` as it comes."""
    if not prefect_helper:
        yield
        return
    from prefect.concurrency.sync import rate_limit

    from ocrflow.engines import SharedRateLimit

    original = SharedRateLimit._take_slot
    SharedRateLimit._take_slot = lambda self: rate_limit(self.options.name, strict=True)
    try:
        yield
    finally:
        SharedRateLimit._take_slot = original


if __name__ == "__main__":
    main()
