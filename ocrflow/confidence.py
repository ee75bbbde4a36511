"""Field confidence from evidence: the one place it is gathered and combined, for every engine.

:func:`weigh_fields` gathers the evidence for each field of a document; the rest combines it.
A field's confidence is the chance its value is right given what vouches for it. For an API
engine's field it starts from the odds that a model's value is wrong: :data:`PRIOR_WRONG`, or,
when the endpoint returned token log probabilities, the model's own probability of the value as
it wrote it (:mod:`ocrflow.logprobs`). It then multiplies in a likelihood ratio,
P(evidence | wrong value) / P(evidence | right value), for each piece of evidence:

- **grounding** (:mod:`ocrflow.verify`): the value is printed on the page as an independent
  reading saw it (``grounded``), nearly (``near``), or not at all (``not_found``), by whether
  that reader's own score there was high (:data:`SURE_READER`);
- **agreement**: the embedded extractor, run on the independent reading, found the same value
  for the field, another one, or none;
- **checks**: a passed checksum (ID card, bank card, IBAN, MRZ check digits) is strong; a
  passed pattern or format is weak.

``confidence = 1 / (1 + odds)``. The ratios were measured, not guessed: on the tune half of
eval-dev (``bench/quality_eval.py split_of``) with the error-injection harness
(``bench/grounding_harness.py --calibrate``), as the share of injected errors and of clean
values that showed each piece of evidence; ``bench/RESULTS-grounding.md`` has the counts. A
checksum's ratio is the share of random one-digit errors a check digit lets through.

The embedded engine's reading is the only one, so its fields are weighed by what extraction saw
(:attr:`ocrflow.extract.Candidate.evidence`): the OCR score's band (:func:`ocr_band`), a trace of
a misread (``plain``), a name marked by a legal-form word or registration number (``marked``), an
address ending cleanly at its postcode (``closed``), a total confirmed by tendered minus change
(``paid``). For the fields measured (a receipt's name, address, date and total, whose schema hint
``calibration`` names their table, :func:`own_kind`) the confidence starts from the table's share
of wrong values and multiplies in each ratio, both fitted on the tune half (:data:`OWN_PRIOR_WRONG`,
:data:`OWN_RATIO`); other fields keep the confidence extraction gave them (the OCR scores of
their lines, lowered where it guessed). A second reading by the same engine (the page at another
scale) was measured and is not used: what the engine misreads at one scale it mostly misreads at
another (``bench/RESULTS-quality.md``). A second, different recogniser is (``reread``,
:mod:`ocrflow.engines.second`, ``verify.second_reading``): PP-OCRv4 reads an address's lines
again, and whether it spells the value the same (``second_reading``) is one more ratio; for an
API engine's text value that the independent reader read only nearly, the same second reading
spelling the model's value there grounds it. The values are grounded in the engine's own reading too,
which locates them (``boxes``) and records whether the page prints the value as extracted;
measured, lowering the confidence of those it does not (values joined from several rows) cost
half the accepted receipts and caught no error, so it does not count.

Each field's :class:`~ocrflow.models.FieldEvidence` records the evidence as ``factors`` (values
in [0, 1]: ``prior``, ``logprob``, ``grounding``, ``reader_score``, ``agreement``, ``checksum``,
``pattern``, ``ocr_score``, ``ocr_band``, ``plain``, ``marked``, ``closed``, ``paid``,
``second_reading``), so a
reviewer and a calibration can see why; ``reader_char_score`` (how sure the reader was of its
characters where a near reading differs) is recorded beside them, not weighed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace

from ocrflow.checks import FORMAT_CHECKS
from ocrflow.doctypes import DocType, FieldSpec
from ocrflow.extract import answered_by, extract, printed_label, reads_as_address
from ocrflow.layout import Line, rows
from ocrflow.logprobs import value_probability
from ocrflow.masking import mask_value
from ocrflow.models import (
    Extraction,
    FieldBox,
    FieldError,
    FieldEvidence,
    FieldResult,
    Grounding,
    OcrLine,
    OcrResult,
    OcrTask,
)
from ocrflow.normalize import NORMALIZERS
from ocrflow.verify import (
    NOT_FOUND,
    READINGS_DISAGREE,
    TEXT,
    UNGROUNDED,
    Match,
    ground,
    kind_of,
    second_agreement,
)

Reread = Callable[[Sequence[FieldBox]], Sequence[OcrLine]]
"""A second recogniser reading the given lines of a page again (:mod:`ocrflow.engines.second`)."""

PRIOR_WRONG = 0.10
"""The share of a vision-language model's field values taken to be wrong before any evidence.
Not measurable here (no model): the issue's simulated model was wrong on a third of receipts,
about one field in ten."""
SURE_READER = 0.9
"""An independent reader's score at or above which its reading there counts as sure."""
GROUNDING_RATIO: dict[tuple[bool, Grounding], float] = {
    (True, Grounding.GROUNDED): 0.1,
    (True, Grounding.NEAR): 3.7,
    (True, Grounding.NOT_FOUND): 20.0,
    (False, Grounding.GROUNDED): 0.22,
    (False, Grounding.NEAR): 150.0,
    (False, Grounding.NOT_FOUND): 5.0,
}
"""P(outcome | wrong) / P(outcome | right) for text (True) and for numbers, dates and codes
(False), measured on the tune half (bench/RESULTS-grounding.md). Text, wrong / right values:
grounded 6 of 74 / 346 of 410, near 43 / 64, not found 25 / 0; values: grounded 25 of 118 /
430 of 440, near 82 / 2, not found 11 / 8."""
UNSURE_NEAR_RATIO = 0.6
"""A near reading by an unsure reader (score below :data:`SURE_READER`) is its own misread as often
as the model's: 4 of 192 wrong values, 30 of 850 right ones, on the first calibration run."""
AGREEMENT_RATIO: dict[tuple[bool, bool | None], float] = {
    (True, True): 0.02,
    (True, False): 2.2,
    (True, None): 1.3,
    (False, True): 0.012,
    (False, False): 57.0,
    (False, None): 0.8,
}
"""The independent extraction found the same value (True), another (False), none (None), for text
and for values. Text: 0 of 74 wrong / 207 of 410 right agree, 66 / 168 disagree, 8 / 35 none;
values: 1 of 118 / 318 of 440 agree, 92 / 6 disagree, 25 / 116 none."""
CHECKSUM_RATIO = 0.1
"""A check digit lets about one random one-digit error in ten through."""
PATTERN_RATIO = 0.9
"""Most wrong values still fit the field's pattern or format."""
_ODDS_RANGE = (1e-4, 1e4)

