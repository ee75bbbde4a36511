"""A second recogniser (PP-OCRv4) re-reading each receipt field's lines: does it tell right from wrong?

For every eval-dev receipt (the split of ``bench/quality_eval.py``), the embedded engine reads
the page as the pipeline does (ingest -> preprocess -> RapidOCR PP-OCRv6) and the receipt's
fields are extracted and located. Then PP-OCRv4 (:mod:`ocrflow.engines.second`) re-reads each
field's lines: their boxes cropped from the preprocessed page, recognition only. The value as
the first model read it (``raw``) is compared with the second reading of the same lines,
letters and digits only, case ignored (PP-OCRv4 drops most spaces), by the edit distance of
the value against the closest stretch of the second reading: 0 ``agrees``, else ``differs``
(with the distance). Each value is scored right or wrong as ``ocrflow eval`` scores it.

Printed per half and field: how many right and wrong values the second reading agrees with,
the likelihood ratio P(outcome | wrong) / P(outcome | right), where the two differ whether the
second reading holds the truth, and the CPU of the re-reading per document (and of loading
the model once).

``--grounding`` measures the API path's use of it instead: for the receipts of
``bench/grounding_harness.py`` (all four fields labelled), the independent reader
(``verify``'s RapidOCR) reads the preprocessed page as for an API engine; each labelled name and
address (the fake model's clean answer) and the harness's own letter-slip and dropped-word
errors for them (same seed) are grounded in that reading, and where a value is only ``near``,
PP-OCRv4 re-reads the lines found: how often it grounds a clean value (wanted) and an injected
error (never wanted). No lock-free cache: it reads each page (~1.5 CPU-s).

``--vote`` tries a per-character rule for field accuracy: where the two readings of a name's or
address's line differ by single characters, take PP-OCRv4's character when its score is higher
than PP-OCRv6's (by ``--margin``), extract again, and count values fixed and broken.

It shares ``bench/quality_eval.py``'s cache of each document's pages and OCR (``--cache``).

    .venv/bin/python bench/second_reading.py [--half tune|report|both] [--only PREFIX] [--show]
"""

from __future__ import annotations

import argparse
import difflib
import pickle
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_eval import (  # noqa: E402
    EVAL_DEV,
    FIELDS,
    SPLITS,
    dataset,
    ocr_cached,
    route,
    share,
    split_of,
    true_type,
)

from ocrflow.engines.second import SecondReader  # noqa: E402
from ocrflow.evaluation import field_truth, iter_ground_truth, normalize_field, same_field  # noqa: E402
from ocrflow.pipeline import Context, SecondReading, interpret  # noqa: E402
from ocrflow.settings import Settings  # noqa: E402


def distance_within(value: str, text: str) -> int:
    """Edit distance of ``value`` against the closest stretch of ``text`` (semi-global alignment)."""
    previous = [0] * (len(text) + 1)
    for i, ch in enumerate(value, start=1):
        current = [i]
        for j, other in enumerate(text, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ch != other)))
        previous = current
    return min(previous)


