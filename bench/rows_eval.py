"""How often :func:`ocrflow.layout.rows` builds a receipt field's rows wrong, judged by eval-dev's labels.

For every labelled line of a receipt field (WildReceipt: the lines labelled ``Store_name_value``,
``Store_addr_value``, ``Date_value``, ``Total_value``; SROIE, whose lines are not labelled: the
lines whose text is part of the company or address, or holds the date or total), the OCR lines
that cover it (an OCR line's centre inside the labelled box, or the box's centre inside the OCR
line's quadrilateral) and the rows they end up in. A labelled line is

- ``split`` when its OCR lines are in more than one row;
- ``merged`` when its row also holds the OCR line of a labelled line stacked with it (the two
  boxes overlap horizontally by more than a third of the narrower one and their centres are
  more than half a line apart vertically: one is above the other, they cannot share a printed
  row). Lines of neighbouring printed rows that do not overlap horizontally (the left item of
  one row and the right price of the next) are not caught: the counts are a lower bound;
- ``out of order`` when a line of the same field printed above it comes in a later row.

The labels' boxes are axis-aligned, so nothing here uses the slope the rows are built from.
OCR is read from (or, the first time, written to) ``bench/quality_eval.py``'s cache; halves as there.

Usage::

    .venv/bin/python bench/rows_eval.py [--cache DIR] [--only PREFIX[,PREFIX...]] [--show]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from difflib import SequenceMatcher
from pathlib import Path

from quality_eval import EVAL_DEV, SPLITS, Context, Settings, dataset, ocr_cached, split_of

from ocrflow.evaluation import iter_ground_truth
from ocrflow.layout import rows

LABELS = {
    "Store_name_value": "company",
    "Store_addr_value": "address",
    "Date_value": "date",
    "Total_value": "total",
}


def _fold(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.casefold())


def field_lines(gt: dict) -> list[tuple[str, list[float]]]:
    """``(field, [x0, y0, x1, y1])`` of every ground-truth line that is (part of) a receipt field."""
    out = []
    fields = gt.get("fields") or {}
    for line in gt.get("lines", []):
        if not isinstance(line, dict) or "bbox" not in line:
            continue
        if "label" in line:
            if line["label"] in LABELS:
                out.append((LABELS[line["label"]], line["bbox"]))
            continue
        text = _fold(line["text"])
        for name in ("company", "address"):
            if len(text) >= 4 and text in _fold(str(fields.get(name, ""))):
                out.append((name, line["bbox"]))
        for name in ("date", "total"):
            value = _fold(str(fields.get(name, "")))
            if value and value in text:
                out.append((name, line["bbox"]))
    return out


def _inside(point: tuple[float, float], quad: list[list[float]]) -> bool:
    """Whether ``point`` is inside the convex quadrilateral ``quad`` (either winding)."""
    signs = []
    for (ax, ay), (bx, by) in zip(quad, quad[1:] + quad[:1], strict=True):
        signs.append((bx - ax) * (point[1] - ay) - (by - ay) * (point[0] - ax) >= 0)
    return all(signs) or not any(signs)


def _covers(box: list[float], text: str, quad: list[list[float]], read: str) -> bool:
    """Whether an OCR line (``quad``, ``read``) is (part of) the labelled line (``box``, ``text``).

    Where it is and what it says: a tilted line's axis-aligned label box also covers the ends
    of its neighbours, which share little of its text.
    """
    a, b = _fold(text), _fold(read)
    shared = sum(block.size for block in SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks())
    if shared < 0.5 * min(len(a), len(b)) or not shared:
        return False
    x0, y0, x1, y1 = box
    cx = sum(x for x, _ in quad) / 4
    cy = sum(y for _, y in quad) / 4
    return (x0 <= cx <= x1 and y0 <= cy <= y1) or _inside(((x0 + x1) / 2, (y0 + y1) / 2), quad)


def _stacked(a: list[float], b: list[float]) -> bool:
    overlap = min(a[2], b[2]) - max(a[0], b[0])
    narrower = min(a[2] - a[0], b[2] - b[0])
    apart = abs((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2) > 0.5 * min(a[3] - a[1], b[3] - b[1])
    return overlap > narrower / 3 and apart


def judge(gt: dict, results) -> Counter[str]:
    """Counts of labelled field lines read, split, merged and out of order in one document."""
    labelled = field_lines(gt)
    labels = [line for line in gt.get("lines", []) if isinstance(line, dict) and "bbox" in line]
    all_boxes = [line["bbox"] for line in labels]
    built = rows(results)
    row_of: dict[int, int] = {}  # id(OCR line box) -> row index
    read = []
    for r, row in enumerate(built):
        for line in row.lines:
            row_of[id(line.box)] = r
            read.append((line.box, line.text))
    covering = {
        i: [q for q, text in read if _covers(label["bbox"], label["text"], q, text)]
        for i, label in enumerate(labels)
    }
    tally: Counter[str] = Counter()
    for name, box in labelled:
        mine = covering[all_boxes.index(box)]
        if not mine:
            tally[f"{name}_unread"] += 1
            continue
        tally[f"{name}_read"] += 1
        my_rows = {row_of[id(q)] for q in mine}
        tally[f"{name}_split"] += len(my_rows) > 1
        merged = any(
            row_of[id(q)] in my_rows
            for i, other in enumerate(all_boxes)
            if other is not box and _stacked(box, other)
            for q in covering[i]
            if q not in mine
        )
        tally[f"{name}_merged"] += merged
        above = [
            b
            for n, b in labelled
            if n == name and b is not box and _stacked(b, box) and b[1] + b[3] < box[1] + box[3]
        ]
        late = any(
            min(row_of[id(q)] for q in covering[all_boxes.index(b)]) > max(my_rows)
            for b in above
            if covering[all_boxes.index(b)]
        )
        tally[f"{name}_order"] += late
        tally[f"{name}_wrong"] += len(my_rows) > 1 or merged or late
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ocrflow-quality-cache"))
    parser.add_argument("--only", default="sroie,wildreceipt")
    parser.add_argument("--show", action="store_true", help="one line per document with a wrong row")
    args = parser.parse_args()
    ctx = Context(Settings(out_dir=args.cache / "out"))
    tallies: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for path, gt in iter_ground_truth(EVAL_DEV):
        if not gt["id"].startswith(tuple(args.only.split(","))) or not gt.get("fields"):
            continue
        _, _, results = ocr_cached(ctx, path, gt, args.cache)
        tally = judge(gt, results)
        part = split_of(path.stem)
        tally["docs"] += 1
        tally["docs_wrong"] += any(tally[f"{f}_wrong"] for f in ("company", "date", "address", "total"))
        tallies[(part, dataset(gt))].update(tally)
        if args.show and tally["docs_wrong"]:
            shown = {
                k: v
                for k, v in sorted(tally.items())
                if v and k.split("_")[-1] in ("split", "merged", "order")
            }
            print(f"{part:6} {gt['id']:36} {shown}")
    fields = ("company", "address", "date", "total")
    print("\n| half | dataset | docs | docs with a wrong field row | " + " | ".join(fields) + " |")
    print("|---|---|---|---|" + "---|" * len(fields))
    for part in SPLITS:
        for name in ("SROIE", "SROIE skewed", "WildReceipt"):
            t = tallies[(part, name)]
            if not t["docs"]:
                continue
            cells = [
                f"{t[f + '_wrong']}/{t[f + '_read']} (split {t[f + '_split']}, merged {t[f + '_merged']}, "
                f"order {t[f + '_order']})"
                for f in fields
            ]
            print(f"| {part} | {name} | {t['docs']} | {t['docs_wrong']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