OCR_BANDS = (0.985, 0.95)
"""Where an embedded engine's line score is high, middling or low (:func:`ocr_band`)."""
OWN_PRIOR_WRONG: dict[str, float] = {
    "receipt_name": 0.337,
    "receipt_address": 0.527,
    "receipt_date": 0.014,
    "receipt_total": 0.037,
}
"""The share of the embedded engine's receipt values that are wrong, per table (a field's schema
hint ``calibration`` names its table), before evidence:
on the tune half's 42 receipts (SROIE, its skewed scans and WildReceipt together, as a
deployment meets them), with half a count added. Names 14 wrong of 42, addresses 19 of 36,
dates 0 of 36, totals 1 of 39 (``bench/quality_eval.py``, RESULTS-quality.md; refitted on the
rows along baselines, ``0424b2c``, and the address and total rules of ``55759b2``)."""
OWN_RATIO: dict[str, dict[str, dict[float, float]]] = {
    "receipt_name": {
        "ocr_band": {0.0: 1.9, 0.5: 2.45, 1.0: 0.74},
        "plain": {0.0: 1.93, 1.0: 0.95},
        "marked": {0.0: 1.24, 0.5: 2.99, 1.0: 0.33},
    },
    "receipt_address": {
        "ocr_band": {0.0: 4.51, 0.5: 1.89, 1.0: 0.12},
        "plain": {0.0: 4.5, 1.0: 0.9},
        "closed": {0.0: 1.1, 0.5: 1.5, 1.0: 0.9},
        "second_reading": {0.0: 3.42, 1.0: 0.61},
    },
    "receipt_date": {"ocr_band": {0.0: 3.57, 0.5: 0.93, 1.0: 0.61}},
    "receipt_total": {"ocr_band": {0.0: 1.22, 0.5: 0.83, 1.0: 1.01}, "paid": {0.0: 1.43, 1.0: 0.53}},
}
"""P(evidence | wrong) / P(evidence | right) for the embedded engine's receipt values, fitted on
the same tune receipts with half a count in every cell (``bench/quality_eval.py``, which prints
the counts of both halves). Measured, not assumed: a total's OCR score says nothing (the one wrong
total was read at 0.985+), a confirming payment does; an address read at 0.95-0.985 is wrong
11 times in 16. ``second_reading`` was fitted later (2026-12-02 d, on the rows of ``0424b2c``):
an address the second recogniser spells otherwise was wrong 9 times in 11, one it spells the same
10 times in 25 (the wrong lines, or a label that differs from the print, which no reading catches)."""


