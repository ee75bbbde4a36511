"""Does preprocessing help the embedded engine? Raw images vs. ``preprocess()`` on eval-dev.

Runs RapidOCR (default LocalEngineOptions, one onnxruntime thread) on every image twice,
as given and after :func:`ocrflow.preprocess.preprocess` with default options, and prints
a markdown table per subset:

- CER: Levenshtein distance / len(ground truth) of the transcript, averaged over images.
  Both sides are put in reading order first (lines grouped into rows top to bottom, each
  row left to right), by boxes in the ORIGINAL image: the engine's boxes on a preprocessed
  page are mapped back with ``to_original``, so a deskewed page is not scored on a
  different line order. Whitespace is collapsed to single spaces, or removed entirely
  for WildReceipt, whose truth has no spaces. Engine lines centred in a region the truth
  leaves untranscribed (WildReceipt's "Ignore" boxes) are left out of the transcript.
- fields: share of ground-truth field values found in the transcript, whitespace removed
  on both sides (SROIE: company, date, address, total; WildReceipt: every labelled value).
- worksheets (only with ``--category worksheets``): their truth is the whole source page
  while the photo shows part of it, so the metric is word precision: the share of
  recognised words (lower case, 3+ letters) that occur in the truth.
- underexposed (only with ``--category underexposed``): eval-dev's dark photos with their
  lightness scaled by ``UNDEREXPOSURE``, the case CLAHE is for; same truth and geometry.
- tables (``--category tables``): clean rendered images, where no step should fire:
  PubTabNet's table crops as given and their cell texts rendered by Pillow's own font
  at 9 px (small, dense, anti-aliased text, which the old noise measurement mistook for
  noise); and the crops with 0.4% salt-and-pepper added, where denoise should fire.
  CER against the cells in table order; fields = cell recall (share of cells whose text
  is found in the transcript).
- per step, the number of pages it changed; s/page: wall seconds of ``preprocess()`` per
  page (OpenCV and the classifier on one thread), writing the result included.

Usage::

    .venv/bin/python bench/preprocess_eval.py [--limit N] [--category receipts text_lines photos ...]
    .venv/bin/python bench/preprocess_eval.py --category receipts photos worksheets --fired rescale -v
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ocrflow.engines.rapid import RapidOcrEngine
from ocrflow.models import OcrTask, PageRef
from ocrflow.preprocess import preprocess
from ocrflow.settings import LocalEngineOptions, PreprocessOptions

EVAL_DEV = Path(
    os.environ.get("OCRFLOW_EVAL_DEV", Path(__file__).resolve().parents[2] / "shared" / "eval-dev")
)

# subset name -> (eval-dev category, file-stem prefixes, transcript compared without spaces?)
SUBSETS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "SROIE receipts (clean scans)": ("receipts", ("sroie_",), False),
    "UW-III text lines (clean scans)": ("text_lines", ("uw3_",), False),
    "SROIE skewed scans": ("photos", ("sroie_skew_",), False),
    "WildReceipt skewed photos": ("photos", ("wildreceipt_skew_",), True),
    "WildReceipt dark photos": ("photos", ("wildreceipt_dark_",), True),
    "worksheet photos": ("worksheets", ("dyslexia_",), False),
    "WildReceipt dark photos, underexposed": ("underexposed", ("wildreceipt_dark_",), True),
    "PubTabNet tables (clean rendered)": ("tables", ("pubtabnet_",), False),
    "table cells rendered at 9 px": ("tables_rendered", ("pubtabnet_",), False),
    "tables with 0.4% salt-and-pepper": ("tables_specks", ("pubtabnet_",), False),
}
DERIVED_FOLDERS = {
    "worksheets": "photos",
    "underexposed": "photos",
    "tables_rendered": "tables",
    "tables_specks": "tables",
}
"""Subsets made by this script from an eval-dev folder's images (or their truth)."""
UNDEREXPOSURE = 0.35
"""eval-dev's "dark" photos are lit receipts on dark tables; the ``underexposed`` subset
scales their lightness (L of LAB) by this, as a camera given a third of the light would."""
STEPS = ("rescale", "denoise", "clahe", "orientation", "deskew")


