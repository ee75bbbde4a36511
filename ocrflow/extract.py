"""Schema-driven extraction: OCR lines in, one :class:`FieldResult` per schema property out.

Nothing here is written per document type. Each property's ``x-ocrflow`` hints name
a locating strategy (``label``, ``pattern``, ``header``, ``address``, ``total``,
``mrz``), the label words, a pattern and a normaliser; see ``schemas/README.md``.
A field's confidence is the OCR score of the text it came from, lowered where the
strategy had to guess (no label, traces of a misread). Candidates that disagree (two
dates, a total the payment does not account for) make the field ``ambiguous``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal

from stdnum.exceptions import ValidationError as StdnumValidationError

from ocrflow import checks, icao
from ocrflow.doctypes import DocType, FieldSpec
from ocrflow.layout import Line, Row, rows
from ocrflow.masking import mask_value
from ocrflow.models import Extraction, FieldError, FieldEvidence, FieldResult, OcrResult
from ocrflow.normalize import NORMALIZERS

_SEPARATORS = " \t:：;,.-_|"
_MONEY = re.compile(r"(?<![\d.,])-?\d{1,6}(?:,\d{3})*[.,]\d{2}(?!\d)")


@dataclass(frozen=True)
class Candidate:
    raw: str
    confidence: float
    page: int | None
    evidence: dict[str, float] = field(default_factory=dict, compare=False)
    """What the locator saw, for :mod:`ocrflow.confidence` to weigh: ``ocr_score`` (the lines'
    lowest score), ``marked`` (a name's legal-form word or registration number 1, trade word
    0.5, none 0), ``closed`` (an address ending cleanly at its postcode 1, a postcode but no
    clean end 0.5, no postcode 0), ``paid`` (a total that tendered minus change confirms),
    ``plain`` (0 when the text has a trace of a misread)."""


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
                parts = [line.text[hit[1] :]] + [other.text for other in row.lines[j + 1 :]]
                score = min([line.score] + [other.score for other in row.lines[j + 1 :]])
                k = i + 1
                while k < len(rows_) and rows_[k].page == row.page and not _find_label(rows_[k].text, stop):
                    parts.append(rows_[k].text)
                    score = min(score, rows_[k].score)
                    k += 1
                joined = "".join(part.strip(_SEPARATORS + " ") for part in parts)
                if value := _match(spec, joined):
                    found.append(Candidate(value, score, row.page))
                continue
            options = [(line.text[hit[1] :], line.score, 1.0)]
            options += [(other.text, min(line.score, other.score), 0.97) for other in row.lines[j + 1 :]]
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
                value = m.groupdict().get("value") or m.group(0)
                found.append(Candidate(value, line.score, row.page, {"ocr_score": line.score}))
    return found


def _looks_like_name(text: str) -> bool:
    letters = sum(ch.isalpha() for ch in text)
    return letters >= 3 and letters >= 0.5 * len(text.replace(" ", ""))


# A company registration number, alone on its row or after "CO. REG NO:": "(519537-X)",
# "789417-W", "COMPANY NO:256628-W". Malaysian receipts print it right under the name.
_REGISTRATION = re.compile(
    r"^[(\[]?\s*(?:(?:CO(?:MPANY)?|REG(?:ISTRATION)?|NO)\.?\s*[:.]?\s*)*"
    r"[A-Z]{0,3}(?=[\dA-Z]{5})\d+[A-Z]?\d+(?:-?\s*[A-Z])?\s*[)\]]?[\s,.]*$",
    re.I,
)
_POSTCODE = re.compile(r"(?<![\w-])\d{5}(?![\w-])")
_TIME_OR_DATE = re.compile(r"\b\d{1,2}:\d{2}\b|\b\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b")
_FIELD_LABEL = re.compile(r"^[A-Z][A-Z .#/()-]*[A-Z]{3}[A-Z .#/()-]*[:：]", re.I)
_WEB = re.compile(r"WWW\.|HTTPS?:|@|\.COM\b|\.MY\b", re.I)
# A telephone number printed alone, without a label: "(714) 879-3574", "480.940.2080".
_BARE_PHONE = re.compile(r"^\+?[\d\s().-]*$")


def _is_registration(text: str) -> bool:
    text = text.strip()
    return bool(_REGISTRATION.match(text)) and not _POSTCODE.fullmatch(text.strip(",."))


def _strip(spec: FieldSpec, text: str) -> str:
    """Remove what the schema's ``strip`` patterns say is printed with the value but not part of it."""
    patterns = spec.hints.get("strip", [])
    previous = None
    while previous != text:
        previous = text
        for pattern in patterns:
            text = re.sub(pattern, "", text, flags=re.I)
    return text