SECOND_READ = frozenset({"receipt_address"})
"""The calibration tables whose values a second recogniser reads again (``second_reading``: 1.0
it spells the value the same, :func:`~ocrflow.verify.second_agreement`). Only addresses: on the
tune half it agreed with every date and total, right or wrong, and with names as often when
they were wrong as when right (16 of 18 wrong, 22 of 24 right: most wrong names are the wrong
line, not a misread), so it would cost CPU and tell nothing (``bench/second_reading.py``)."""


def odds_of(confidence: float) -> float:
    confidence = min(max(confidence, 1e-6), 1 - 1e-6)
    return (1 - confidence) / confidence


def from_odds(odds: float) -> float:
    return round(1 / (1 + min(max(odds, _ODDS_RANGE[0]), _ODDS_RANGE[1])), 4)


def checks_passed(value: object, spec: FieldSpec | None) -> dict[str, float]:
    """``checksum`` and/or ``pattern`` evidence for a value that passes its schema's checks."""
    if spec is None or not isinstance(value, str):
        return {}
    passed = {}
    check = FORMAT_CHECKS.get(spec.format or "")
    if check is not None and check.is_valid(value):
        passed["checksum"] = 1.0
    pattern = spec.schema.get("pattern")
    if (pattern and re.search(pattern, value)) or (spec.format and check is None):
        passed["pattern"] = 1.0
    return passed


def weigh_api_field(
    evidence: FieldEvidence,
    checks: dict[str, float],
    agreement: bool | None,
    logprob: float | None = None,
    *,
    text: bool = False,
    char_score: float | None = None,
) -> tuple[float, FieldEvidence]:
    """An API engine's field: its confidence and its evidence with the factors that made it.

    ``logprob`` is the model's own probability of the value's tokens, when it gave them; it
    replaces the prior. An ``unverified`` field has no grounding or agreement to weigh. ``text``:
    the value is compared as text (names, addresses), whose evidence weighs differently.
    ``char_score``: for a near reading, the reader's highest score among the characters it read
    where the two differ, recorded as ``reader_char_score`` but not weighed: measured on the
    tune half, RapidOCR is as sure of its own misreads there as of the characters it reads
    where a model erred (bench/RESULTS-grounding.md), so it tells neither apart.
    """
    factors: dict[str, float] = {"prior": 1 - PRIOR_WRONG}
    odds = PRIOR_WRONG / (1 - PRIOR_WRONG)
    if logprob is not None:
        factors["logprob"] = round(logprob, 4)
        odds = odds_of(logprob)
    if evidence.outcome is not Grounding.UNVERIFIED:
        score = evidence.reader_score if evidence.reader_score is not None else 0.0
        factors["grounding"] = {Grounding.GROUNDED: 1.0, Grounding.NEAR: 0.5}.get(evidence.outcome, 0.0)
        if evidence.reader_score is not None:
            factors["reader_score"] = round(evidence.reader_score, 4)
        if char_score is not None:
            factors["reader_char_score"] = round(char_score, 4)
        if agreement is not None:
            factors["agreement"] = 1.0 if agreement else 0.0
        if evidence.outcome is Grounding.NEAR and score < SURE_READER:
            odds *= UNSURE_NEAR_RATIO
        else:
            odds *= GROUNDING_RATIO[(text, evidence.outcome)]
        odds *= AGREEMENT_RATIO[(text, agreement)]
    if "checksum" in checks:
        odds *= CHECKSUM_RATIO
    if "pattern" in checks:
        odds *= PATTERN_RATIO
    factors.update(checks)
    return from_odds(odds), evidence.model_copy(update={"factors": factors})