class Score(NamedTuple):
    main: float
    """CER, or word precision for the worksheets."""
    trigram_f1: float | None = None
    fields: float | None = None


@dataclass
class Tally:
    raw: list[Score] = field(default_factory=list)
    pre: list[Score] = field(default_factory=list)
    fired: Counter[str] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)


def load_iter_samples():
    spec = importlib.util.spec_from_file_location("eval_dev_load", EVAL_DEV / "load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.iter_samples


def levenshtein(a: str, b: str) -> int:
    """Edit distance, one row at a time; the insertion chain is a running minimum."""
    if not a or not b:
        return max(len(a), len(b))
    codes_b = np.array([ord(c) for c in b])
    index = np.arange(len(b) + 1)
    row = index.copy()
    for i, char in enumerate(a, start=1):
        cost = (codes_b != ord(char)).astype(np.int64)
        candidate = np.empty_like(row)
        candidate[0] = i
        candidate[1:] = np.minimum(row[1:] + 1, row[:-1] + cost)
        row = np.minimum.accumulate(candidate - index) + index
    return int(row[-1])


def reading_order(lines: list[tuple[str, list[list[float]]]]) -> list[str]:
    """Group lines into rows by their vertical centres, rows top to bottom, each left to right."""
    if not lines:
        return []
    items = []
    for text, box in lines:
        ys = [p[1] for p in box]
        items.append(((min(ys) + max(ys)) / 2, min(p[0] for p in box), max(ys) - min(ys), text))
    items.sort()
    tolerance = 0.5 * statistics.median(item[2] for item in items)
    rows: list[list[tuple[float, float, float, str]]] = []
    for item in items:
        if rows and abs(item[0] - rows[-1][0][0]) <= tolerance:
            rows[-1].append(item)
        else:
            rows.append([item])
    return [item[3] for row in rows for item in sorted(row, key=lambda it: it[1])]


def gt_lines(gt: dict) -> list[tuple[str, list[list[float]]]]:
    out = []
    for line in gt["lines"]:
        if isinstance(line, str) or not line.get("text"):
            continue
        if "quad" in line:
            q = line["quad"]
            box = [[q[i], q[i + 1]] for i in range(0, 8, 2)]
        elif "bbox" in line:
            x0, y0, x1, y1 = line["bbox"]
            box = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
        else:
            continue  # PubTabNet's cells have no boxes: their truth is in table order already
        out.append((line["text"], box))
    return out


def normalise(text: str, spaceless: bool) -> str:
    return re.sub(r"\s+", "", text) if spaceless else re.sub(r"\s+", " ", text).strip()


def field_values(gt: dict) -> list[str]:
    values = []
    for value in gt.get("fields", {}).values():
        values.extend(value if isinstance(value, list) else [value])
    return [v for v in (re.sub(r"\s+", "", str(v)) for v in values) if v]


def table_cells(gt: dict) -> list[str]:
    """A table's cell texts, whitespace removed (PubTabNet's truth has one line per cell)."""
    if gt.get("category") != "tables":
        return []
    return [v for v in (re.sub(r"\s+", "", line["text"]) for line in gt["lines"]) if v]


def word_precision(transcript: str, truth: str) -> float:
    vocabulary = set(re.findall(r"[^\W\d_]{3,}", truth.lower()))
    words = re.findall(r"[^\W\d_]{3,}", transcript.lower())
    return sum(w in vocabulary for w in words) / len(words) if words else 0.0


def ignored_regions(gt: dict) -> list[tuple[float, float, float, float]]:
    """Boxes the truth leaves untranscribed (WildReceipt's "Ignore" lines have empty text)."""
    return [
        tuple(line["bbox"])
        for line in gt["lines"]
        if isinstance(line, dict) and not line.get("text") and "bbox" in line
    ]


def trigram_f1(hypothesis: list[str], truth: list[str]) -> float:
    """F1 of the multisets of character 3-grams within lines, whitespace removed: blind to line order."""

    def grams(lines: list[str]) -> Counter[str]:
        out: Counter[str] = Counter()
        for line in lines:
            flat = re.sub(r"\s+", "", line)
            out.update(flat[i : i + 3] for i in range(len(flat) - 2))
        return out

    hyp, ref = grams(hypothesis), grams(truth)
    common = sum((hyp & ref).values())
    total = sum(hyp.values()) + sum(ref.values())
    return 2 * common / total if total else 1.0


def score(lines, gt: dict, spaceless: bool, worksheet: bool) -> Score:
    regions = ignored_regions(gt)

    def ignored(box: list[list[float]]) -> bool:
        x, y = sum(p[0] for p in box) / 4, sum(p[1] for p in box) / 4
        return any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in regions)

    recognised = reading_order([line for line in lines if not ignored(line[1])])
    transcript = " ".join(recognised)
    if worksheet:
        return Score(word_precision(transcript, gt["text"]))
    ordered = reading_order(gt_lines(gt)) or gt["text"].splitlines()
    truth = normalise(" ".join(ordered), spaceless)
    hypothesis = normalise(transcript, spaceless)
    cer = levenshtein(hypothesis, truth) / max(len(truth), 1)
    f1 = trigram_f1(recognised, ordered)
    values = field_values(gt) or table_cells(gt)
    flat = re.sub(r"\s+", "", transcript)
    return Score(cer, f1, sum(v in flat for v in values) / len(values) if values else None)


