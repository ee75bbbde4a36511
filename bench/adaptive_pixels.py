"""Adaptive max_pixels on eval-dev: the tokens it saves, and what the embedded engine reads at that size.

For each page, :func:`ocrflow.cost.estimate_page` gives qwen-vl-ocr's image tokens with the
default ``max_pixels`` (fixed mode) and with adaptive mode. Nothing is sent anywhere: the
API model cannot be run here, so the page is resized to each ``smart_resize`` output size
(PIL bicubic) and read by the embedded engine (RapidOCR, one onnxruntime thread), as a
stand-in for "is the text still readable at this resolution":

- CER: edit distance / length of the ground truth, both sides in reading order (lines grouped
  into rows by ``ocrflow.layout.rows``; boxes mapped back to original pixels first), white
  space collapsed; case-insensitive where the truth is all upper case (SROIE).
- fields: share of ground-truth field values found verbatim in the transcript, white space
  removed and case folded on both sides (SROIE: company, date, address, total; PassportEye
  specimens: document number and surname).
- text/gt: :func:`ocrflow.cost.text_height` over the median annotated line-box height
  (SROIE quads, FUNSD word boxes): how the glyph-height estimate relates to line height.

``--sweep`` also runs adaptive mode at several legibility thresholds and prints the CER change
against the default size, which is how the default ``legible_text_height`` was chosen.

Usage::

    .venv/bin/python bench/adaptive_pixels.py [--limit 20] [--category receipts forms ...] [--sweep]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
from PIL import Image

from ocrflow.cost import estimate_page, text_height
from ocrflow.engines.rapid import RapidOcrEngine
from ocrflow.evaluation import gt_text, iter_ground_truth, levenshtein
from ocrflow.layout import rows
from ocrflow.models import OcrLine, OcrTask
from ocrflow.settings import CostOptions, LocalEngineOptions

EVAL_DEV = Path(__file__).resolve().parents[2] / "shared" / "eval-dev"
CATEGORIES = {"receipts": "sroie_", "text_lines": "uw3_", "id_docs": "passporteye_", "forms": "funsd_"}
ID_FIELDS = ("number", "surname")
SWEEP = (6.0, 8.0, 10.0, 12.0, 14.0, 16.0)


@dataclass
class Tally:
    fixed_tokens: list[int] = field(default_factory=list)
    adaptive_tokens: list[int] = field(default_factory=list)
    fixed_cer: list[float] = field(default_factory=list)
    adaptive_cer: list[float] = field(default_factory=list)
    fixed_fields: list[float] = field(default_factory=list)
    adaptive_fields: list[float] = field(default_factory=list)
    text_heights: list[float] = field(default_factory=list)
    height_ratios: list[float] = field(default_factory=list)
    sweep: dict[float, list[tuple[int, float]]] = field(default_factory=dict)
    seconds: float = 0.0


def fold(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def read(engine: RapidOcrEngine, image: Image.Image, size: tuple[int, int], work: Path) -> str:
    """The engine's transcript of ``image`` resized to ``size`` (height, width), in reading order."""
    height, width = size
    resized = image.resize((width, height), Image.Resampling.BICUBIC)
    path = work / "page.png"
    resized.save(path)
    result = engine.recognize(path, OcrTask.TEXT_RECOGNITION)
    sx, sy = image.width / width, image.height / height
    lines = tuple(
        OcrLine(text=line.text, box=[[x * sx, y * sy] for x, y in line.box], score=line.score)
        for line in result.lines
    )
    return "\n".join(row.text for row in rows([result.model_copy(update={"lines": lines})]))


def cer(transcript: str, gt: dict[str, Any]) -> float | None:
    truth = gt_text(gt)
    if not truth:
        return None
    reference, hypothesis = fold(truth), fold(transcript)
    if reference.isupper():
        hypothesis = hypothesis.upper()
    return levenshtein(hypothesis, reference) / max(len(reference), 1)


def field_values(gt: dict[str, Any]) -> list[str]:
    fields = gt.get("fields") or {}
    if gt.get("category") == "id_docs":
        fields = {name: fields[name] for name in ID_FIELDS if fields.get(name)}
    elif gt.get("category") != "receipts":
        return []
    return [v for v in (re.sub(r"\s+", "", str(value)).upper() for value in fields.values()) if v]


def found(transcript: str, values: list[str]) -> float | None:
    flat = re.sub(r"\s+", "", transcript).upper()
    return sum(value in flat for value in values) / len(values) if values else None


def gt_line_height(gt: dict[str, Any]) -> float | None:
    heights = []
    for line in gt.get("lines") or []:
        if not isinstance(line, dict) or not line.get("text"):
            continue
        boxes = [word["box"] for word in line.get("words") or [] if word.get("box") and word.get("text")]
        if boxes:
            heights += [box[3] - box[1] for box in boxes]
        elif "quad" in line:
            ys = line["quad"][1::2]
            heights.append(max(ys) - min(ys))
    return statistics.median(heights) if heights else None


