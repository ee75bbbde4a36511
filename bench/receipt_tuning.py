"""Tune receipt extraction fast: OCR every eval-dev receipt once, then re-score from the cache.

The first run puts each receipt through the real stages (ingest -> preprocess ->
``ocr.recognize`` with the embedded engine, default settings) and pickles what they
return; later runs load the pickles and redo only extraction, validation and routing,
which takes a second. That is what makes trying a rule on 64 receipts cheap.

The acceptance figures come from ``ocrflow eval``; ``--results`` scores the documents an
eval run stored (its ``--out`` folders) instead, to split its figures by subset. Both
score as ``ocrflow.evaluation`` does.

Subsets: SROIE scans (receipts/sroie_*), SROIE skewed scans (photos/sroie_skew_*),
WildReceipt photos (receipts/wildreceipt_* and photos/wildreceipt_*). All are scored as
receipts, as ``ocrflow eval`` does for the receipts category (it leaves the photos
category's fields unscored).

Usage::

    .venv/bin/python bench/receipt_tuning.py [--cache DIR] [--show none|wrong|accepted|all] [--only sroie_146]
    .venv/bin/python bench/receipt_tuning.py --results /tmp/ev1 /tmp/ev1p
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
from collections import Counter
from pathlib import Path

from ocrflow.evaluation import field_truth, iter_ground_truth, normalize_field, same_field
from ocrflow.ingest import identify
from ocrflow.pipeline import Context, interpret
from ocrflow.routing import decide
from ocrflow.settings import Settings

EVAL_DEV = Path(
    os.environ.get("OCRFLOW_EVAL_DEV", Path(__file__).resolve().parents[2] / "shared" / "eval-dev")
)
SUBSETS: dict[str, tuple[str, str]] = {
    "SROIE scans": ("receipts", "sroie_"),
    "SROIE skewed": ("photos", "sroie_skew_"),
    "WildReceipt": ("receipts", "wildreceipt_"),
    "WildReceipt photos": ("photos", "wildreceipt_"),
}
FIELDS = ("company", "date", "address", "total")

# status, reason codes, field name -> (value, confidence)
Outcome = tuple[str, list[str], dict[str, tuple[str | None, float]]]


def _from_cache(ctx: Context, path: Path, cache: Path) -> Outcome:
    """Extraction, validation and routing on OCR results cached from the real stages."""
    from ocrflow.ingest import ingest
    from ocrflow.ocr import recognize
    from ocrflow.preprocess import preprocess

    pickled = cache / f"{path.parent.name}_{path.stem}.pkl"
    if pickled.exists():
        ingested, results = pickle.loads(pickled.read_bytes())
    else:
        ingested = ingest(path, ctx.settings.work_dir, ctx.settings.ingest)
        pages = [preprocess(page, ctx.settings.preprocess) for page in ingested.pages]
        results = [recognize(page, ctx.engine) for page in pages]
        pickled.write_bytes(pickle.dumps((ingested, results)))
    doctype = ctx.doctypes["receipt"]
    threshold = ctx.settings.routing.min_field_confidence
    extraction, type_reason = interpret(results, ctx.doctypes, "receipt", threshold)
    status, reasons = decide(ingested, results, [], extraction, doctype, type_reason)
    fields = {name: (f.value, f.confidence) for name, f in extraction.fields.items()}
    return status.value, [f"{r.code}:{r.field}" for r in reasons], fields


def _from_results(folders: list[Path], path: Path) -> Outcome | None:
    """What an ``ocrflow eval --out`` run stored for this document, if it ran it."""
    name = f"{identify(path).document_id}.json"
    stored = next((folder / name for folder in folders if (folder / name).exists()), None)
    if stored is None:
        return None
    result = json.loads(stored.read_text())
    fields = {n: (f.get("value"), f.get("confidence", 0.0)) for n, f in result["fields"].items()}
    return result["status"], [f"{r['code']}:{r['field']}" for r in result["reasons"]], fields


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ocrflow-receipt-cache"))
    parser.add_argument("--results", type=Path, nargs="+", help="score these ocrflow eval --out folders")
    parser.add_argument(
        "--show",
        choices=["none", "wrong", "accepted", "all"],
        default="wrong",
        help="which documents to list: accepted or wrong, accepted only, every one (with right fields too)",
    )
    parser.add_argument("--only", default="", help="only documents whose id starts with this")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    ctx = Context(Settings(out_dir=args.cache / "out"))

    table = [
        "| subset | docs | accepted | escaped errors | review rate | company | date | address | total |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for subset, (category, prefix) in SUBSETS.items():
        tally: Counter[str] = Counter()
        right: Counter[str] = Counter()
        seen: Counter[str] = Counter()
        for path, gt in iter_ground_truth(EVAL_DEV / category):
            if not gt["id"].startswith(prefix) or not gt["id"].startswith(args.only):
                continue
            if args.results:
                outcome = _from_results(args.results, path)
            else:
                outcome = _from_cache(ctx, path, args.cache)
            if outcome is None:
                continue
            status, reasons, fields = outcome
            wrong = {}
            for name, want in field_truth(gt).items():
                value, confidence = fields.get(name, (None, 0.0))
                got = normalize_field(name, value)
                ok = same_field(gt, got, want)
                right[name] += ok
                seen[name] += 1
                if not ok:
                    wrong[name] = (got, want, confidence)
            accepted = status == "accepted"
            review = status == "needs_review"
            tally.update(docs=1, accepted=accepted, review=review, escaped=accepted and bool(wrong))
            if (
                args.show == "all"
                or (args.show == "wrong" and (wrong or accepted))
                or (args.show == "accepted" and accepted)
            ):
                mark = "ESCAPED" if accepted and wrong else status
                print(f"{gt['id']:<34} {mark:<13} {sorted(set(reasons))}")
                for name, (got, want, confidence) in wrong.items():
                    print(f"    {name}: got {got!r} ({confidence}) want {want!r}")
                if args.show == "all":
                    # Right values too, with their confidence: how far each is from its threshold.
                    for name in sorted(set(fields) - set(wrong)):
                        value, confidence = fields[name]
                        print(f"    {name}: ok {normalize_field(name, value)!r} ({confidence})")
        if tally["docs"]:
            accuracy = " | ".join(f"{right[n] / seen[n]:.0%}" if seen[n] else "-" for n in FIELDS)
            table.append(
                f"| {subset} | {tally['docs']} | {tally['accepted']} | {tally['escaped']} | "
                f"{tally['review'] / tally['docs']:.0%} | {accuracy} |"
            )
    print("\n".join(["", *table]))


if __name__ == "__main__":
    main()