def _suspicion(spec: FieldSpec, text: str) -> float:
    """0.9 when the text has something the schema calls a likely misread in this field, else 1.0.

    A line's OCR score is an average: one wrong letter in a long address barely moves it,
    but often leaves a trace (a stray symbol, a digit inside a word, words run together).
    """
    return 0.9 if any(re.search(p, text) for p in spec.hints.get("suspicious", [])) else 1.0


@dataclass(frozen=True)
class _Header:
    index: int
    mark: float
    """1.0: a legal-form keyword or a registration number marks it; 0.5: a trade keyword; 0.0:
    nothing does, it is only the first name-like row."""
    may_join_above: bool
    """A trade word under another name-like row: the name may be both rows (``BASIL THAI`` /
    ``RESTAURANT & BAR``) or only one of them."""


def _header_index(spec: FieldSpec, rows_: list[Row]) -> _Header | None:
    """The row of the issuer's name among the first rows, and what marks it.

    The first row with evidence wins: a legal-form keyword (``SDN BHD``), a registration
    number on the row below, or a trade keyword (``RESTAURANT``).
    """
    top = [(i, row) for i, row in enumerate(rows_[:8]) if row.page == rows_[0].page]
    legal = [k.casefold() for k in spec.hints.get("keywords", [])]
    trade = [k.casefold() for k in spec.hints.get("weak_keywords", [])]
    never = spec.hints.get("exclude", [])

    def is_name(i: int) -> bool:
        text = rows_[i].text
        return _looks_like_name(text) and not _is_registration(text) and not _find_label(text, never)

    for i, row in top:
        if _POSTCODE.search(row.text):
            break  # the address has begun; the name is above it
        if not is_name(i):
            continue
        folded = row.text.casefold()
        below = rows_[i + 1].text if i + 1 < len(rows_) else ""
        if any(k in folded for k in legal) or _is_registration(below):
            return _Header(i, mark=1.0, may_join_above=False)
        if any(k in folded for k in trade):
            above_is_name = i > 0 and is_name(i - 1) and not any(ch.isdigit() for ch in rows_[i - 1].text)
            return _Header(i, mark=0.5, may_join_above=above_is_name)
    for i, _ in top:
        if is_name(i):
            return _Header(i, mark=0.0, may_join_above=False)
    return None


def _by_header(spec: FieldSpec, rows_: list[Row]) -> list[Candidate]:
    """The issuer's name; a guess without evidence has a low confidence, a two-row doubt two candidates."""
    header = _header_index(spec, rows_)
    if not header:
        return []
    row = rows_[header.index]
    text = _strip(spec, row.text)
    factor = 1.0 if header.mark else 0.6
    found = [
        Candidate(
            text,
            row.score * factor * _suspicion(spec, text),
            row.page,
            _seen(spec, text, row.score, marked=header.mark),
        )
    ]
    if header.may_join_above:
        above = rows_[header.index - 1]
        joined = _strip(spec, f"{above.text} {row.text}")
        score = min(above.score, row.score)
        found.append(
            Candidate(
                joined,
                score * _suspicion(spec, joined),
                row.page,
                _seen(spec, joined, score, marked=header.mark),
            )
        )
    return found


def _seen(spec: FieldSpec, text: str, score: float, **marks: float) -> dict[str, float]:
    """A candidate's evidence (:attr:`Candidate.evidence`): OCR score, whether it reads plainly, marks."""
    return {"ocr_score": round(score, 4), "plain": 1.0 if _suspicion(spec, text) == 1.0 else 0.0, **marks}