def ocr_lines(engine: RapidOcrEngine, page: PageRef) -> list[tuple[str, list[list[float]]]]:
    """Recognised lines with their boxes mapped back to the original image by ``to_original``."""
    result = engine.recognize(page.path, OcrTask.TEXT_RECOGNITION)
    (a, b, c), (d, e, f) = page.to_original
    return [
        (line.text, [[a * x + b * y + c, d * x + e * y + f] for x, y in line.box]) for line in result.lines
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="at most N images per subset (0: all)")
    parser.add_argument(
        "--category",
        nargs="+",
        default=["receipts", "text_lines", "photos"],
        choices=["receipts", "text_lines", "photos", "worksheets", "underexposed", "tables"],
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per image")
    parser.add_argument(
        "--fired", choices=STEPS, help="score only the images this step changes (the others are not read)"
    )
    args = parser.parse_args()
    if not EVAL_DEV.is_dir():
        sys.exit(f"eval-dev not found at {EVAL_DEV}")
    iter_samples = load_iter_samples()
    cv2.setNumThreads(1)  # two cores, shared with other work: measure single-threaded
    engine = RapidOcrEngine(LocalEngineOptions(threads=1))
    options = PreprocessOptions()
    tallies: dict[str, Tally] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Load the orientation classifier before the clock starts, so page 1 is not charged for it.
        warm_up = Path(__file__).resolve().parents[1] / "examples" / "receipt_valid.png"
        preprocess(_page("warm-up", warm_up), options, work_dir=Path(tmp))
        for name, (category, prefixes, spaceless) in SUBSETS.items():
            if category.partition("_")[0] not in args.category:
                continue
            folder = DERIVED_FOLDERS.get(category, category)
            samples = list(iter_samples([folder], root=EVAL_DEV, datasets=list(prefixes)))
            tally = tallies.setdefault(name, Tally())
            for path, gt in samples[: args.limit or None]:
                if category == "underexposed":
                    path = underexpose(path, Path(tmp))
                elif category in DERIVED_TABLES:
                    path = DERIVED_TABLES[category](path, gt, Path(tmp))
                page = _page(gt["id"], path)
                started = time.perf_counter()
                done = preprocess(page, options, work_dir=Path(tmp))
                tally.seconds.append(time.perf_counter() - started)
                fired = [s.step for s in done.steps if s.applied]
                if args.fired and args.fired not in fired:
                    continue
                tally.fired.update(fired)
                worksheet = category == "worksheets"
                raw = score(ocr_lines(engine, page), gt, spaceless, worksheet)
                pre = raw if done.path == path else score(ocr_lines(engine, done), gt, spaceless, worksheet)
                tally.raw.append(raw)
                tally.pre.append(pre)
                if args.verbose:
                    print(f"{path.name:40s} raw {fmt(raw)}  pre {fmt(pre)}  {fired}", flush=True)
    print_table(tallies)


def underexpose(path: Path, folder: Path) -> Path:
    lab = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2LAB)
    lab[:, :, 0] = (lab[:, :, 0].astype(np.float32) * UNDEREXPOSURE).astype(np.uint8)
    dark = folder / f"{path.stem}.dark.png"
    cv2.imwrite(str(dark), cv2.cvtColor(lab, cv2.COLOR_LAB2BGR))
    return dark


