"""Scoring the pipeline on documents with ground truth (``*.gt.json`` sidecars as in eval-dev).

Metrics:
- character error rate (edit distance / ground-truth length) of the text, lines put in
  the same reading order on both sides and white space folded (removed for WildReceipt,
  whose transcriptions have none; case folded where the truth is all upper case, as SROIE's);
- per-field exact match after normalisation (dates to ISO, amounts to two decimals,
  names and addresses upper-cased with white space and spaces before punctuation folded);
- MRZ: share of documents whose MRZ passes every ICAO check digit;
- review rate, accept rate and the escaped-error rate: accepted documents with any wrong
  field, over accepted documents with field ground truth. That is the number that matters
  most: an error a person never gets to see.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocrflow import checks
from ocrflow.layout import rows
from ocrflow.models import DocumentResult, OcrLine, OcrResult, OcrTask, Status
from ocrflow.normalize import amount, levenshtein, to_date

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".pdf")

# eval-dev field names -> the receipt schema's; a list value is joined (WildReceipt).
RECEIPT_FIELDS = {
    "company": "company",
    "date": "date",
    "address": "address",
    "total": "total",
    "store_name": "company",
    "store_addr": "address",
}


def iter_ground_truth(root: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``(document, ground truth)`` for every ``*.gt.json`` with a document beside it, sorted."""
    for gt_path in sorted(Path(root).rglob("*.gt.json")):
        stem = gt_path.name[: -len(".gt.json")]
        for suffix in IMAGE_SUFFIXES:
            candidate = gt_path.with_name(stem + suffix)
            if candidate.exists():
                yield candidate, json.loads(gt_path.read_text(encoding="utf-8"))
                break


def doc_type_for(gt: dict[str, Any]) -> str:
    """The schema a ground-truth category is scored against; ``auto`` where only text counts."""
    category = gt.get("category")
    if category == "receipts":
        return "receipt"
    if category == "id_docs":
        return "passport"
    return "auto"


def _fold_text(text: str, drop_spaces: bool) -> str:
    text = re.sub(r"\s+", "" if drop_spaces else " ", text).strip()
    return text


def _in_rows(pages: list[list[tuple[str, list[list[float]]]]]) -> str:
    """Lines grouped into rows top to bottom, left to right: one order for truth and prediction."""
    results = [
        OcrResult(
            engine="-",
            model="-",
            task=OcrTask.TEXT_RECOGNITION,
            page_number=n,
            lines=tuple(OcrLine(text=text, box=box, score=1.0) for text, box in lines),
        )
        for n, lines in enumerate(pages, start=1)
    ]
    return "\n".join(row.text for row in rows(results))


def reading_order_text(result: DocumentResult) -> str:
    return _in_rows([[(line.text, line.box) for line in page.lines] for page in result.pages])


def _box(line: dict[str, Any]) -> list[list[float]] | None:
    if "quad" in line:
        q = line["quad"]
        return [[q[0], q[1]], [q[2], q[3]], [q[4], q[5]], [q[6], q[7]]]
    if "bbox" in line:
        x0, y0, x1, y1 = line["bbox"]
        return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    return None


def gt_text(gt: dict[str, Any]) -> str | None:
    """The ground-truth text, put in the same reading order as predictions where lines have boxes."""
    lines = gt.get("lines") or []
    boxed = [(line["text"], _box(line)) for line in lines if isinstance(line, dict) and _box(line)]
    if boxed and len(boxed) == len(lines):
        return _in_rows([boxed])
    if gt.get("text"):
        return gt["text"]
    return "\n".join(line["text"] if isinstance(line, dict) else line for line in lines) or None


def character_error_rate(result: DocumentResult, gt: dict[str, Any]) -> float | None:
    truth = gt_text(gt)
    if not truth:
        return None
    drop_spaces = str(gt.get("id", "")).startswith("wildreceipt")
    hypothesis = _fold_text(reading_order_text(result), drop_spaces)
    reference = _fold_text(truth, drop_spaces)
    if reference.isupper():
        # SROIE's transcriptions are upper-cased: case is not what they record.
        hypothesis = hypothesis.upper()
    return levenshtein(hypothesis, reference) / max(len(reference), 1)


