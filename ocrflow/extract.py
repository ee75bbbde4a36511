"""Schema-driven extraction: OCR lines in, one :class:`FieldResult` per schema property out.

Nothing here is written per document type. Each property's ``x-ocrflow`` hints name
a locating strategy (``label``, ``pattern``, ``header``, ``address``, ``total``,
``mrz``), the label words, a pattern and a normaliser; see ``schemas/README.md``.
A field's confidence is the OCR score of the text it came from, lowered where the
strategy had to guess (no label, several disagreeing candidates).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from stdnum.exceptions import ValidationError as StdnumValidationError

from ocrflow import checks
from ocrflow.doctypes import DocType, FieldSpec
from ocrflow.layout import Row, rows
from ocrflow.models import Extraction, FieldError, FieldResult, OcrResult, Reason, Stage
from ocrflow.normalize import NORMALIZERS

_SEPARATORS = " \t:：;,.-_|"
_MONEY = re.compile(r"(?<![\d.,])-?\d{1,6}(?:,\d{3})*[.,]\d{2}(?!\d)")


@dataclass(frozen=True)
class Candidate:
    raw: str
    confidence: float
    page: int


def _fold(s: str) -> str:
    return re.sub(r"\s+", "", s).casefold()


def _find_label(text: str, labels: Sequence[str]) -> tuple[str, int] | None:
    """The first label found in ``text`` (longest labels first) and the index after it."""
    folded = text.casefold()
    for label in sorted(labels, key=len, reverse=True):
        at = folded.find(label.casefold())
        if at >= 0:
            return label, at + len(label)
    return None


def _match(spec: FieldSpec, text: str) -> str | None:
    if not spec.pattern:
        stripped = text.strip(_SEPARATORS)
        return stripped or None
    m = re.search(spec.pattern, text)
    if not m:
        return None
    return m.groupdict().get("value") or m.group(0)


def _below(rows_: list[Row], index: int) -> Row | None:
    return rows_[index + 1] if index + 1 < len(rows_) and rows_[index + 1].page == rows_[index].page else None


def _by_label(spec: FieldSpec, rows_: list[Row]) -> list[Candidate]:
    """Value after the label on its line, then further along its row, then on the row below."""
    found: list[Candidate] = []
    for i, row in enumerate(rows_):
        for j, line in enumerate(row.lines):
            hit = _find_label(line.text, spec.labels)
            if not hit:
                continue
            stop = spec.hints.get("stop", [])
            if spec.hints.get("multiline"):
                parts = [line.text[hit[1]:]] + [other.text for other in row.lines[j + 1:]]
                score = min([line.score] + [other.score for other in row.lines[j + 1:]])
                k = i + 1
                while k < len(rows_) and rows_[k].page == row.page and not _find_label(rows_[k].text, stop):
                    parts.append(rows_[k].text)
                    score = min(score, rows_[k].score)
                    k += 1
                joined = "".join(part.strip(_SEPARATORS + " ") for part in parts)
                if value := _match(spec, joined):
                    found.append(Candidate(value, score, row.page))
                continue
            options = [(line.text[hit[1]:], line.score, 1.0)]
            options += [(other.text, min(line.score, other.score), 0.97) for other in row.lines[j + 1:]]
            if below := _below(rows_, i):
                options.append((below.text, min(line.score, below.score), 0.9))
            for raw, score, factor in options:
                if value := _match(spec, raw):
                    found.append(Candidate(value, score * factor, row.page))
                    break
    return found


def _by_pattern(spec: FieldSpec, rows_: list[Row]) -> list[Candidate]:
    found = []
    for row in rows_:
        for line in row.lines:
            for m in re.finditer(spec.pattern or r".+", line.text):
                found.append(Candidate(m.groupdict().get("value") or m.group(0), line.score, row.page))
    return found


def _looks_like_name(text: str) -> bool:
    letters = sum(ch.isalpha() for ch in text)
    return letters >= 3 and letters >= 0.5 * len(text.replace(" ", ""))


def _header_index(spec: FieldSpec, rows_: list[Row]) -> tuple[int, float] | None:
    """The row of the issuer's name among the first rows: a company-suffix keyword wins."""
    top = [(i, row) for i, row in enumerate(rows_[:8]) if row.page == rows_[0].page]
    keywords = [k.casefold() for k in spec.hints.get("keywords", [])]
    for i, row in top:
        if any(k in row.text.casefold() for k in keywords):
            return i, 1.0
    for i, row in top:
        if _looks_like_name(row.text):
            return i, 0.6
    return None


def _by_header(spec: FieldSpec, rows_: list[Row]) -> list[Candidate]:
    found = _header_index(spec, rows_)
    if not found:
        return []
    i, factor = found
    return [Candidate(rows_[i].text, rows_[i].score * factor, rows_[i].page)]


_REGISTRATION = re.compile(r"^\(?[\s\d]{3,}-?[A-Z]?\)?$|\(\d+[-\s]?[A-Z]\)|^\(?(?:CO\.?|COMPANY)?\s*REG", re.I)
_POSTCODE = re.compile(r"\b\d{5}\b")


