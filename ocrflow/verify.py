"""Grounding: is a field's value printed on the page, as an independent reading saw it?

A field's value is looked for in another engine's lines of the same pages, compared the way
the field's normaliser compares (:func:`kind_of`):

- numbers and codes (``amount``, ``date``, ``digits``, ID and card numbers, expiry, sex): every
  run of up to a few words of a line is normalised like the field and compared as a value, so
  ``RM 99.00`` holds ``99.00`` and ``12/03/2018`` holds ``2018-03-12``. The independent
  reader's own digit-letter slips (``99.0O``) are read back before a second try;
- text (names, addresses, MRZ lines): letters and digits only, case ignored, OCR's usual
  confusions (O/0, I/1/l, S/5, B/8) counted as the same character, across line breaks, by an
  edit distance against the closest stretch of the reading.

The answer (:class:`Match`) is ``grounded``, ``near`` (which of the value's characters the
reading does not have) or ``not_found``, with the lines where it was found. Plain functions,
no engine: :mod:`ocrflow.pipeline` runs the reader, :mod:`ocrflow.confidence` weighs the answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ocrflow.doctypes import FieldSpec
from ocrflow.layout import Line, rows
from ocrflow.models import FieldBox, Grounding, OcrResult
from ocrflow.normalize import NORMALIZERS, levenshtein, to_date, to_datetime

UNGROUNDED = "ungrounded"
READINGS_DISAGREE = "readings_disagree"

TEXT, AMOUNT, DATE, CODE = "text", "amount", "date", "code"
_CODE_NORMALIZERS = {"digits", "id_number", "card_number", "expiry", "sex"}
_MAX_WORDS = 6
"""Longest run of words one value is looked for in (a card number printed in groups of four)."""
_NEAR_SHARE = 0.34
"""A text value is ``near`` while at most this share of its characters differ; beyond, not found."""
_CONFUSED = str.maketrans({"O": "0", "o": "0", "I": "1", "l": "1", "|": "1", "S": "5", "s": "5", "B": "8"})
"""OCR's usual digit-letter confusions, read back as digits."""
_MONEY = re.compile(r"\d[.,]\d{1,2}(?!\d)|[¥$€£]\s*\d|\d\s*元|RM\s*\d", re.I)
"""A printed amount: with its cents (``117.5``, ``9.00``) or its currency (``¥117``, ``RM 9``)."""


@dataclass(frozen=True)
class Match:
    """Where and how well a value is printed in a reading."""

    outcome: Grounding
    reading: str | None = None
    """What the independent reading has there: a value normalised like the field (so it can be
    offered as the correction), or for text the stretch of its lines that aligns with the value."""
    differs_at: tuple[int, ...] = ()
    """Positions in the value that the reading does not have."""
    lines: tuple[Line, ...] = ()
    distance: int = 0
    """Characters that differ (``near``), after OCR confusions are forgiven."""

    @property
    def page(self) -> int | None:
        return self.lines[0].page if self.lines else None

    @property
    def score(self) -> float | None:
        """The reader's lowest score among the lines found."""
        return min(line.score for line in self.lines) if self.lines else None

    @property
    def boxes(self) -> list[FieldBox]:
        return [FieldBox(page=line.page, box=line.box, line=line.text) for line in self.lines]


NOT_FOUND = Match(Grounding.NOT_FOUND)


def kind_of(spec: FieldSpec | None) -> str:
    """How a field's values compare: as amounts, dates, codes or text."""
    if spec is None:
        return TEXT
    if spec.normalize == "amount":
        return AMOUNT
    if spec.normalize in ("date", "datetime") or spec.format in ("date", "date-time"):
        return DATE
    if spec.normalize in _CODE_NORMALIZERS:
        return CODE
    return TEXT