def own_kind(spec: FieldSpec | None) -> str | None:
    """The calibration table of an embedded engine's field (schema hint ``calibration``), or ``None``."""
    kind = spec.hints.get("calibration") if spec is not None else None
    return kind if kind in OWN_PRIOR_WRONG else None


def _weighs_second_reading(spec: FieldSpec | None) -> bool:
    return own_kind(spec) in SECOND_READ


def ocr_band(score: float) -> float:
    """An OCR score in three bands: 1.0 from :data:`OCR_BANDS`' first bound, 0.5 from its second, else 0."""
    high, middle = OCR_BANDS
    return 1.0 if score >= high else 0.5 if score >= middle else 0.0


def weigh_own_field(
    confidence: float, evidence: FieldEvidence, seen: dict[str, float] | None = None, kind: str | None = None
) -> tuple[float, FieldEvidence]:
    """The embedded engine's field: its confidence from the evidence its extraction saw.

    ``seen`` is what the locator recorded (``ocr_score``, ``plain``, ``marked``, ``closed``,
    ``paid``: :attr:`ocrflow.extract.Candidate.evidence`). A field with a calibration table ``kind``
    (:func:`own_kind`) starts from that kind's measured share of wrong values and multiplies
    in each piece of evidence's measured ratio; any other keeps its OCR-based confidence, as
    extraction made it.
    """
    grounding = 1.0 if evidence.outcome is Grounding.GROUNDED else 0.0
    if kind not in OWN_PRIOR_WRONG or not seen or "ocr_score" not in seen:
        factors = {"ocr_score": confidence, "grounding": grounding}
        return round(confidence, 4), evidence.model_copy(update={"factors": factors})
    observed = {**seen, "ocr_band": ocr_band(seen["ocr_score"])}
    factors = {"prior": round(1 - OWN_PRIOR_WRONG[kind], 4), **observed, "grounding": grounding}
    return own_confidence(kind, observed), evidence.model_copy(update={"factors": factors})


def own_confidence(
    kind: str,
    observed: dict[str, float],
    prior_wrong: dict[str, float] = OWN_PRIOR_WRONG,
    ratios: dict[str, dict[str, dict[float, float]]] = OWN_RATIO,
) -> float:
    """The chance an embedded engine's value of ``kind`` is right, given the evidence ``observed``.

    The tables are this module's (fitted on the tune half) unless others are given: the bench
    (``bench/quality_eval.py``) passes tables fitted on the report half for the cross-check.
    """
    odds = prior_wrong[kind] / (1 - prior_wrong[kind])
    for name, table in ratios[kind].items():
        if name in observed:
            odds *= table[observed[name]]
    return from_odds(odds)


# --- a document's fields ------------------------------------------------------------------------