def _separates(spec: FieldSpec, row: Row) -> bool:
    """A header row that is not part of an address: phone, tax or registration number, a date, a URL."""
    text = row.text
    return bool(
        _find_label(text, spec.hints.get("stop", []))
        or _is_registration(text)
        or _TIME_OR_DATE.search(text)
        or _FIELD_LABEL.match(text)
        or _WEB.search(text)
        or (_BARE_PHONE.match(text) is not None and sum(ch.isdigit() for ch in text) >= 7)
    )


def _address_before_stop(spec: FieldSpec, row: Row) -> Row | None:
    """The address part of a row that goes on with a phone or tax number, or ``None``.

    ``81750 Johor Bahru, Johor. Tel No.: 07-387 3322``: the text before the stop word, when it
    has a postcode and a place name.
    """
    line = row.lines[0]
    hit = _find_label(line.text, spec.hints.get("stop", []))
    if not hit:
        return None
    start = hit[1] - len(hit[0])
    before = line.text[:start].rstrip(" ,;:")
    if start == 0 or line.text[start - 1].isalnum() or not _POSTCODE.search(before):
        return None
    if not _looks_like_name(_POSTCODE.sub("", before)):
        return None
    # The cut line's box ends about where its text does.
    x1 = line.x0 + (line.x1 - line.x0) * len(before) / len(line.text)
    cut = Line(before, line.score, line.page, line.x0, line.y0, x1, line.y1)
    return Row((cut,))


def _continues_address(row: Row) -> bool:
    """A row after the postcode that still belongs to the address: a state, a country, a district."""
    return _looks_like_name(row.text) and ":" not in row.text and not _MONEY.search(row.text)


def reads_as_address(spec: FieldSpec, row: Row) -> bool:
    """Whether a row reads as (more of) an address.

    A place name or a postcode, with no amount and no phone or tax number; or a row with one
    whose text before its stop word reads so (``Singapore 819642 Tel. 65424709``).
    """
    if _MONEY.search(row.text) or _find_label(row.text, spec.hints.get("end", [])):
        return False
    if not _separates(spec, row):
        return _looks_like_name(row.text) or bool(_POSTCODE.search(row.text))
    folded = row.text.casefold()
    starts = [at for label in spec.hints.get("stop", []) if (at := folded.find(label.casefold())) >= 0]
    if not starts:
        return False
    before = row.text[: min(starts)].rstrip(" ,;:./")  # up to the first stop word (MOBILE /WHATSAPP)
    return _looks_like_name(before) and not (_is_registration(before) or _TIME_OR_DATE.search(before))


def _address_blocks(spec: FieldSpec, rows_: list[Row], start: int) -> list[tuple[list[Row], bool]]:
    """Runs of rows between separators below the issuer's name, each with whether a separator closed it."""
    blocks: list[tuple[list[Row], bool]] = []
    current: list[Row] = []
    window = [row for row in rows_[start : start + 10] if row.page == rows_[start].page]
    for row in window:
        if _find_label(row.text, spec.hints.get("end", [])):
            break
        if _separates(spec, row):
            if before := _address_before_stop(spec, row):
                current.append(before)
            if current:
                blocks.append((current, True))
            current = []
            continue
        current.append(row)
    else:
        # The window ran out: nothing shows where this block ends.
        if current:
            blocks.append((current, False))
        return blocks
    if current:
        blocks.append((current, True))
    return blocks


def _by_address(spec: FieldSpec, rows_: list[Row], company: FieldSpec | None) -> list[Candidate]:
    """The rows under the issuer's name that end in a postcode (and perhaps a state after it).

    Sure only when the block ends cleanly: a separator row (phone, tax number, date) right
    after the postcode row or after one state/country row below it.
    """
    header = _header_index(company, rows_) if company else None
    start = header.index + 1 if header else 0
    if start >= len(rows_):
        return []
    blocks = _address_blocks(spec, rows_, start)
    for block, closed in blocks:
        postcode_rows = [k for k, row in enumerate(block) if _POSTCODE.search(row.text)]
        if not postcode_rows:
            continue
        end = postcode_rows[-1] + 1
        if end < len(block) and _continues_address(block[end]):
            end += 1
        clean = closed and end == len(block)
        text = " ".join(row.text for row in block[:end])
        ocr_score = min(row.score for row in block[:end])
        score = ocr_score * (1.0 if clean else 0.9) * _suspicion(spec, text)
        return [
            Candidate(text, score, block[0].page, _seen(spec, text, ocr_score, closed=1.0 if clean else 0.5))
        ]
    if not blocks:
        return []
    # No postcode: an address without one, or not an address at all.
    block = blocks[0][0]
    text = " ".join(row.text for row in block)
    ocr_score = min(row.score for row in block)
    return [
        Candidate(
            text,
            ocr_score * 0.7 * _suspicion(spec, text),
            block[0].page,
            _seen(spec, text, ocr_score, closed=0.0),
        )
    ]