def ground(value: object, spec: FieldSpec | None, reading: Sequence[OcrResult]) -> Match:
    """Find a field's normalised ``value`` in ``reading``, compared as ``spec``'s normaliser compares."""
    if not isinstance(value, str) or not value:
        return NOT_FOUND
    lines = [line for row in rows(reading) for line in row.lines]
    kind = kind_of(spec)
    if kind == TEXT:
        return _ground_text(value, lines)
    return _ground_value(value, _normaliser(kind, spec), kind, lines)


def _normaliser(kind: str, spec: FieldSpec | None) -> Callable[[str], str | None]:
    if kind == DATE:
        timed = spec is not None and (spec.normalize == "datetime" or spec.format == "date-time")
        return to_datetime if timed else to_date
    return NORMALIZERS[spec.normalize if spec is not None else "text"]


# --- values: amounts, dates, codes ----------------------------------------------------------


_TOKEN = re.compile(r"[0-9A-Za-z/*.,:-]+|[^\x00-\x7f\s]")
"""A run of Latin letters, digits and their separators, or one other character (``性别男``: ``男``)."""


def _windows(line: Line) -> list[str]:
    """Every run of up to :data:`_MAX_WORDS` consecutive words of a line, its tokens, the whole line."""
    words = line.text.split()
    runs = {
        " ".join(words[i:j])
        for i in range(len(words))
        for j in range(i + 1, min(len(words), i + _MAX_WORDS) + 1)
    }
    runs.update(_TOKEN.findall(line.text))
    runs.add(line.text)
    return sorted(runs, key=len)


def _reads_as(window: str, normalize: Callable[[str], str | None], kind: str) -> str | None:
    if kind == AMOUNT and not _MONEY.search(window):
        return None  # "9" (a quantity) is not the amount 9.00
    return normalize(window)