def normalize_field(name: str, value: Any) -> str | None:
    """The comparison form of a receipt field, applied to truth and prediction alike."""
    if value is None:
        return None
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = str(value)
    if name == "date":
        return to_date(text) or text.strip()
    if name == "total":
        return amount(text) or text.strip()
    text = re.sub(r"\s+", " ", text.upper()).strip()
    return re.sub(r"\s+([.,:;)])", r"\1", re.sub(r"([(])\s+", r"\1", text))


def field_truth(gt: dict[str, Any]) -> dict[str, str]:
    """Receipt field ground truth under the schema's names (first value of each field)."""
    truth: dict[str, str] = {}
    for gt_name, value in (gt.get("fields") or {}).items():
        name = RECEIPT_FIELDS.get(gt_name)
        if name is None or name in truth or value in (None, "", []):
            continue
        if isinstance(value, list) and name in ("date", "total"):
            value = value[0]
        truth[name] = normalize_field(name, value)
    return truth


def same_field(gt: dict[str, Any], found: str | None, expected: str) -> bool:
    """Whether a normalised value matches its truth; spaces ignored where the truth has none (WildReceipt)."""
    if found is None:
        return False
    if str(gt.get("id", "")).startswith("wildreceipt"):
        return _fold_text(found, drop_spaces=True) == _fold_text(expected, drop_spaces=True)
    return found == expected


@dataclass
class DocumentScore:
    document: str
    category: str
    status: Status
    cer: float | None = None
    fields_right: dict[str, bool] = field(default_factory=dict)
    mrz_valid: bool | None = None

    @property
    def any_field_wrong(self) -> bool:
        return not all(self.fields_right.values())


def score_document(result: DocumentResult, gt: dict[str, Any], doc_type: str) -> DocumentScore:
    score = DocumentScore(
        document=Path(result.source).name, category=gt.get("category", "?"), status=result.status
    )
    score.cer = character_error_rate(result, gt)
    if doc_type == "receipt":
        truth = field_truth(gt)
        for name, expected in truth.items():
            found = result.fields.get(name)
            got = normalize_field(name, found.value) if found else None
            score.fields_right[name] = same_field(gt, got, expected)
    if doc_type == "passport":
        lines = [
            result.fields[n].value
            for n in ("mrz_line1", "mrz_line2", "mrz_line3")
            if n in result.fields and result.fields[n].value
        ]
        try:
            score.mrz_valid = bool(lines) and checks.parse_mrz(lines).valid
        except ValueError:
            score.mrz_valid = False
    return score


@dataclass
class Report:
    scores: list[DocumentScore]

    def _share(self, items: list[bool]) -> float | None:
        return sum(items) / len(items) if items else None

    def summary(self) -> dict[str, Any]:
        scored = [s for s in self.scores if s.fields_right]
        accepted = [s for s in scored if s.status is Status.ACCEPTED]
        cers = [s.cer for s in self.scores if s.cer is not None]
        per_field: dict[str, list[bool]] = {}
        for s in scored:
            for name, right in s.fields_right.items():
                per_field.setdefault(name, []).append(right)
        mrz = [s.mrz_valid for s in self.scores if s.mrz_valid is not None]
        return {
            "documents": len(self.scores),
            "cer_mean": sum(cers) / len(cers) if cers else None,
            "field_accuracy": {name: self._share(v) for name, v in sorted(per_field.items())},
            "all_fields_right": self._share([not s.any_field_wrong for s in scored]),
            "mrz_valid": self._share(mrz),
            "mrz_documents": len(mrz),
            "review_rate": self._share([s.status is Status.NEEDS_REVIEW for s in self.scores]),
            "reject_rate": self._share([s.status is Status.REJECTED for s in self.scores]),
            "field_documents": len(scored),
            "accept_rate": self._share([s.status is Status.ACCEPTED for s in scored]),
            "accepted": len(accepted),
            "escaped_error_rate": self._share([s.any_field_wrong for s in accepted]),
            "escaped_errors": sum(s.any_field_wrong for s in accepted),
        }