def weigh_fields(
    extraction: Extraction,
    doctype: DocType,
    own: Sequence[OcrResult],
    independent: Sequence[OcrResult] | None,
    *,
    from_api: bool,
    reread: Reread | None = None,
) -> Extraction:
    """Every field located, and its confidence made from evidence (:mod:`ocrflow.confidence`).

    ``own`` is the reading the fields were extracted from. An API engine's fields (``from_api``)
    are looked for in ``independent``, another engine's reading of the same pages; without one
    they are ``unverified``. A value that reading does not print (``ungrounded``) or prints
    otherwise (``readings_disagree``) gets that error, naming both readings and the page, and
    the independent value as a candidate. The embedded engine's fields are located in ``own``.
    """
    result = extraction.model_copy(deep=True)
    agreeing, doubted = _independent_values(independent, doctype) if independent else ({}, {})
    mrz = _mrz_lines_evidence(result, doctype, independent) if independent else None
    matches = _groundings(result, doctype, independent) if independent is not None and from_api else {}
    for name, field in result.fields.items():
        spec = doctype.fields.get(name)
        if field.value in (None, "") or not isinstance(field.value, str):
            if from_api and name in agreeing:
                _unanswered(name, field, spec, agreeing[name], _reader(independent))
            continue
        checks = checks_passed(field.value, spec)
        located = ground(field.value, spec, own) if any(r.lines for r in own) else NOT_FOUND
        if located.lines:
            field.boxes = located.boxes
        if not from_api:
            evidence = FieldEvidence(outcome=located.outcome, reader=_reader(own), page=located.page)
            seen = field.evidence.factors if field.evidence else None
            if reread is not None and seen and _weighs_second_reading(spec) and field.boxes and field.raw:
                second = " ".join(line.text for line in reread(field.boxes))
                seen = {**seen, "second_reading": second_agreement(field.raw, second)}
                evidence.reading = second
            field.confidence, field.evidence = weigh_own_field(
                field.confidence, evidence, seen, own_kind(spec)
            )
            continue
        if independent is None:
            evidence = FieldEvidence(outcome=Grounding.UNVERIFIED)
            logprob = _model_probability(own, name, spec, field)
            field.confidence, field.evidence = weigh_api_field(evidence, checks, None, logprob)
            continue
        covered = spec is not None and spec.locate == "mrz" and spec.format != "mrz-line"
        match = mrz if covered and mrz is not None else matches[name]
        if spec is not None and spec.locate == "address" and match.outcome is Grounding.GROUNDED:
            elsewhere = {line for key, m in matches.items() if key != name for line in m.lines}
            match = _block_goes_on(field.value, match, spec, independent, elsewhere)
        other = agreeing.get(name)
        if other == field.value and match.outcome is Grounding.NEAR:
            # The embedded extractor read exactly this value from the reading: the page prints it.
            match = replace(match, outcome=Grounding.GROUNDED, differs_at=(), distance=0)
        if reread is not None and match.outcome is Grounding.NEAR and not covered and kind_of(spec) == TEXT:
            match = _read_again(field.value, spec, match, reread)
        evidence = FieldEvidence(
            outcome=match.outcome,
            reader=_reader(independent),
            reading=match.reading,
            differs_at=list(match.differs_at) if not covered else [],
            page=match.page,
            boxes=match.boxes,
            reader_score=match.score,
        )
        agreement = None if other is None or covered else other == field.value
        logprob = _model_probability(own, name, spec, field)
        char_score = _differing_char_score(match) if not covered else None
        field.confidence, field.evidence = weigh_api_field(
            evidence, checks, agreement, logprob, text=kind_of(spec) == TEXT, char_score=char_score
        )
        if match.page is not None:
            field.page = match.page  # a packed request's answer names no page; the reading does
            field.boxes = field.boxes or match.boxes
        _disagreement(name, field, spec, match, other, covered)
        if match.outcome is Grounding.GROUNDED and other is None and not covered and kind_of(spec) != TEXT:
            _doubted(name, field, spec, match, doubted.get(name, []), independent)
    return result


def _groundings(
    extraction: Extraction, doctype: DocType, independent: Sequence[OcrResult]
) -> dict[str, Match]:
    """Where the independent reading prints each field's value (:func:`~ocrflow.verify.ground`)."""
    return {
        name: ground(field.value, doctype.fields.get(name), independent)
        for name, field in extraction.fields.items()
        if isinstance(field.value, str) and field.value
    }