def _ground_value(
    value: str, normalize: Callable[[str], str | None], kind: str, lines: Sequence[Line]
) -> Match:
    nearest: tuple[tuple[int, int], str, Line] | None = None
    for confused in (False, True):
        for line in lines:
            for window in _windows(line):
                text = window.translate(_CONFUSED) if confused else window
                if confused and text == window:
                    continue
                read = _reads_as(text, normalize, kind)
                if read is None:
                    continue
                if read == value:
                    return Match(Grounding.GROUNDED, reading=read, lines=(line,))
                closeness = (levenshtein(read, value), abs(len(read) - len(value)))
                if nearest is None or closeness < nearest[0]:
                    nearest = (closeness, read, line)
    if nearest is None or nearest[0][0] > max(1, len(value) // 4):
        return NOT_FOUND
    (distance, _), read, line = nearest
    return Match(
        Grounding.NEAR, reading=read, differs_at=_differs(value, read), lines=(line,), distance=distance
    )


def _differs(value: str, read: str) -> tuple[int, ...]:
    """Positions of ``value`` not matched in ``read`` by the cheapest alignment of the two."""
    return _align(_fold_chars(value), _fold_chars(read), anywhere=False)[1]


# --- text: names, addresses, MRZ lines --------------------------------------------------------


MARK = "\x00"
"""Stands for a reading's punctuation or symbol: where an independent reader garbles a character
into one (``NO.5:`` for ``NO.53``) it has not read it otherwise, so a value may hold a character there."""


def _fold_chars(text: str, *, marks: bool = False) -> list[tuple[int, str]]:
    """``(position, character)`` of the letters, digits and MRZ fillers, upper-cased, confusions merged.

    With ``marks``, punctuation and symbols are kept as :data:`MARK`.
    """
    folded = text.replace("«", "<")
    return [
        (i, ch.translate(_CONFUSED).upper().translate(_CONFUSED) if ch.isalnum() or ch == "<" else MARK)
        for i, ch in enumerate(folded)
        if ch.isalnum() or ch == "<" or (marks and not ch.isspace())
    ]


def _ground_text(text: str, lines: Sequence[Line]) -> Match:
    value = _fold_chars(text)
    if not value:
        return NOT_FOUND
    haystack = [(line, at, ch) for line in lines for at, ch in _fold_chars(line.text, marks=True)]
    if not haystack:
        return NOT_FOUND
    distance, differs, start, end = _align(
        value, [(k, ch) for k, (_, _, ch) in enumerate(haystack)], anywhere=True
    )
    found = _distinct(line for line, _, _ in haystack[start:end])
    reading = _stretch(found, haystack[start][1], haystack[max(end - 1, start)][1])
    if not distance:
        return Match(Grounding.GROUNDED, reading=reading, lines=found)
    if distance > _NEAR_SHARE * len(value):
        return NOT_FOUND
    return Match(Grounding.NEAR, reading=reading, differs_at=differs, lines=found, distance=distance)


def _stretch(lines: tuple[Line, ...], start: int, end: int) -> str:
    """The text of ``lines`` from ``start`` in the first to ``end`` in the last, one space between lines."""
    if len(lines) == 1:
        return lines[0].text[start : end + 1]
    middle = [line.text for line in lines[1:-1]]
    return " ".join([lines[0].text[start:], *middle, lines[-1].text[: end + 1]])


def _distinct(lines) -> tuple[Line, ...]:
    seen: dict[int, Line] = {}
    for line in lines:
        seen.setdefault(id(line), line)
    return tuple(seen.values())


_HARD, _SOFT = 2, 1
"""Costs: a character replaced, left out or extra; a value character where the reading has a mark."""


def _align(
    value: list[tuple[int, str]], text: list[tuple[int, str]], *, anywhere: bool
) -> tuple[int, tuple[int, ...], int, int]:
    """Edit-distance alignment of ``value`` against ``text`` (``anywhere``: any stretch of it).

    A :data:`MARK` in ``text`` may stand for one value character at a small cost, or for none
    at no cost. Returns the number of hard differences (characters replaced, left out or
    extra), the original positions of ``value``'s characters they touch (an extra character
    is charged to the value character after it), and the stretch of ``text`` aligned, as
    indices into ``text``.
    """
    n, m = len(value), len(text)
    # cost[i][j]: value[:i] aligned with text ending at j; a free start anywhere when ``anywhere``.
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    move = [[0] * (m + 1) for _ in range(n + 1)]  # 0 match/replace, 1 value char left out, 2 text char extra
    for j in range(1, m + 1):
        cost[0][j] = 0 if anywhere else cost[0][j - 1] + (0 if text[j - 1][1] == MARK else _HARD)
        move[0][j] = 2
    for i in range(1, n + 1):
        cost[i][0] = i * _HARD
        move[i][0] = 1
        v = value[i - 1][1]
        row, above = cost[i], cost[i - 1]
        for j in range(1, m + 1):
            t = text[j - 1][1]
            mark = t == MARK
            diagonal = above[j - 1] + (0 if v == t else _SOFT if mark else _HARD)
            left_out = above[j] + _HARD
            extra = row[j - 1] + (0 if mark else _HARD)
            best = min(diagonal, left_out, extra)
            row[j] = best
            move[i][j] = 0 if best == diagonal else (1 if best == left_out else 2)
    # On a tie the later end: a last character replaced rather than left out (``BHP`` for ``BHD``).
    end = max(range(m + 1), key=lambda j: (-cost[n][j], j)) if anywhere else m
    differs: set[int] = set()
    hard = 0
    i, j = n, end
    while i > 0:
        step = move[i][j] if j > 0 else 1
        if step == 0:
            if value[i - 1][1] != text[j - 1][1] and text[j - 1][1] != MARK:
                differs.add(value[i - 1][0])
                hard += 1
            i, j = i - 1, j - 1
        elif step == 1:
            differs.add(value[i - 1][0])
            hard += 1
            i -= 1
        else:
            if text[j - 1][1] != MARK:
                differs.add(value[min(i, n - 1)][0])
                hard += 1
            j -= 1
    return hard, tuple(sorted(differs)), j, end