def _by_address(spec: FieldSpec, rows_: list[Row], company: FieldSpec | None) -> list[Candidate]:
    """The rows under the issuer's name, up to the first stop word (phone, tax number, date)."""
    header = _header_index(company, rows_) if company else None
    start = header[0] + 1 if header else 0
    stop = spec.hints.get("stop", [])
    parts: list[str] = []
    score = 1.0
    for row in rows_[start:start + 7]:
        if row.page != rows_[start].page:
            break
        # The company's registration number often sits between its name and address.
        if not parts and _REGISTRATION.search(row.text):
            continue
        if _find_label(row.text, stop):
            break
        parts.append(row.text)
        score = min(score, row.score)
        if _POSTCODE.search(row.text) and len(parts) >= 2 and re.search(r"[A-Z]{4,}\.?\s*$", row.text, re.I):
            next_row = rows_[rows_.index(row) + 1] if rows_.index(row) + 1 < len(rows_) else None
            if not next_row or _find_label(next_row.text, stop) or not _looks_like_name(next_row.text):
                break
    if not parts:
        return []
    joined = " ".join(parts)
    ends_well = bool(_POSTCODE.search(joined))
    return [Candidate(joined, score * (1.0 if ends_well else 0.7), rows_[start].page)]


def _by_total(spec: FieldSpec, rows_: list[Row]) -> list[Candidate]:
    """The amount of the strongest total label; labels earlier in the list are stronger."""
    exclude = spec.hints.get("exclude", [])
    best: tuple[int, list[Candidate]] | None = None
    for rank, label in enumerate(spec.labels):
        found: list[Candidate] = []
        for i, row in enumerate(rows_):
            for j, line in enumerate(row.lines):
                folded = _fold(line.text)
                if _fold(label) not in folded or any(_fold(x) in folded for x in exclude):
                    continue
                after = line.text[len(line.text) - len(line.text.casefold().split(label.casefold())[-1]):]
                options = [(after, line.score)] + [(o.text, min(line.score, o.score)) for o in row.lines[j + 1:]]
                if below := _below(rows_, i):
                    options.append((below.text, min(line.score, below.score) * 0.9))
                for raw, score in options:
                    if m := _MONEY.search(raw):
                        found.append(Candidate(m.group(0), score, row.page))
                        break
        if found:
            best = (rank, found)
            break
    return best[1] if best else []


def _mrz_lines(rows_: list[Row]) -> list[tuple[str, float]]:
    lines = []
    for row in rows_:
        for line in row.lines:
            compact = re.sub(r"\s", "", line.text.upper()).replace("«", "<")
            if len(compact) >= 28 and re.fullmatch(r"[A-Z0-9<]+", compact) and "<" in compact:
                lines.append((compact, line.score))
    return lines


_MRZ_LENGTHS = (30, 36, 44)


def _fit_mrz_line(text: str) -> str:
    """Pad a line that lost trailing fillers to the nearest MRZ length; never touch its content."""
    for length in _MRZ_LENGTHS:
        if length - 3 <= len(text) < length:
            return text + "<" * (length - len(text))
    return text


def _mrz_date(yymmdd: str, future: bool) -> str | None:
    if not yymmdd.isdigit():
        return None
    yy, month, day = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    this_year = date.today().year % 100
    # Birth dates are in the past; expiry dates within a few decades ahead.
    century = 2000 if (yy <= this_year + (20 if future else 0)) else 1900
    try:
        return date(century + yy, month, day).isoformat()
    except ValueError:
        return None


def _mrz_fields(rows_: list[Row]) -> dict[str, Candidate]:
    """Decode the machine-readable zone: the last two or three MRZ-looking lines."""
    lines = _mrz_lines(rows_)
    if len(lines) < 2:
        return {}
    three = len(lines) >= 3 and all(25 <= len(t) <= 32 for t, _ in lines[-3:])
    zone = lines[-3:] if three else lines[-2:]
    texts = [_fit_mrz_line(t) for t, _ in zone]
    score = min(s for _, s in zone)
    page = rows_[-1].page
    out = {f"line{n}": Candidate(t, score, page) for n, t in enumerate(texts, start=1)}
    try:
        parsed = checks.parse_mrz(texts)
    except StdnumValidationError:
        return out
    decoded = {
        "document_type": parsed.document_type,
        "issuing_country": parsed.issuing_country,
        "document_number": parsed.document_number,
        "nationality": parsed.nationality,
        "surname": parsed.surname,
        "given_names": parsed.given_names,
        "birth_date": _mrz_date(parsed.birth_date, future=False),
        "expiry_date": _mrz_date(parsed.expiry_date, future=True),
        "sex": {"M": "male", "F": "female"}.get(parsed.sex, "unspecified"),
    }
    out.update({name: Candidate(value, score, page) for name, value in decoded.items() if value})
    return out


Locator = Callable[[FieldSpec, list[Row]], list[Candidate]]
_LOCATORS: dict[str, Locator] = {
    "label": _by_label,
    "pattern": _by_pattern,
    "header": _by_header,
    "total": _by_total,
}


