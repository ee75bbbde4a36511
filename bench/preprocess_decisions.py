"""Does a change to preprocessing keep its decisions? Every eval-dev image, decisions and CPU, two checkouts.

``record`` runs :func:`ocrflow.preprocess.preprocess` (default options) on every image of
eval-dev (every category; PDFs are skipped) and writes, per image, each step's decision
(applied or not, the orientation angle, the deskew angle and band spread) and the CPU
seconds ``preprocess()`` took (this process's clock: OpenCV and the classifier as configured).
``compare`` reads two such files and lists every image whose decisions differ: a step applied
in one and not the other, another orientation, or deskew angles more than ``--tolerance``
degrees apart; then the CPU of both.

    .venv/bin/python bench/preprocess_decisions.py record before.json   # in the old checkout
    .venv/bin/python bench/preprocess_decisions.py record after.json    # in the new one
    .venv/bin/python bench/preprocess_decisions.py compare before.json after.json
    .venv/bin/python bench/preprocess_decisions.py record smaller.json --constant _ANALYSIS_SIDE=1200

Results: bench/RESULTS-preprocess.md ("Measuring once").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EVAL_DEV = Path(os.environ.get("OCRFLOW_EVAL_DEV", ROOT.parent / "shared" / "eval-dev"))
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def record(target: Path, constants: list[str]) -> None:
    import cv2

    from ocrflow import preprocess as module
    from ocrflow.models import PageRef
    from ocrflow.preprocess import preprocess
    from ocrflow.settings import PreprocessOptions

    for item in constants:  # exploring a threshold or size: NAME=VALUE of ocrflow.preprocess
        name, value = item.split("=", 1)
        setattr(module, name, type(getattr(module, name))(value))

    images = sorted(p for p in EVAL_DEV.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    rows = {}
    with tempfile.TemporaryDirectory() as work:
        for path in images:
            height, width = cv2.imread(str(path)).shape[:2]
            page = PageRef(document_id="d", page_number=1, path=path, sha256="", width=width, height=height)
            started = time.process_time()
            done = preprocess(page, PreprocessOptions(), work_dir=Path(work))
            cpu = time.process_time() - started
            steps = {
                record.step: {
                    "applied": record.applied,
                    **{k: v for k, v in record.measurements.items() if k in ("angle", "band_spread")},
                }
                for record in done.steps
            }
            rows[str(path.relative_to(EVAL_DEV))] = {"cpu_s": round(cpu, 4), "steps": steps}
    target.write_text(json.dumps(rows, indent=1))
    print(f"{len(rows)} images, {sum(r['cpu_s'] for r in rows.values()):.1f} CPU-s in preprocess()")


def differences(before: dict, after: dict, tolerance: float) -> list[str]:
    found = []
    for name in sorted(before.keys() & after.keys()):
        for step, old in before[name]["steps"].items():
            new = after[name]["steps"].get(step, {})
            if old.get("applied") != new.get("applied"):
                found.append(f"{name}: {step} applied {old.get('applied')} -> {new.get('applied')}")
            elif step == "orientation" and old.get("angle") != new.get("angle"):
                found.append(f"{name}: orientation {old.get('angle')} -> {new.get('angle')}")
            elif step == "deskew" and old.get("applied") and abs(old["angle"] - new["angle"]) > tolerance:
                found.append(f"{name}: deskew angle {old['angle']} -> {new['angle']}")
    return found


def compare(before_path: Path, after_path: Path, tolerance: float) -> None:
    before, after = json.loads(before_path.read_text()), json.loads(after_path.read_text())
    common = before.keys() & after.keys()
    found = differences(before, after, tolerance)
    print(f"{len(common)} images in both; {len(found)} decisions differ (deskew: over {tolerance} degrees)")
    for line in found:
        print("  " + line)
    cpu_before = sum(before[n]["cpu_s"] for n in common)
    cpu_after = sum(after[n]["cpu_s"] for n in common)
    print(f"CPU in preprocess(): {cpu_before:.1f} s -> {cpu_after:.1f} s ({cpu_after / cpu_before:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    recording = commands.add_parser("record")
    recording.add_argument("target", type=Path)
    recording.add_argument("--constant", action="append", default=[], metavar="NAME=VALUE")
    comparing = commands.add_parser("compare")
    comparing.add_argument("before", type=Path)
    comparing.add_argument("after", type=Path)
    comparing.add_argument("--tolerance", type=float, default=0.1)
    args = parser.parse_args()
    if args.command == "record":
        record(args.target, args.constant)
    else:
        compare(args.before, args.after, args.tolerance)


if __name__ == "__main__":
    main()