def with_specks(path: Path, gt: dict, folder: Path) -> Path:
    """The image with ``SPECKS`` of its pixels set to black or white at random (half each)."""
    image = cv2.imread(str(path))
    where = np.random.default_rng(SEED).random(image.shape[:2])
    image[where < SPECKS / 2] = 0
    image[where > 1 - SPECKS / 2] = 255
    out = folder / f"{path.stem}.specks.png"
    cv2.imwrite(str(out), image)
    return out


def render_cells(path: Path, gt: dict, folder: Path) -> Path:
    """The table's cells, four to a row, in Pillow's bundled font at ``RENDER_PX`` (anti-aliased)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=RENDER_PX)
    cells = [line["text"] for line in gt["lines"]]
    rows = [cells[i : i + 4] for i in range(0, len(cells), 4)]
    widths = [max((font.getlength(row[k]) for row in rows if k < len(row)), default=0) for k in range(4)]
    image = Image.new("L", (int(sum(widths)) + 4 * 12 + 8, len(rows) * (RENDER_PX + 5) + 8), 255)
    draw = ImageDraw.Draw(image)
    for r, row in enumerate(rows):
        x = 4.0
        for k, cell in enumerate(row):
            draw.text((x, 4 + r * (RENDER_PX + 5)), cell, fill=0, font=font)
            x += widths[k] + 12
    out = folder / f"{path.stem}.rendered.png"
    image.save(out)
    return out


SEED = 7
SPECKS = 0.004
RENDER_PX = 9
DERIVED_TABLES = {"tables_rendered": render_cells, "tables_specks": with_specks}


def _page(document_id: str, path: Path) -> PageRef:
    return PageRef(document_id=document_id, page_number=1, path=path, sha256="", width=0, height=0)


def fmt(score: Score) -> str:
    return " ".join("-" if v is None else f"{v:.3f}" for v in score)


def mean(scores: list[Score], index: int, percent: str = ".1%") -> str:
    values = [s[index] for s in scores if s[index] is not None]
    return format(statistics.mean(values), percent) if values else "-"


def print_table(tallies: dict[str, Tally]) -> None:
    print(
        "| subset | n | CER raw | CER pre | 3-gram F1 raw | 3-gram F1 pre | fields raw | fields pre | "
        + " | ".join(STEPS)
        + " | s/page |"
    )
    print("|---|" + "---:|" * (7 + len(STEPS) + 1))
    for name, t in tallies.items():
        if not t.raw:
            continue
        fired = " | ".join(str(t.fired[s]) for s in STEPS)
        cells = [
            mean(t.raw, 0, ".2%"),
            mean(t.pre, 0, ".2%"),
            mean(t.raw, 1),
            mean(t.pre, 1),
            mean(t.raw, 2),
            mean(t.pre, 2),
        ]
        print(f"| {name} | {len(t.raw)} | {' | '.join(cells)} | {fired} | {statistics.mean(t.seconds):.2f} |")


if __name__ == "__main__":
    main()