def _block_goes_on(
    value: str, match: Match, spec: FieldSpec, independent: Sequence[OcrResult], elsewhere: set[Line]
) -> Match:
    """An address printed whole may still be short of its block: a line of it left out.

    A photo's address is a few short lines, and a value without one of them is printed, whole,
    on the others. So the rows right above and below the value's lines count: one as close as
    the block's own lines (at most half a line's height apart), with a digit (a street number, a
    level, a postcode), that reads as address (:func:`~ocrflow.extract.reads_as_address`) and holds
    no other field's value (the name above it) makes the value ``near``, its first or last
    character marked, with the whole block as the reading. Chosen on the tune half: it caught
    the 3 whole-line drops there and cost 1 of 24 clean receipts (``Store Number 364`` under
    a name, bench/RESULTS-grounding.md); without the digit and the closeness it cost 4.
    """
    rows_ = rows(independent)
    at = [k for k, row in enumerate(rows_) if any(line in match.lines for line in row.lines)]
    if not at:
        return match

    def goes_on(k: int, beside: int) -> bool:
        if not 0 <= k < len(rows_) or rows_[k].page != rows_[beside].page:
            return False
        row, edge = rows_[k], rows_[beside]
        if any(line in elsewhere for line in row.lines):
            return False
        top, bottom = (edge, row) if k > beside else (row, edge)
        gap = min(line.y0 for line in bottom.lines) - max(line.y1 for line in top.lines)
        close = gap <= 0.5 * max(line.height for line in edge.lines)
        return close and any(ch.isdigit() for ch in row.text) and reads_as_address(spec, row)

    above, below = goes_on(at[0] - 1, at[0]), goes_on(at[-1] + 1, at[-1])
    if not (above or below) or match.reading is None:
        return match
    value_ends = ((0,) if above else ()) + ((len(value) - 1,) if below else ())
    block = [rows_[at[0] - 1].text] if above else []
    block += [match.reading, *([rows_[at[-1] + 1].text] if below else [])]
    return replace(match, outcome=Grounding.NEAR, reading=" ".join(block), differs_at=value_ends, distance=1)


def _model_probability(
    own: Sequence[OcrResult], name: str, spec: FieldSpec | None, field: FieldResult
) -> float | None:
    """The model's own probability of the value as it wrote it, where its answer carried log probabilities.

    Looked up in the answer the value came from (:func:`~ocrflow.extract.answered_by`): a
    document read in several requests has several answers, each with its own probabilities.
    """
    if spec is None or not field.raw:
        return None
    answer = answered_by([result for result in own if result.key_values], name, spec)
    return value_probability(answer[0], field.raw, key=answer[1]) if answer else None


def _differing_char_score(match: Match) -> float | None:
    """The reader's highest score among its characters where a near reading differs, if it scored each."""
    scores = match.differing_scores
    if match.outcome is not Grounding.NEAR or not scores or any(s is None for s in scores):
        return None
    return max(s for s in scores if s is not None)


def _read_again(value: str, spec: FieldSpec | None, match: Match, reread: Reread) -> Match:
    """A text value read nearly so: grounded if a second recogniser reads it there as the model wrote it.

    The independent reader misreads long names and addresses as surely as it reads them right;
    a different model that spells the model's value in the same lines says the misread was the
    reader's. Otherwise the near reading stands.
    """
    lines = reread(match.boxes)
    if not lines:
        return match
    page = match.page or 1
    second = OcrResult(
        engine="local",
        model="second",
        task=OcrTask.ADVANCED_RECOGNITION,
        page_number=page,
        lines=tuple(lines),
    )
    if ground(value, spec, [second]).outcome is Grounding.GROUNDED:
        return replace(match, outcome=Grounding.GROUNDED, differs_at=(), distance=0)
    return match


def _reader(readings: Sequence[OcrResult]) -> str | None:
    return f"{readings[0].engine}:{readings[0].model}" if readings else None