def _choose(spec: FieldSpec, candidates: list[Candidate], rows_: list[Row]) -> FieldResult:
    normalize = NORMALIZERS[spec.normalize]
    if not candidates:
        return FieldResult()
    occurrence = int(spec.hints.get("occurrence", 0))
    if occurrence:
        distinct = list({c.raw: c for c in candidates}.values())
        if len(distinct) < occurrence:
            return FieldResult()
        chosen = distinct[occurrence - 1]
        value = normalize(chosen.raw)
        return _result(value, chosen, chosen.confidence)
    if spec.locate == "pattern" and spec.labels:
        labelled = [c for c in candidates if _near_label(c, spec, rows_)]
        candidates = labelled or candidates
    values = [normalize(c.raw) for c in candidates]
    chosen, value = candidates[0], values[0]
    # Disagreeing candidates mean we may have picked the wrong one: ask a person. Unless the
    # schema says later matches are the same thing in another form (a bank's name in two scripts).
    agreeing = {v for v in values if v is not None}
    sure = len(agreeing) <= 1 or spec.hints.get("pick") == "first"
    confidence = chosen.confidence if sure else chosen.confidence * 0.6
    return _result(value, chosen, confidence)


def _near_label(candidate: Candidate, spec: FieldSpec, rows_: list[Row]) -> bool:
    """A label on the candidate's row, or alone on the row above (a label over its value)."""
    for i, row in enumerate(rows_):
        if candidate.raw in row.text:
            above = rows_[i - 1].text if i else ""
            if above and re.search(spec.pattern or r"$^", above):
                above = ""  # the row above has a value of its own; its label is for that one
            return _find_label(f"{row.text} {above}", spec.labels) is not None
    return False


def _result(value: str | None, chosen: Candidate, confidence: float) -> FieldResult:
    errors = []
    if value is None:
        errors.append(FieldError(code="invalid_format", message=f"could not read {chosen.raw!r} as the expected kind of value"))
    return FieldResult(value=value, confidence=round(confidence, 4), raw=chosen.raw, page=chosen.page, errors=errors)


def extract(results: Sequence[OcrResult], doctype: DocType) -> Extraction:
    """Fill every property of ``doctype`` from the OCR lines of all pages."""
    kv_results = [r.key_values for r in results if r.key_values]
    if kv_results:
        return _from_key_values(kv_results, doctype)
    rows_ = rows(results)
    company = next((s for s in doctype.fields.values() if s.locate == "header"), None)
    mrz = _mrz_fields(rows_) if any(s.locate == "mrz" for s in doctype.fields.values()) else {}
    fields: dict[str, FieldResult] = {}
    for name, spec in doctype.fields.items():
        if spec.locate == "mrz":
            candidate = mrz.get(spec.hints.get("mrz_field", name))
            fields[name] = _choose(spec, [candidate] if candidate else [], rows_)
        elif spec.locate == "address":
            fields[name] = _choose(spec, _by_address(spec, rows_, company), rows_)
        else:
            fields[name] = _choose(spec, _LOCATORS[spec.locate](spec, rows_), rows_)
    return Extraction(doc_type=doctype.name, fields=fields)


def _from_key_values(kv_results: list[dict], doctype: DocType) -> Extraction:
    """Map an API engine's key-information output onto the schema's properties."""
    merged: dict[str, object] = {}
    for kv in kv_results:
        merged.update({k: v for k, v in kv.items() if v not in (None, "")})
    fields = {}
    for name, spec in doctype.fields.items():
        keys = [name, spec.title, *spec.labels]
        raw = next((merged[k] for k in keys if k in merged), None)
        if raw is None:
            fields[name] = FieldResult()
            continue
        value = NORMALIZERS[spec.normalize](str(raw))
        fields[name] = _result(value, Candidate(str(raw), 1.0, 1), 1.0)
    return Extraction(doc_type=doctype.name, fields=fields)


def detect_doctype(results: Sequence[OcrResult], types: dict[str, DocType]) -> tuple[str | None, Reason | None]:
    """Pick the type whose ``detect`` keywords the text contains most; ``None`` when unsure."""
    text = _fold("\n".join(r.text for r in results))
    scores = {
        name: sum(_fold(k) in text for k in doctype.detect_keywords) / max(len(doctype.detect_keywords), 1)
        for name, doctype in types.items()
    }
    if _mrz_lines(rows(results)) and "passport" in types:
        scores["passport"] = scores.get("passport", 0) + 0.5
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    if not ranked or ranked[0][1] < 0.15:
        return None, Reason(
            stage=Stage.EXTRACT,
            code="unknown_doc_type",
            message="could not tell what kind of document this is; choose its type in review",
        )
    if len(ranked) > 1 and ranked[1][1] >= ranked[0][1] * 0.9 and ranked[1][1] > 0:
        return None, Reason(
            stage=Stage.EXTRACT,
            code="ambiguous_doc_type",
            message=f"the document looks like a {ranked[0][0]} or a {ranked[1][0]}; choose its type in review",
        )
    return ranked[0][0], None
