"""Issue 15's figures on eval-dev, on a tune half and a held-out report half.

eval-dev is split once, by a hash of each document's file stem (``split_of``): SHA-256 of
the stem, first 8 hex digits as an integer, even -> ``tune``, odd -> ``report``. Nothing
about a document but its name decides its half, so the split is fixed, reproducible and
blind to content. Thresholds and rules are chosen on ``tune`` only; ``report`` is what the
README quotes as held out. Every figure is printed for both halves (and both together).

The first run OCRs each document once through the real stages (ingest -> preprocess ->
RapidOCR, default settings) and pickles what they return in ``--cache``; later runs redo
only detection, extraction, validation and routing. Delete the cache after a change to
ingest, preprocessing or the engine.

Figures:
- type detection (``--doc-type auto``): per type (receipt, passport, generic), precision
  and recall against the category's true type: receipts and receipt photos are
  ``receipt``, id_docs ``passport`` (every specimen there has an MRZ), and forms, tables,
  text lines, worksheet photos and the PDF ``generic`` (they match no bundled type);
- receipts (type given, as ``ocrflow eval``): field accuracy, accepted share, escaped
  errors (accepted with any wrong field), per dataset;
- receipt routing by the OCR score: the schema's thresholds, and thresholds fitted on one half
  applied to the other (on the confidence extraction gives, before calibration);
- the embedded engine's receipt evidence: wrong / right counts per piece of evidence on both
  halves, the ratios fitted on each (``ocrflow/confidence.py`` holds the tune half's), and
  routing by calibrated confidence with ratios fitted on one half, at 0.9 and lower thresholds;
- passports (type given): accepted, MRZ fully valid, code repairs.

Usage::

    .venv/bin/python bench/quality_eval.py [--cache DIR] [--show] [--only PREFIX[,PREFIX...]]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
from collections import Counter, defaultdict
from pathlib import Path

from ocrflow.confidence import ocr_band, own_confidence
from ocrflow.evaluation import field_truth, iter_ground_truth, normalize_field, same_field
from ocrflow.extract import extract
from ocrflow.pipeline import Context, SecondReading, interpret
from ocrflow.routing import decide
from ocrflow.settings import Settings

EVAL_DEV = Path(
    os.environ.get("OCRFLOW_EVAL_DEV") or Path(__file__).resolve().parents[2] / "shared" / "eval-dev"
)
FIELDS = ("company", "date", "address", "total")
SPLITS = ("tune", "report")


def split_of(stem: str) -> str:
    """``tune`` or ``report``: the parity of the first 8 hex digits of SHA-256(stem)."""
    return SPLITS[int(hashlib.sha256(stem.encode()).hexdigest()[:8], 16) % 2]


def true_type(gt: dict) -> str:
    category, name = gt["category"], gt["id"]
    if category == "receipts" or (category == "photos" and not name.startswith("dyslexia_")):
        return "receipt"
    if category == "id_docs":
        return "passport"
    return "generic"


def dataset(gt: dict) -> str:
    name = gt["id"]
    for prefix, label in (
        ("sroie_skew_", "SROIE skewed"),
        ("sroie_", "SROIE"),
        ("wildreceipt_", "WildReceipt"),
    ):
        if name.startswith(prefix):
            return label
    return gt["category"]


def ocr_cached(ctx: Context, path: Path, gt: dict, cache: Path):
    from ocrflow.ingest import ingest
    from ocrflow.ocr import recognize
    from ocrflow.preprocess import preprocess

    pickled = cache / f"{gt['category']}_{path.stem}.pkl"
    if pickled.exists():
        cached = pickle.loads(pickled.read_bytes())
        if len(cached) == 3:  # a cache of before the pages were kept is read again
            return cached
    ingested = ingest(path, ctx.settings.work_dir, ctx.settings.ingest)
    pages = [preprocess(page, ctx.settings.preprocess) for page in ingested.pages]
    results = [recognize(page, ctx.engine) for page in pages]
    pickled.write_bytes(pickle.dumps((ingested, pages, results)))
    return ingested, pages, results


def route(ctx: Context, ingested, results, doc_type: str, pages=()):
    """Interpret and route as the pipeline does; ``pages`` (preprocessed) for the second reading."""
    threshold = ctx.settings.routing.min_field_confidence
    reread = SecondReading(ctx.second_reader, pages) if pages and ctx.second_reader else None
    extraction, type_reason = interpret(results, ctx.doctypes, doc_type, threshold, reread=reread)
    doctype = ctx.doctypes.get(extraction.doc_type) if extraction else None
    status, reasons = decide(ingested, results, [], extraction, doctype, type_reason)
    return extraction, status, reasons


def share(n: int, d: int) -> str:
    return f"{n / d:.0%} ({n}/{d})" if d else "-"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ocrflow-quality-cache"))
    parser.add_argument("--show", action="store_true", help="one line per document")
    parser.add_argument(
        "--only",
        default="",
        help="only documents whose id starts with this (or one of these, comma-separated)",
    )
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    ctx = Context(Settings(out_dir=args.cache / "out"))

    detection: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)  # split -> (truth, found)
    receipts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)  # (split, dataset)
    passports: dict[str, Counter[str]] = defaultdict(Counter)
    # split -> (dataset, blocked by something other than confidence, field confidences, any field wrong)
    calibration: dict[str, list[tuple[str, bool, dict[str, float], bool]]] = defaultdict(list)
    # split -> (field, the evidence its extraction saw, right) for every value found
    own_evidence: dict[str, list[tuple[str, dict[str, float], bool]]] = defaultdict(list)
    # split -> (dataset, blocked by other reasons, extraction's evidence per field, any field wrong)
    documents: dict[str, list[tuple[str, bool, dict[str, dict[str, float]], bool]]] = defaultdict(list)
    for path, gt in iter_ground_truth(EVAL_DEV):
        if not gt["id"].startswith(tuple(args.only.split(","))):
            continue
        part = split_of(path.stem)
        ingested, pages, results = ocr_cached(ctx, path, gt, args.cache)
        truth = true_type(gt)
        auto, status, reasons = route(ctx, ingested, results, "auto")
        found = auto.doc_type if auto else "none"
        detection[part][(truth, found)] += 1
        line = f"{part:6} {gt['id'][:44]:44} {truth:8} auto={found:12} {status.value:12}"
        if truth == "receipt" and field_truth(gt):
            extraction, status, reasons = route(ctx, ingested, results, "receipt", pages)
            tally = receipts[(part, dataset(gt))]
            wrong, missing = [], []
            for name, want in field_truth(gt).items():
                field = extraction.fields.get(name)
                got = normalize_field(name, field.value) if field else None
                ok = same_field(gt, got, want)
                if got is None:
                    missing.append(name)
                tally[f"{name}_seen"] += 1
                tally[f"{name}_right"] += ok
                if not ok:
                    wrong.append(name)
            accepted = status.value == "accepted"
            tally.update(docs=1, accepted=accepted, escaped=accepted and bool(wrong), all_right=not wrong)
            blocking = {r.code for r in reasons if r.code not in ("low_confidence", "repaired")}
            # The OCR-based confidence as extraction made it: what the schema's thresholds were set on.
            extracted = extract(results, ctx.doctypes["receipt"]).fields
            confidences = {f: extracted[f].confidence for f in FIELDS if f in extracted}
            seen = {
                name: field.evidence.factors
                for name, field in extracted.items()
                if field.evidence is not None and field.value not in (None, "")
            }
            for name, factors in seen.items():  # the second reading is made where fields are weighed
                weighed = extraction.fields[name].evidence
                if weighed is not None and "second_reading" in weighed.factors:
                    factors["second_reading"] = weighed.factors["second_reading"]
            for name in field_truth(gt):
                if name in seen and name not in missing:
                    own_evidence[part].append((name, seen[name], name not in wrong))
            calibration[part].append((dataset(gt), bool(blocking), confidences, bool(wrong)))
            documents[part].append((dataset(gt), bool(blocking), seen, bool(wrong)))
            line += f" receipt:{status.value} wrong={wrong}"
        elif truth == "passport":
            extraction, status, reasons = route(ctx, ingested, results, "passport")
            tally = passports[part]
            tally.update(docs=1, accepted=status.value == "accepted")
            tally["repaired"] += any(r.code == "repaired" for r in reasons)
            tally["code_invalid"] += any(
                r.code == "invalid_component" and (r.field or "").startswith("mrz_line") for r in reasons
            )
            line += f" passport:{status.value} {sorted({f'{r.code}:{r.field}' for r in reasons})}"
        if args.show:
            print(line, flush=True)

    print("\n## Type detection (--doc-type auto)\n")
    print("| half | type | precision | recall |")
    print("|---|---|---|---|")
    for part in (*SPLITS, "both"):
        pairs: Counter[tuple[str, str]] = Counter()
        for p in SPLITS if part == "both" else (part,):
            pairs.update(detection[p])
        for kind in ("receipt", "passport", "generic"):
            hits = pairs[(kind, kind)]
            called = sum(n for (_, found), n in pairs.items() if found == kind)
            actual = sum(n for (truth, _), n in pairs.items() if truth == kind)
            print(f"| {part} | {kind} | {share(hits, called)} | {share(hits, actual)} |")
        confusions = {f"{t}->{f}": n for (t, f), n in sorted(pairs.items()) if t != f}
        print(f"| {part} | confusions | {confusions} | |")

    print("\n## Receipts (--doc-type receipt)\n")
    print("| half | dataset | docs | accepted | escaped | all four right | " + " | ".join(FIELDS) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(FIELDS))
    for part in (*SPLITS, "both"):
        for name in ("SROIE", "SROIE skewed", "WildReceipt"):
            tally: Counter[str] = Counter()
            for p in SPLITS if part == "both" else (part,):
                tally.update(receipts[(p, name)])
            if not tally["docs"]:
                continue
            accuracy = " | ".join(share(tally[f"{f}_right"], tally[f"{f}_seen"]) for f in FIELDS)
            accepted = share(tally["accepted"], tally["docs"])
            escaped = share(tally["escaped"], tally["accepted"])
            right = share(tally["all_right"], tally["docs"])
            print(f"| {part} | {name} | {tally['docs']} | {accepted} | {escaped} | {right} | {accuracy} |")

    print_calibration(calibration)
    print_own_evidence(own_evidence, documents)

    print("\n## Passports and ID cards (--doc-type passport)\n")
    print("| half | docs | accepted | a code repaired | a code invalid |")
    print("|---|---|---|---|---|")
    for part in (*SPLITS, "both"):
        tally = Counter()
        for p in SPLITS if part == "both" else (part,):
            tally.update(passports[p])
        print(
            f"| {part} | {tally['docs']} | {share(tally['accepted'], tally['docs'])} | "
            f"{tally['repaired']} | {tally['code_invalid']} |"
        )


GRID = [round(0.90 + 0.005 * k, 3) for k in range(19)]


def _routed(docs, thresholds: dict[str, float]) -> tuple[int, int, int]:
    """(documents, accepted, accepted with a wrong field) under per-field confidence thresholds."""
    accepted = escaped = 0
    for _, blocked, confidences, wrong in docs:
        if blocked or any(confidences.get(f, 0.0) < t for f, t in thresholds.items()):
            continue
        accepted += 1
        escaped += wrong
    return len(docs), accepted, escaped


def _fit(docs) -> dict[str, float]:
    """The company and address thresholds that accept the most of ``docs`` with no escaped error."""
    best = None
    for company in GRID:
        for address in GRID:
            thresholds = {"company": company, "address": address, "date": 0.9, "total": 0.9}
            _, accepted, escaped = _routed(docs, thresholds)
            key = (escaped == 0, accepted, company + address)
            if best is None or key > best[0]:
                best = (key, thresholds)
    return best[1]


def print_calibration(calibration) -> None:
    """Confidence thresholds for company and address fitted on one half, applied to the other.

    The fit: the thresholds (0.90 to 0.99 in steps of 0.005, date and total at the run's 0.9)
    that accept the most receipts of the fitting half with no escaped error; ties go to the
    higher thresholds. WildReceipt and SROIE are fitted together, as a deployment would be.
    Fitted on tune and applied to report, then the other way round (the cross-check).
    """
    schema = {"company": 0.97, "address": 0.98, "date": 0.9, "total": 0.9}
    print("\n## Receipt routing: thresholds fitted on one half, applied to the other\n")
    print("| fitted on | applied to | dataset | thresholds | docs | accepted | escaped |")
    print("|---|---|---|---|---|---|---|")
    for fitted_on, applied_to in (("tune", "report"), ("report", "tune")):
        thresholds = _fit(calibration[fitted_on])
        label = f"fitted: company {thresholds['company']}, address {thresholds['address']}"
        for part in (fitted_on, applied_to):
            for name in ("SROIE", "WildReceipt", "SROIE skewed"):
                subset = [d for d in calibration[part] if d[0] == name]
                if not subset:
                    continue
                for shown, chosen in (("schema 0.97, 0.98", schema), (label, thresholds)):
                    n, accepted, escaped = _routed(subset, chosen)
                    shares = f"{share(accepted, n)} | {share(escaped, accepted)}"
                    print(f"| {fitted_on} | {part} | {name} | {shown} | {n} | {shares} |")


SWEEP = (0.9, 0.85, 0.8, 0.7)
"""Calibrated-confidence thresholds routed with: the run's 0.9, and lower ones to show what they cost."""
KINDS = {
    "company": "receipt_name",
    "date": "receipt_date",
    "address": "receipt_address",
    "total": "receipt_total",
}
EVIDENCE_VALUES = {
    "ocr_band": (0.0, 0.5, 1.0),
    "plain": (0.0, 1.0),
    "marked": (0.0, 0.5, 1.0),
    "closed": (0.0, 0.5, 1.0),
    "paid": (0.0, 1.0),
    "second_reading": (0.0, 1.0),
}


def observed(factors: dict[str, float]) -> dict[str, float]:
    """What extraction saw, with the OCR score's band (as ``weigh_own_field`` weighs it)."""
    return (
        {**factors, "ocr_band": ocr_band(factors["ocr_score"])} if "ocr_score" in factors else dict(factors)
    )


def fit_own(samples) -> tuple[dict, dict, dict]:
    """Prior share of wrong values and likelihood ratios per field kind, from ``(field, factors, right)``.

    Half a count is added to every cell, so an evidence value never seen with a wrong value
    (or a right one) is strong evidence, never proof.
    """
    counts: Counter = Counter()
    for field, factors, right in samples:
        counts[(field, right)] += 1
        for evidence, value in observed(factors).items():
            if evidence in EVIDENCE_VALUES:
                counts[(field, evidence, value, right)] += 1
    prior, ratios = {}, {}
    for field, kind in KINDS.items():
        wrong, right = counts[(field, False)], counts[(field, True)]
        prior[kind] = round((wrong + 0.5) / (wrong + right + 1), 3)
        ratios[kind] = {}
        for evidence, values in EVIDENCE_VALUES.items():
            if not any(counts[(field, evidence, v, r)] for v in values for r in (True, False)):
                continue
            k = len(values)
            ratios[kind][evidence] = {
                v: round(
                    ((counts[(field, evidence, v, False)] + 0.5) / (wrong + 0.5 * k))
                    / ((counts[(field, evidence, v, True)] + 0.5) / (right + 0.5 * k)),
                    2,
                )
                for v in values
            }
    return prior, ratios, counts


def print_own_evidence(own_evidence, documents) -> None:
    """The embedded engine's receipt evidence: counts per half, ratios fitted on one, routing on the other.

    For each field and piece of evidence (``ocr_band`` from the OCR score, ``plain``, ``marked``,
    ``closed``, ``paid``: what extraction saw), how many wrong and right values showed each
    value of it. ``ocrflow/confidence.py`` (``OWN_PRIOR_WRONG``, ``OWN_RATIO``) holds the ratios
    fitted on the tune half. The cross-check fits them on the report half instead and routes the
    tune half with them. A document is accepted when nothing else blocks it and every field's
    calibrated confidence is at least the run's 0.9.
    """
    fits = {part: fit_own(own_evidence[part]) for part in SPLITS}
    print("\n## The embedded engine's receipt evidence (counts wrong / right per half; ratios fitted)\n")
    print("| field | evidence | value | tune | ratio fitted on tune | report | ratio fitted on report |")
    print("|---|---|---|---|---|---|---|")
    for field, kind in KINDS.items():
        cells = []
        for part in SPLITS:
            prior, ratios, counts = fits[part]
            cells.append((counts, prior[kind], ratios[kind]))
        (tc, tp, _), (rc, rp, _) = cells
        print(
            f"| {field} | prior wrong | | {tc[(field, False)]} / {tc[(field, True)]} | {tp} "
            f"| {rc[(field, False)]} / {rc[(field, True)]} | {rp} |"
        )
        for evidence, values in EVIDENCE_VALUES.items():
            if evidence not in cells[0][2] and evidence not in cells[1][2]:
                continue
            for v in values:
                t = f"{tc[(field, evidence, v, False)]} / {tc[(field, evidence, v, True)]}"
                r = f"{rc[(field, evidence, v, False)]} / {rc[(field, evidence, v, True)]}"
                tr = cells[0][2].get(evidence, {}).get(v, "-")
                rr = cells[1][2].get(evidence, {}).get(v, "-")
                print(f"| {field} | {evidence} | {v} | {t} | {tr} | {r} | {rr} |")
    print("\n## Receipt routing by calibrated confidence (every field at least the threshold)\n")
    print("| ratios fitted on | routed | threshold | dataset | docs | accepted | escaped | all four right |")
    print("|---|---|---|---|---|---|---|---|")
    for fitted_on, routed in (("tune", "tune"), ("tune", "report"), ("report", "report"), ("report", "tune")):
        prior, ratios, _ = fits[fitted_on]
        for threshold in SWEEP:
            for name in ("SROIE", "SROIE skewed", "WildReceipt"):
                docs = [d for d in documents[routed] if d[0] == name]
                if not docs:
                    continue
                accepted = escaped = right = 0
                for _, blocked, seen, wrong in docs:
                    right += not wrong
                    sure = all(
                        f in seen and own_confidence(KINDS[f], observed(seen[f]), prior, ratios) >= threshold
                        for f in FIELDS
                    )
                    if sure and not blocked:
                        accepted += 1
                        escaped += wrong
                print(
                    f"| {fitted_on} | {routed} | {threshold} | {name} | {len(docs)} "
                    f"| {share(accepted, len(docs))} "
                    f"| {share(escaped, accepted)} | {share(right, len(docs))} |"
                )


if __name__ == "__main__":
    main()