def _independent_values(
    independent: Sequence[OcrResult], doctype: DocType
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """What the embedded extractor makes of the independent reading.

    Its values without doubts, and for the fields it doubts (``ambiguous``: several totals
    printed) every value it considered.
    """
    sure, doubted = {}, {}
    for name, field in extract(independent, doctype).fields.items():
        if not isinstance(field.value, str) or not field.value:
            continue
        if field.errors:
            doubted[name] = [field.value, *(str(c) for c in field.candidates)]
        else:
            sure[name] = field.value
    return sure, doubted


def _doubted(
    name: str,
    field: FieldResult,
    spec: FieldSpec | None,
    match: Match,
    considered: list[str],
    independent: Sequence[OcrResult],
) -> None:
    """A value printed on the page where the embedded extractor, unsure of the field, would not put it.

    It considered other values only (several totals printed; a subtotal given as the total is
    none of them), or it found none and the value is printed after a label the schema names
    as not this field's (``SUBTOTAL``, ``TOTAL GST``).
    """
    title = spec.title if spec is not None else name
    shown = _shown(field.value, spec)
    if considered:
        if field.value not in considered:
            reader = field.evidence.reader if field.evidence else "an independent reading"
            _disagree(field, f"{title}: the model read {shown}", reader, considered[0], spec, "for it")
        return
    excluded = spec.hints.get("exclude", []) if spec is not None else []
    if not excluded or not match.lines:
        return  # no label to look for: the page's rows need not be built
    row = next((r for r in rows(independent) if match.lines[0] in r.lines), None)
    label = printed_label(row.text, excluded) if row is not None else None
    if label is not None:
        where = f"page {match.page}"
        message = f"{title}: the model read {shown}, which the page prints after {label!r} ({where})"
        field.errors.append(FieldError(code=READINGS_DISAGREE, message=message))


def _mrz_lines_evidence(
    extraction: Extraction, doctype: DocType, independent: Sequence[OcrResult]
) -> Match | None:
    """The weakest grounding of the MRZ lines: with their check digits they vouch for what they encode."""
    lines = [
        name
        for name, spec in doctype.fields.items()
        if spec.format == "mrz-line" and isinstance(extraction.fields.get(name, FieldResult()).value, str)
    ]
    if not lines:
        return None
    order = [Grounding.NOT_FOUND, Grounding.NEAR, Grounding.GROUNDED]
    matches = [ground(extraction.fields[name].value, doctype.fields[name], independent) for name in lines]
    return min(matches, key=lambda match: order.index(match.outcome))


def _disagreement(
    name: str, field: FieldResult, spec: FieldSpec | None, match: Match, other: str | None, covered: bool
) -> None:
    """The error and candidate for a value the independent reading does not support.

    A value printed on the page, but not where the embedded extractor finds this field, is
    disagreement too for numbers, dates and codes (a subtotal given as the total); not for
    text, whose many spellings the extractor reads less surely.
    """
    title = spec.title if spec is not None else name
    shown = _shown(field.value, spec)
    reader = field.evidence.reader if field.evidence else "an independent reading"
    if match.outcome is Grounding.GROUNDED:
        if other is not None and other != field.value and not covered and kind_of(spec) != TEXT:
            _disagree(
                field, f"{title}: the model read {shown}", reader, other, spec, f"for it (page {match.page})"
            )
        return
    where = f"page {match.page}" if match.page is not None else "the page"
    if covered:
        message = f"{title}: the machine-readable zone it comes from is not printed as read ({where})"
        field.errors.append(FieldError(code=UNGROUNDED, message=message))
        return
    if match.outcome is Grounding.NEAR and match.reading is not None:
        _disagree(
            field,
            f"{title}: the model read {shown}",
            reader,
            _as_value(match.reading, spec),
            spec,
            f"on {where}",
        )
        return
    message = f"{title}: {shown} is not printed on the page as the independent reading ({reader}) saw it"
    field.errors.append(FieldError(code=UNGROUNDED, message=message))
    if other is not None:
        _offer(field, other)


def _unanswered(
    name: str, field: FieldResult, spec: FieldSpec | None, other: str, reader: str | None
) -> None:
    """A field the model left empty that the independent reading finds: a person decides."""
    title = spec.title if spec is not None else name
    message = (
        f"{title}: the model gave no value; the independent reading ({reader}) has {_shown(other, spec)}"
    )
    field.errors.append(FieldError(code=READINGS_DISAGREE, message=message))
    _offer(field, other)


def _as_value(reading: str, spec: FieldSpec | None) -> str:
    if spec is None or kind_of(spec) != TEXT:
        return reading
    return NORMALIZERS[spec.normalize](reading) or reading


def _shown(value: object, spec: FieldSpec | None) -> str:
    return mask_value(str(value)) if spec is not None and spec.masked_in_views else repr(value)


def _disagree(
    field: FieldResult, model_read: str, reader: str, other: str, spec: FieldSpec | None, where: str
) -> None:
    """Record that the independent reading has ``other`` where the model read the field's value."""
    message = f"{model_read}; the independent reading ({reader}) has {_shown(other, spec)} {where}"
    field.errors.append(FieldError(code=READINGS_DISAGREE, message=message))
    _offer(field, other)


def _offer(field: FieldResult, value: str) -> None:
    if value != field.value and value not in field.candidates:
        field.candidates.append(value)