def run(category: str, limit: int, model: str, sweep: bool, engine: RapidOcrEngine) -> Tally:
    tally = Tally(sweep={threshold: [] for threshold in SWEEP} if sweep else {})
    prefix = CATEGORIES[category]
    samples = [(p, gt) for p, gt in iter_ground_truth(EVAL_DEV / category) if p.name.startswith(prefix)]
    fixed_options, adaptive_options = CostOptions(), CostOptions(max_pixels_mode="adaptive")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for path, gt in samples[:limit]:
            image = Image.open(path).convert("RGB")
            fixed = estimate_page(path, model, fixed_options)
            adaptive = estimate_page(path, model, adaptive_options)
            tally.fixed_tokens.append(fixed.tokens)
            tally.adaptive_tokens.append(adaptive.tokens)
            glyphs = text_height(path)
            line_height = gt_line_height(gt)
            if glyphs is not None:
                tally.text_heights.append(glyphs)
                if line_height:
                    tally.height_ratios.append(glyphs / line_height)
            fixed_text = read(engine, image, fixed.resized, work)
            adaptive_text = (
                fixed_text
                if adaptive.resized == fixed.resized
                else read(engine, image, adaptive.resized, work)
            )
            values = field_values(gt)
            for text, cers, shares in (
                (fixed_text, tally.fixed_cer, tally.fixed_fields),
                (adaptive_text, tally.adaptive_cer, tally.adaptive_fields),
            ):
                if (score := cer(text, gt)) is not None:
                    cers.append(score)
                if (share := found(text, values)) is not None:
                    shares.append(share)
            base = cer(fixed_text, gt)
            for threshold, deltas in tally.sweep.items():
                options = CostOptions(max_pixels_mode="adaptive", legible_text_height=threshold)
                at = estimate_page(path, model, options)
                if base is not None and at.resized != fixed.resized:
                    deltas.append((at.tokens, cer(read(engine, image, at.resized, work), gt) - base))
            print(f"{path.name}: {fixed.tokens} -> {adaptive.tokens} tokens", file=sys.stderr, flush=True)
    tally.seconds = time.perf_counter() - started
    return tally


def mean(values: list[float], spec: str = ".1%") -> str:
    return format(statistics.mean(values), spec) if values else "-"


def print_tables(tallies: dict[str, Tally], model: str) -> None:
    print(
        f"| {model} | pages | tokens/page default | tokens/page adaptive | saved | CER default | "
        "CER adaptive | fields default | fields adaptive | text height px (median) | text/gt line |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for category, t in tallies.items():
        saved = 1 - sum(t.adaptive_tokens) / sum(t.fixed_tokens) if t.fixed_tokens else 0.0
        heights = f"{statistics.median(t.text_heights):.1f}" if t.text_heights else "-"
        ratio = f"{statistics.median(t.height_ratios):.2f}" if t.height_ratios else "-"
        print(
            f"| {category} | {len(t.fixed_tokens)} | {mean(t.fixed_tokens, ',.0f')} | "
            f"{mean(t.adaptive_tokens, ',.0f')} | {saved:.0%} | {mean(t.fixed_cer)} | "
            f"{mean(t.adaptive_cer)} | {mean(t.fixed_fields)} | {mean(t.adaptive_fields)} | "
            f"{heights} | {ratio} |"
        )
    if any(t.sweep for t in tallies.values()):
        print(
            "\nCER change against the default size, by legibility threshold (pages adaptive mode shrinks; "
            "mean tokens/page of those pages in brackets):\n"
        )
        print("| threshold px | " + " | ".join(tallies) + " |")
        print("|---|" + "---|" * len(tallies))
        for threshold in SWEEP:
            cells = []
            for t in tallies.values():
                runs = t.sweep.get(threshold, [])
                cells.append(
                    f"{statistics.mean(d for _, d in runs):+.1%} (n={len(runs)}, "
                    f"{statistics.mean(k for k, _ in runs):,.0f})"
                    if runs
                    else "-"
                )
            print(f"| {threshold:g} | " + " | ".join(cells) + " |")
    print("\nseconds: " + ", ".join(f"{c} {t.seconds:.0f}" for c, t in tallies.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20, help="pages per category (default 20)")
    parser.add_argument("--category", nargs="+", choices=list(CATEGORIES), default=list(CATEGORIES))
    parser.add_argument("--model", default="qwen-vl-ocr")
    parser.add_argument("--sweep", action="store_true", help="also try legibility thresholds " + str(SWEEP))
    args = parser.parse_args()
    cv2.setNumThreads(1)  # a shared 2-core machine: one core for OpenCV, one for onnxruntime
    engine = RapidOcrEngine(LocalEngineOptions(threads=1))
    tallies = {name: run(name, args.limit, args.model, args.sweep, engine) for name in args.category}
    print_tables(tallies, args.model)


if __name__ == "__main__":
    main()
