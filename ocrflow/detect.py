"""Which document type a page is, from field and layout evidence as well as keywords.

Keywords alone typed contracts, book pages and forms as receipts: ``TOTAL``, ``RM`` or
``INVOICE`` turn up in any text. Here every type is tried: its fields are extracted and
validated, and the type is scored by

- field evidence: the share of its required fields found with a value that passes the
  type's own checks (format, checksum, cross-field rules), where a check that passes on a
  number (an MRZ's check digits, a card's Luhn digit) counts as strong evidence;
- layout evidence: a type's schema may say what its pages look like
  (``x-ocrflow.detect_layout``, a minimum per measure of :func:`ocrflow.generic.layout_measures`):
  a receipt has amounts on a good share of its rows, which running prose and most forms
  do not; below the minimum the type gets proportionally less credit;
- keywords: the share of the type's ``detect`` words found, as a tie-breaker and a
  small bonus, never enough on their own.

A page whose best type scores below :data:`MIN_SCORE` matches no type well: it is a
generic document (see :mod:`ocrflow.generic`). The thresholds were chosen on the tune
half of eval-dev (``bench/quality_eval.py``) and are reported on the other half.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ocrflow.doctypes import DocType
from ocrflow.extract import extract, keyword_share
from ocrflow.generic import layout_measures
from ocrflow.layout import rows
from ocrflow.models import OcrResult, Reason, Stage
from ocrflow.validate import validate

MIN_SCORE = 0.5
"""Best score below which a page matches no type well (generic)."""
MARGIN = 0.15
"""Score by which the best type must beat the second, else the page is ambiguous."""
_FAILED = frozenset({"invalid_format", "invalid_checksum", "invalid_component", "schema", "inconsistent"})


@dataclass(frozen=True)
class TypeScore:
    name: str
    fields: float
    layout: float
    keywords: float

    @property
    def score(self) -> float:
        return self.fields * self.layout * (0.75 + 0.25 * self.keywords)


def score_types(results: Sequence[OcrResult], types: dict[str, DocType]) -> list[TypeScore]:
    """Every type's evidence on these pages, best first."""
    rows_ = rows(results)
    measures = layout_measures(rows_)
    text = "\n".join(r.text for r in results)
    scores = []
    for name, doctype in types.items():
        extraction = validate(extract(results, doctype), doctype)
        required = doctype.schema.get("required") or list(doctype.fields)
        credit = 0.0
        for field_name in required:
            field = extraction.fields.get(field_name)
            if field is None or field.value in (None, ""):
                continue
            codes = {error.code for error in field.errors}
            credit += 0.5 if codes & _FAILED else 1.0
        fields = credit / len(required) if required else 0.0
        layout = 1.0
        for measure, minimum in doctype.hints.get("detect_layout", {}).items():
            layout *= min(1.0, measures[measure] / minimum) if minimum > 0 else 1.0
        scores.append(TypeScore(name, fields, layout, keyword_share(text, doctype)))
    return sorted(scores, key=lambda s: s.score, reverse=True)


def detect_doctype(
    results: Sequence[OcrResult], types: dict[str, DocType]
) -> tuple[str | None, Reason | None]:
    """The best-supported type, or ``None`` with a reason when no type or two fit."""
    ranked = score_types(results, types)
    if not ranked or ranked[0].score < MIN_SCORE:
        best = f" (closest: {ranked[0].name}, {ranked[0].score:.2f})" if ranked else ""
        return None, Reason(
            stage=Stage.EXTRACT,
            code="unknown_doc_type",
            message=f"the page matches no document type well{best}; it is kept as a generic document",
        )
    if len(ranked) > 1 and ranked[0].score - ranked[1].score < MARGIN:
        return None, Reason(
            stage=Stage.EXTRACT,
            code="ambiguous_doc_type",
            message=(
                f"the document looks like a {ranked[0].name} or a {ranked[1].name}; choose its type in review"
            ),
        )
    return ranked[0].name, None