def _levenshtein_le1(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by at most one inserted, deleted or replaced character."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:k] + long[k + 1 :] == short for k in range(len(long)))


def printed_label(text: str, labels: Sequence[str]) -> str | None:
    """The first of ``labels`` that ``text`` prints as words of its own (case and spaces ignored)."""
    return next((label for label in labels if _label_end(text, label, fuzzy=False) is not None), None)


def _label_end(text: str, label: str, *, fuzzy: bool) -> int | None:
    """The index in ``text`` just after ``label``, or ``None``.

    Case and spaces are ignored. With ``fuzzy``, labels of 5+ characters also match with one
    OCR slip ("TOTSL", "TOTAI"); without it the label must be a word of its own, so "CHANGE"
    is not found in "SERVICE CHARGE" or "EXCHANGE", nor "CASH" in "CASHIER".
    """
    kept = [(i, ch.lower()) for i, ch in enumerate(text) if not ch.isspace()]
    folded = "".join(ch for _, ch in kept)
    target = _fold(label).lower()
    if not fuzzy:
        return _word_end(text, kept, folded, target)
    at = folded.find(target)
    if at >= 0:
        return kept[at + len(target) - 1][0] + 1
    half = len(target) // 2
    # One slip leaves one half of the label intact: a cheap test before the slow one.
    if len(target) < 5 or (target[:half] not in folded and target[half:] not in folded):
        return None
    for size in (len(target), len(target) - 1, len(target) + 1):
        for start in range(0, len(folded) - size + 1):
            if _levenshtein_le1(folded[start : start + size], target):
                return kept[start + size - 1][0] + 1
    return None


def _word_end(text: str, kept: list[tuple[int, str]], folded: str, target: str) -> int | None:
    """Where ``target`` ends in ``text`` at its first match with no letter glued to either side."""
    at = folded.find(target)
    while at >= 0:
        start, end = kept[at][0], kept[at + len(target) - 1][0] + 1
        if not (start > 0 and text[start - 1].isalpha()) and not (end < len(text) and text[end].isalpha()):
            return end
        at = folded.find(target, at + 1)
    return None


def _amounts_after(
    labels: Sequence[str], exclude: Sequence[str], rows_: list[Row], *, fuzzy: bool = False
) -> list[tuple[int, Candidate]]:
    """``(label rank, amount)`` for every line with one of the labels, in reading order."""
    found: list[tuple[int, Candidate]] = []
    for i, row in enumerate(rows_):
        for j, line in enumerate(row.lines):
            if any(_label_end(line.text, x, fuzzy=fuzzy) is not None for x in exclude):
                continue
            for rank, label in enumerate(labels):
                end = _label_end(line.text, label, fuzzy=fuzzy)
                if end is None:
                    continue
                options = [(line.text[end:], line.score)]
                options += [(o.text, min(line.score, o.score)) for o in row.lines[j + 1 :]]
                if below := _below(rows_, i):
                    options.append((below.text, min(line.score, below.score) * 0.9))
                for raw, score in options:
                    if m := _MONEY.search(raw):
                        ocr_score = {"ocr_score": round(min(score, line.score), 4)}
                        found.append((rank, Candidate(m.group(0), score, row.page, ocr_score)))
                        break
                break
    return found


def _by_total(spec: FieldSpec, rows_: list[Row]) -> list[Candidate]:
    """The amount of the strongest total label, checked against what was paid.

    Tendered minus change is the amount paid: a total equal to it is confirmed (and
    preferred over a stronger label's, which may be before rounding); several payments
    confirming different totals are all returned, the strongest label's first. Otherwise the
    disagreeing totals, and a payment the total does not account for, are returned after
    the chosen total as further candidates, which makes the field ``ambiguous``.
    """
    exclude = spec.hints.get("exclude", [])
    change_labels = spec.hints.get("change", [])
    # Only total labels are long and distinctive enough to be found despite a slip.
    totals = _amounts_after(spec.labels, exclude, rows_, fuzzy=True)
    if not totals:
        return []
    paid = [c for _, c in _amounts_after(spec.hints.get("paid", []), [*exclude, *change_labels], rows_)]
    change = [c for _, c in _amounts_after(change_labels, [], rows_)]
    to_amount = NORMALIZERS[spec.normalize]
    paid_values = {to_amount(c.raw) for c in paid} - {None}
    change_values = {to_amount(c.raw) for c in change} - {None}
    nets = {_minus(p, c) for p in paid_values for c in change_values} if change_values else paid_values
    confirmed = [(rank, c) for rank, c in totals if to_amount(c.raw) in nets]
    if confirmed:
        chosen = min(confirmed, key=lambda item: item[0])[1]
        # Two payments confirming two different totals (two receipts in one PDF): which one the
        # document stands for is a person's call.
        others = [c for _, c in confirmed if to_amount(c.raw) != to_amount(chosen.raw)]
        return [replace(chosen, evidence={**chosen.evidence, "paid": 1.0}), *others]
    best = min(rank for rank, _ in totals)
    strongest = [c for rank, c in totals if rank == best]
    chosen = strongest[0]
    amounts = [Decimal(to_amount(c.raw)) for c in strongest]
    if max(amounts) - min(amounts) < Decimal("0.10"):
        chosen = strongest[-1]  # a total and its cash-rounded form: the rounded one is printed last
    # Several totals, or a payment the total does not account for: something was misread.
    others = [c for c in strongest if c is not chosen]
    chosen = replace(chosen, evidence={**chosen.evidence, "paid": 0.0})
    if change_values and not paid_values:
        # Change given but no tendered amount found: the "total" may be what was tendered,
        # unless it is less than the change (no one tenders less than their change).
        nets = {_minus(to_amount(chosen.raw), change) for change in change_values}
        nets = {net for net in nets if Decimal(net) > 0}
    payments = [Candidate(net, chosen.confidence, chosen.page) for net in sorted(nets)]
    return [chosen, *others, *payments]


def _minus(a: str, b: str) -> str:
    return f"{Decimal(a) - Decimal(b):.2f}"


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


# (component, the MRZ line it is on for TD1 / other layouts, its slice there, its check)
_MRZ_CODES: tuple[tuple[str, dict[str, tuple[int, slice]], Callable[[str, str], bool]], ...] = (
    (
        "document_type",
        {"TD1": (0, slice(0, 2)), "*": (0, slice(0, 2))},
        lambda code, kind: icao.is_document_code(code, kind),
    ),
    (
        "issuing_country",
        {"TD1": (0, slice(2, 5)), "*": (0, slice(2, 5))},
        lambda code, _: icao.is_country_code(code),
    ),
    (
        "nationality",
        {"TD1": (1, slice(15, 18)), "*": (1, slice(10, 13))},
        lambda code, _: icao.is_country_code(code),
    ),
)


def _repair_mrz_codes(texts: list[str]) -> tuple[list[str], list[icao.Repair]]:
    """Read digits as letters in the MRZ's code fields where exactly one reading is a valid code.

    Only letters belong in these fields, and no check digit covers them, so a digit there
    is a misread; the repair is kept only when the code sets leave a single possibility.
    """
    try:
        kind = checks.parse_mrz(texts).kind
    except StdnumValidationError:
        return texts, []
    lines = list(texts)
    repairs = []
    for component, places, valid in _MRZ_CODES:
        line, where = places.get(kind, places["*"])
        printed = lines[line][where]
        code = printed.replace("<", " ").strip()
        if valid(code, kind):
            continue
        fixed = icao.repair_letters(code, lambda reading, valid=valid: valid(reading, kind))
        if fixed is None:
            continue
        repairs.append(icao.Repair(component, code, fixed, line=line + 1))
        lines[line] = lines[line][: where.start] + printed.replace(code, fixed, 1) + lines[line][where.stop :]
    return lines, repairs


def _visual_words(rows_: list[Row], mrz: set[str]) -> set[str]:
    """The words printed outside the MRZ, upper-cased, accents dropped (``Vzor`` -> ``VZOR``)."""
    words: set[str] = set()
    for row in rows_:
        for line in row.lines:
            if re.sub(r"\s", "", line.text.upper()).replace("«", "<") in mrz:
                continue
            plain = unicodedata.normalize("NFKD", line.text.upper())
            words.update(re.findall(r"[A-Z]+", "".join(ch for ch in plain if ch.isascii())))
    return words


def _repair_mrz_names(texts: list[str], words: set[str]) -> tuple[list[str], list[icao.Repair]]:
    """Read digits as letters in the MRZ's names where exactly one reading is printed on the page.

    No set defines names, but the visual zone prints them: ``VZ0R`` in the MRZ and ``Vzor``
    above it make ``VZOR`` the one reading the page supports (``VZDR``, ``VZQR`` are not on it).
    """
    try:
        kind = checks.parse_mrz(texts).kind
    except StdnumValidationError:
        return texts, []
    line = 2 if kind == "TD1" else 0
    start = 0 if kind == "TD1" else 5
    names = texts[line][start:]
    repairs = []
    surname_end = names.find("<<") if "<<" in names else len(names)
    position = 0
    for token in re.split(r"(<+)", names):
        if token and not token.startswith("<") and re.search(r"[A-Z]", token):
            fixed = icao.repair_letters(token, words.__contains__)
            if fixed is not None:
                component = "surname" if position < surname_end else "given_names"
                repairs.append(icao.Repair(component, token, fixed, line=line + 1, basis="visual"))
                names = names[:position] + fixed + names[position + len(token) :]
        position += len(token)
    lines = list(texts)
    lines[line] = texts[line][:start] + names
    return lines, repairs


def _mrz_fields(rows_: list[Row]) -> tuple[dict[str, Candidate], list[icao.Repair]]:
    """Decode the machine-readable zone: the last two or three MRZ-looking lines."""
    lines = _mrz_lines(rows_)
    if len(lines) < 2:
        return {}, []
    three = len(lines) >= 3 and all(25 <= len(t) <= 32 for t, _ in lines[-3:])
    zone = lines[-3:] if three else lines[-2:]
    texts, repairs = _repair_mrz_codes([_fit_mrz_line(t) for t, _ in zone])
    texts, name_repairs = _repair_mrz_names(texts, _visual_words(rows_, {t for t, _ in zone}))
    repairs += name_repairs
    score = min(s for _, s in zone)
    page = rows_[-1].page
    out = {f"line{n}": Candidate(t, score, page) for n, t in enumerate(texts, start=1)}
    try:
        parsed = checks.parse_mrz(texts)
    except StdnumValidationError:
        return out, repairs
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
    return out, repairs


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
    # The first candidate that reads as a value; an unreadable one is a misread or a false match.
    at = next((k for k, v in enumerate(values) if v is not None), 0)
    chosen, value = candidates[at], values[at]
    result = _result(value, chosen, chosen.confidence)
    # Disagreeing candidates (an unreadable one included) mean we may have picked the wrong one:
    # ask a person. Unless the schema says later matches are the same thing in another form
    # (a bank's name in two scripts).
    if len(set(values)) > 1 and spec.hints.get("pick") != "first":
        readings = [v if v is not None else c.raw for c, v in zip(candidates, values, strict=True)]
        result.errors.append(_ambiguity(spec, [value or chosen.raw, *readings]))
        result.candidates = [r for r in dict.fromkeys(readings) if r != value]
    return result


def _ambiguity(spec: FieldSpec, readings: list[str]) -> FieldError:
    """An ``ambiguous`` error naming the different readings, the one kept first.

    ID, card and MRZ numbers are shown masked, as everywhere a person monitors runs.
    """
    distinct = list(dict.fromkeys(readings))
    shown = ", ".join(mask_value(r) if spec.masked_in_views else repr(r) for r in distinct[:4])
    message = (
        f"{spec.title}: the document gives {len(distinct)} different values ({shown}); the first was kept"
    )
    return FieldError(code="ambiguous", message=message)


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
        message = f"could not read {chosen.raw!r} as the expected kind of value"
        errors.append(FieldError(code="invalid_format", message=message))
    # The locator's evidence goes with the value until ocrflow.confidence weighs it.
    evidence = FieldEvidence(factors=chosen.evidence) if chosen.evidence else None
    return FieldResult(
        value=value,
        confidence=round(confidence, 4),
        raw=chosen.raw,
        page=chosen.page,
        errors=errors,
        evidence=evidence,
    )


def extract(results: Sequence[OcrResult], doctype: DocType) -> Extraction:
    """Fill every property of ``doctype`` from the OCR lines of all pages."""
    kv_results = [r for r in results if r.key_values]
    if kv_results:
        return _from_key_values(kv_results, doctype)
    rows_ = rows(results)
    company = next((s for s in doctype.fields.values() if s.locate == "header"), None)
    mrz, repairs = _mrz_fields(rows_) if any(s.locate == "mrz" for s in doctype.fields.values()) else ({}, [])
    fields: dict[str, FieldResult] = {}
    for name, spec in doctype.fields.items():
        if spec.locate == "mrz":
            component = spec.hints.get("mrz_field", name)
            candidate = mrz.get(component)
            fields[name] = _choose(spec, [candidate] if candidate else [], rows_)
            for repair in repairs:
                if component in (repair.component, f"line{repair.line}") and candidate:
                    _note_repair(fields[name], repair, mrz_line=component.startswith("line"))
        elif spec.locate == "address":
            fields[name] = _choose(spec, _by_address(spec, rows_, company), rows_)
        else:
            fields[name] = _choose(spec, _LOCATORS[spec.locate](spec, rows_), rows_)
    return Extraction(doc_type=doctype.name, fields=fields)


def _note_repair(field: FieldResult, repair: icao.Repair, *, mrz_line: bool) -> None:
    """Record on a field that a code in it was read back from digits to letters (not blocking)."""
    title = {"document_type": "document code", "issuing_country": "issuing state"}.get(
        repair.component, repair.component.replace("_", " ")
    )
    message = repair.describe(f"the MRZ's {title}")
    if not mrz_line:
        field.raw = repair.found
    field.errors.append(FieldError(code="repaired", message=message))


def _from_key_values(kv_results: list[OcrResult], doctype: DocType) -> Extraction:
    """Map an API engine's key-information output onto the schema's properties.

    A value's page is its request's page when the request held one page. A packed request
    answers for all its pages at once, so its values get ``page=None`` here: the independent
    reading places them (:func:`ocrflow.confidence.weigh_fields`); without one, key-information
    requests are not packed (:func:`ocrflow.ocr.packs_pages`).
    """
    fields = {}
    for name, spec in doctype.fields.items():
        answer = answered_by(kv_results, name, spec)
        if answer is None:
            fields[name] = FieldResult()
            continue
        result, key = answer
        raw = str((result.key_values or {})[key])
        page = result.page_number if result.usage.pages <= 1 else None
        value = NORMALIZERS[spec.normalize](raw)
        # A model's word is no evidence: ocrflow.confidence makes the confidence from what is.
        fields[name] = _result(value, Candidate(raw, 0.0, page), 0.0)
    return Extraction(doc_type=doctype.name, fields=fields)


def answered_by(results: Sequence[OcrResult], name: str, spec: FieldSpec) -> tuple[OcrResult, str] | None:
    """The answer a field's value comes from, and the key it is under.

    A field is answered under its name, its title or one of its labels, in that order; where
    several requests (a document's packed groups of pages) answer under that key, the last one does.
    """
    for key in (name, spec.title, *spec.labels):
        for result in reversed(results):
            if (result.key_values or {}).get(key) not in (None, ""):
                return result, key
    return None


def keyword_share(text: str, doctype: DocType) -> float:
    """The share of the type's ``detect`` keywords found in ``text`` (case and spaces ignored)."""
    keywords = doctype.detect_keywords
    folded = _fold(text)
    return sum(_fold(k) in folded for k in keywords) / max(len(keywords), 1)
