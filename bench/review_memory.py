"""The review server's memory after page views: ``ocrflow review serve`` RSS, measured from outside.

Makes ``--pages`` large phone-photo-like scans (default 10 pages of 7000 x 5000 = 35 MP, JPEG),
queues each as a review item, starts ``ocrflow review serve`` from ``--repo`` (so the same script
measures main before and after a change), signs in, and views ``--views`` pages (default 50:
each view loads the item page and its page image, as a browser does; the pages are visited in
turn, so each is rendered once and then served from the cache). Prints one markdown row: the
server's RSS after start, after the views, its peak (VmHWM), and the bytes of page image sent.

Usage::

    flock /tmp/ocrflow-heavy.lock .venv/bin/python bench/review_memory.py [--repo DIR] [--views 50]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]


def make_scan(path: Path, size: tuple[int, int], seed: int) -> None:
    """A photo-like page: paper shading, lines of dark 'text' blocks, sensor noise; a large JPEG."""
    rng = random.Random(seed)
    width, height = size
    image = Image.linear_gradient("L").resize(size).point(lambda v: 200 + v // 6).convert("RGB")
    draw = ImageDraw.Draw(image)
    y = height // 12
    while y < height - height // 12:
        x = width // 14
        while x < width - width // 14:
            word = rng.randint(width // 60, width // 14)
            draw.rectangle((x, y, x + word, y + height // 90), fill=(rng.randint(0, 60),) * 3)
            x += word + width // 80
        y += height // 35
    noise = Image.effect_noise(size, 24).convert("RGB")
    image = Image.blend(image, noise, 0.08).filter(ImageFilter.GaussianBlur(0.8))
    image.save(path, "JPEG", quality=90)


def rss_kib(pid: int) -> tuple[int, int]:
    """The process's resident set and its peak, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M))
    return int(found["VmRSS"]), int(found["VmHWM"])


def prepare(out: Path, inbox: Path, pages: int, size: tuple[int, int]) -> None:
    """Queue one review item per scan, through the store of the code being measured."""
    code = f"""
import hashlib, sys
from pathlib import Path
from ocrflow.models import DocumentResult, PageResult, Reason, Stage, Status
from ocrflow.review.auth import Accounts
from ocrflow.settings import Settings
from ocrflow.store import ResultStore
out, inbox = Path({str(out)!r}), Path({str(inbox)!r})
store = ResultStore(out, Settings(out_dir=out).resolved_database_url())
for path in sorted(inbox.glob("*.jpg")):
    reason = Reason(stage=Stage.VALIDATE, code="low_confidence", message="read with low confidence")
    store.save(DocumentResult(
        document_id=hashlib.sha256(path.read_bytes()).hexdigest(), source=str(path), doc_type="receipt",
        status=Status.NEEDS_REVIEW, reasons=[reason], fields={{}}, text="",
        pages=[PageResult(page_number=1, width={size[0]}, height={size[1]}, lines=[])], engine="bench:none"))
Accounts(store.engine).add_user("bench", "bench password")
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT if not ARGS.repo else ARGS.repo)


def main() -> None:
    out_root = Path(tempfile.mkdtemp(prefix="review-memory-"))
    inbox, out = out_root / "inbox", out_root / "out"
    inbox.mkdir()
    size = (ARGS.width, ARGS.height)
    for n in range(ARGS.pages):
        make_scan(inbox / f"scan-{n:02d}.jpg", size, n)
    prepare(out, inbox, ARGS.pages, size)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    repo = Path(ARGS.repo or ROOT)
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from ocrflow.cli import app; app()",
            "review",
            "serve",
            "--out",
            str(out),
            "--port",
            str(port),
        ],
        cwd=repo,
        env={**os.environ, "PREFECT_API_URL": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/login", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        started, _ = rss_kib(server.pid)
        sent = 0
        seconds = []
        with httpx.Client(timeout=300) as client:
            page = client.get(base + "/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            client.post(
                base + "/login", data={"csrf_token": token, "username": "bench", "password": "bench password"}
            )
            for view in range(ARGS.views):
                item = view % ARGS.pages + 1
                began = time.monotonic()
                html = client.get(f"{base}/items/{item}")
                assert html.status_code == 200, html.status_code
                image = client.get(f"{base}/items/{item}/pages/1.png")
                assert image.status_code == 200, image.status_code
                seconds.append(time.monotonic() - began)
                sent += len(image.content)
        after, peak = rss_kib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    first = sorted(seconds[: ARGS.pages])
    cached = sorted(seconds[ARGS.pages :]) or [0.0]
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"| {ARGS.label} | {ARGS.pages} x {size[0]}x{size[1]} JPEG | {ARGS.views} | {started / 1024:.0f} | "
        f"{after / 1024:.0f} | {peak / 1024:.0f} | {sent / ARGS.views / 1e6:.2f} | "
        f"{first[len(first) // 2]:.2f} | {cached[len(cached) // 2]:.3f} | {' '.join(load)} |"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", help="Checkout whose ocrflow to measure (default: this one).")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--views", type=int, default=50)
    parser.add_argument("--width", type=int, default=7000)
    parser.add_argument("--height", type=int, default=5000)
    ARGS = parser.parse_args()
    main()