def fold(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ocrflow-quality-cache"))
    parser.add_argument("--half", choices=(*SPLITS, "both"), default="tune")
    parser.add_argument(
        "--only", default="", help="only documents whose id starts with one of these (comma-separated)"
    )
    parser.add_argument("--show", action="store_true", help="one line per field")
    parser.add_argument("--dump", type=Path, help="pickle the per-field records here")
    parser.add_argument("--grounding", action="store_true", help="the API path's near values instead")
    parser.add_argument("--vote", action="store_true", help="the per-character rule instead")
    parser.add_argument("--margin", type=float, default=0.0, help="--vote: how much surer PP-OCRv4 must be")
    args = parser.parse_args()
    if args.grounding:
        grounding(args.half, args.show)
        return
    if args.vote:
        vote(args.cache, args.half, args.margin, args.show)
        return
    args.cache.mkdir(parents=True, exist_ok=True)
    ctx = Context(Settings(out_dir=args.cache / "out"))
    reader = SecondReader()

    started = time.thread_time()
    reader._rapid()  # noqa: SLF001 - the model's load, timed apart from the re-reading
    load_cpu = time.thread_time() - started

    records = []  # (half, dataset, field, right, distance, second_has_truth, raw, second_text, truth)
    cpu: dict[str, list[float]] = defaultdict(list)
    lines_read: dict[str, list[int]] = defaultdict(list)
    pipeline_cpu: dict[str, list[float]] = defaultdict(list)  # what the pipeline reads: addresses
    for path, gt in iter_ground_truth(EVAL_DEV):
        if true_type(gt) != "receipt" or not field_truth(gt):
            continue
        if not gt["id"].startswith(tuple(args.only.split(","))):
            continue
        half = split_of(path.stem)
        if args.half != "both" and half != args.half:
            continue
        ingested, pages, results = ocr_cached(ctx, path, gt, args.cache)
        extraction, _, _ = route(ctx, ingested, results, "receipt")
        by_page = {r.page_number: r for r in results}
        images = {p.page_number: p.path for p in pages}
        started = time.thread_time()
        count = 0
        for name, want in field_truth(gt).items():
            field = extraction.fields.get(name)
            if field is None or field.value in (None, "") or not field.boxes or not field.raw:
                continue
            got = normalize_field(name, field.value)
            right = same_field(gt, got, want)
            page = field.boxes[0].page
            second = reader.read(images[page], [b.box for b in field.boxes], by_page[page].reading_frame)
            count += len(second)
            second_text = " ".join(line.text for line in second)
            distance = distance_within(fold(field.raw), fold(second_text))
            has_truth = distance_within(fold(want), fold(second_text)) == 0
            first_score = (field.evidence.factors if field.evidence else {}).get("ocr_score", 0.0)
            second_score = min(line.score for line in second)
            records.append(
                (half, dataset(gt), name, right, distance, has_truth, field.raw, second_text, want)
                + (first_score, second_score)
            )
            if args.show:
                mark = "right" if right else "WRONG"
                print(
                    f"{half:6} {gt['id'][:28]:28} {name:8} {mark:5} d={distance:<2} "
                    f"{field.raw!r:48} | {second_text!r}"
                )
        cpu[dataset(gt)].append(time.thread_time() - started)
        lines_read[dataset(gt)].append(count)
        as_run = SecondReading(reader, pages)
        interpret(results, ctx.doctypes, "receipt", ctx.settings.routing.min_field_confidence, reread=as_run)
        pipeline_cpu[dataset(gt)].append(as_run.cpu_seconds)

    if args.dump:
        args.dump.write_bytes(pickle.dumps(records))
    print(f"\nmodel load: {load_cpu:.2f} CPU-s (once per process)")
    print(
        "\n| dataset | documents | lines re-read per document | CPU-s per document, all four "
        "fields (mean, max) | as the pipeline reads: addresses only (mean, max) |"
    )
    print("|---|---|---|---|---|")
    for name, times in sorted(cpu.items()):
        n, run = len(times), pipeline_cpu[name]
        print(
            f"| {name} | {n} | {sum(lines_read[name]) / n:.1f} | {sum(times) / n:.3f}, {max(times):.3f} "
            f"| {sum(run) / n:.3f}, {max(run):.3f} |"
        )
    print_agreement(records)
    print_rules(records)


def print_agreement(records) -> None:
    print("\n## Agreement of the second reading with the first, wrong / right values\n")
    print(
        "| half | field | agrees: wrong / right | differs: wrong / right | ratio agrees | ratio differs "
        "| where they differ on a wrong value, PP-OCRv4 has the truth |"
    )
    print("|---|---|---|---|---|---|---|")
    halves = sorted({r[0] for r in records})
    for half in (*halves, "both") if len(halves) > 1 else halves:
        for name in (*FIELDS, "all"):
            tally: Counter = Counter()
            for h, _, f, right, distance, has_truth, *_ in records:
                if (half not in ("both", h)) or (name not in ("all", f)):
                    continue
                tally[(distance == 0, right)] += 1
                if distance and not right:
                    tally["fixable"] += has_truth
            wrong = tally[(True, False)] + tally[(False, False)]
            right = tally[(True, True)] + tally[(False, True)]

            def ratio(agrees: bool, wrong: int = wrong, right: int = right, tally: Counter = tally) -> str:
                w = (tally[(agrees, False)] + 0.5) / (wrong + 1)
                r = (tally[(agrees, True)] + 0.5) / (right + 1)
                return f"{w / r:.2f}"

            print(
                f"| {half} | {name} | {tally[(True, False)]} / {tally[(True, True)]} "
                f"| {tally[(False, False)]} / {tally[(False, True)]} | {ratio(True)} | {ratio(False)} "
                f"| {share(tally['fixable'], tally[(False, False)])} |"
            )


def print_rules(records) -> None:
    """Where the readings differ: would taking PP-OCRv4's reading make more values right?

    Counted generously for the rule: a value is *fixed* when it was wrong and the second
    reading holds its truth (letters and digits; it would still need its spaces back), *broken*
    when it was right and the rule takes the other reading.
    """
    print("\n## Where the two readings differ: a rule that takes the second reading (fixed / broken)\n")
    print("| half | field | differ | always the second | the second where its line score is higher |")
    print("|---|---|---|---|---|")
    halves = sorted({r[0] for r in records})
    for half in halves:
        for name in (*FIELDS, "all"):
            differ = [r for r in records if r[0] == half and name in ("all", r[2]) and r[4] > 0]
            if not differ:
                continue
            higher = [r for r in differ if r[10] > r[9]]

            def count(chosen) -> str:
                fixed = sum(1 for r in chosen if not r[3] and r[5])
                broken = sum(1 for r in chosen if r[3])
                return f"{fixed} / {broken}"

            print(f"| {half} | {name} | {len(differ)} | {count(differ)} | {count(higher)} |")


def grounding(half: str, show: bool) -> None:
    """Near names and addresses of an API answer, clean and injected, re-read by PP-OCRv4."""
    import random

    from grounding_harness import RECEIPT, SEED, dropped_word, letter_slip, receipts

    from ocrflow.engines.rapid import RapidOcrEngine
    from ocrflow.ingest import ingest
    from ocrflow.models import Grounding, OcrResult, OcrTask
    from ocrflow.ocr import recognize
    from ocrflow.preprocess import preprocess
    from ocrflow.settings import LocalEngineOptions, VerifyOptions
    from ocrflow.verify import ground

    settings = Settings(out_dir=Path("/tmp/ocrflow-second-reading-grounding"))
    verifier = RapidOcrEngine(VerifyOptions().reader_options(LocalEngineOptions()))
    reader = SecondReader()
    api_pages = settings.preprocess.model_copy(update={"rescale": False})  # as an API engine's pages
    tally: Counter = Counter()
    for doc in receipts(None):
        if half != "both" and doc.half != half:
            continue
        pages = [preprocess(p, api_pages) for p in ingest(doc.path, settings.work_dir, settings.ingest).pages]
        independent = [recognize(p, verifier, None, OcrTask.ADVANCED_RECOGNITION) for p in pages]
        reread = SecondReading(reader, pages)
        for kind, make in (("clean", None), ("letter_slip", letter_slip), ("dropped_word", dropped_word)):
            values = (
                {n: doc.truth[n] for n in ("company", "address")}
                if make is None
                else make(doc, random.Random(f"{SEED}:{doc.stem}:{kind}")) or {}
            )
            for name, value in values.items():
                if name not in ("company", "address") or not value or (make and value == doc.truth[name]):
                    continue
                spec = RECEIPT.fields[name]
                match = ground(value, spec, independent)
                tally[(doc.half, kind, match.outcome.value)] += 1
                if match.outcome is not Grounding.NEAR:
                    continue
                lines = tuple(reread(match.boxes))
                second = OcrResult(
                    engine="local", model="v4", task=OcrTask.ADVANCED_RECOGNITION, page_number=1, lines=lines
                )
                outcome = ground(value, spec, [second]).outcome
                tally[(doc.half, kind, f"near, then {outcome.value}")] += 1
                if show:
                    print(f"{doc.half:6} {kind:12} {doc.stem[:24]:24} {name:8} {outcome.value:9} {value!r}")
    print("\n| half | value | grounded | near | not found | near, grounded by PP-OCRv4 |")
    print("|---|---|---|---|---|---|")
    for part in sorted({h for h, _, _ in tally}):
        for kind in ("clean", "letter_slip", "dropped_word"):
            counts = [tally[(part, kind, o)] for o in ("grounded", "near", "not_found")]
            rescued = tally[(part, kind, "near, then grounded")]
            print(f"| {part} | {kind} | {counts[0]} | {counts[1]} | {counts[2]} | {rescued} of {counts[1]} |")


def voted(text: str, scores, other: str, other_scores, margin: float) -> str:
    """``text`` with each single-character difference from ``other`` taken from it where it is surer.

    Characters are aligned without spaces (PP-OCRv4 drops them); ``text`` keeps its own spaces.
    """
    mine = [(i, ch) for i, ch in enumerate(text) if not ch.isspace()]
    theirs = [ch for ch in other if not ch.isspace()]
    if not scores or not other_scores or len(scores) != len(mine) or len(other_scores) != len(theirs):
        return text
    out = list(text)
    matcher = difflib.SequenceMatcher(None, [ch for _, ch in mine], theirs, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "replace" and i2 - i1 == j2 - j1:
            for k in range(i2 - i1):
                if other_scores[j1 + k] > scores[i1 + k] + margin:
                    out[mine[i1 + k][0]] = theirs[j1 + k]
    return "".join(out)


def vote(cache: Path, half: str, margin: float, show: bool) -> None:
    """Names and addresses extracted again after the per-character vote: fixed / broken per half."""
    from ocrflow.extract import extract

    ctx = Context(Settings(out_dir=cache / "out"))
    reader = SecondReader()
    tally: Counter = Counter()
    for path, gt in iter_ground_truth(EVAL_DEV):
        part = split_of(path.stem)
        if true_type(gt) != "receipt" or not field_truth(gt) or half not in ("both", part):
            continue
        ingested, pages, results = ocr_cached(ctx, path, gt, cache)
        extraction, _, _ = route(ctx, ingested, results, "receipt")
        images = {page.page_number: page.path for page in pages}
        for name in ("company", "address"):
            want, field = field_truth(gt).get(name), extraction.fields.get(name)
            if not want or field is None or not field.boxes or field.value in (None, ""):
                continue
            right = same_field(gt, normalize_field(name, field.value), want)
            page = field.boxes[0].page
            frame = next(r.reading_frame for r in results if r.page_number == page)
            second = dict(
                zip(
                    (tuple(map(tuple, b.box)) for b in field.boxes),
                    reader.read(images[page], [b.box for b in field.boxes], frame),
                    strict=True,
                )
            )
            changed = []
            for result in results:
                lines = []
                for line in result.lines:
                    other = second.get(tuple(map(tuple, line.box))) if result.page_number == page else None
                    if other is not None:
                        text = voted(line.text, line.char_scores, other.text, other.char_scores, margin)
                        line = line.model_copy(update={"text": text})
                    lines.append(line)
                changed.append(result.model_copy(update={"lines": tuple(lines)}))
            again = extract(changed, ctx.doctypes["receipt"]).fields.get(name)
            right_again = again is not None and same_field(gt, normalize_field(name, again.value), want)
            tally[(part, name, right, right_again)] += 1
            if show and right != right_again:
                print(
                    f"{part:6} {gt['id']:28} {name:8} {field.value!r} -> {again.value if again else None!r}"
                )
    print(f"\n| half | field | values | right before | fixed | broken |  (margin {margin})")
    print("|---|---|---|---|---|---|")
    for part in sorted({k[0] for k in tally}):
        for name in ("company", "address"):
            cells = {k[2:]: n for k, n in tally.items() if k[:2] == (part, name)}
            right = cells.get((True, True), 0) + cells.get((True, False), 0)
            print(
                f"| {part} | {name} | {sum(cells.values())} | {right} | {cells.get((False, True), 0)} "
                f"| {cells.get((True, False), 0)} |"
            )


if __name__ == "__main__":
    main()
