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
import unicodedata
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
    differing_scores: tuple[float | None, ...] = ()
    """For text, the reader's own score of the character it read at each difference (``None``
    where it read none, a character of the value left out, or gave no scores)."""

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


_STRAY_MARK = re.compile(r"[.,]+(?=[/-])|(?<=[/-])[.,]+")
"""A comma or dot beside a date's slash or dash: a speck the reader read as a mark (``02,/22/2014``)."""


def _reads_as(window: str, normalize: Callable[[str], str | None], kind: str) -> str | None:
    if kind == AMOUNT and not _MONEY.search(window):
        return None  # "9" (a quantity) is not the amount 9.00
    read = normalize(window)
    if read is None and kind == DATE and _STRAY_MARK.search(window):
        return normalize(_STRAY_MARK.sub("", window))  # no digit is added, dropped or changed
    return read


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
    return _align(_fold_chars(value), _fold_chars(read))[1]


# --- text: names, addresses, MRZ lines --------------------------------------------------------


MARK = "\x00"
"""Stands for a reading's punctuation or symbol: where an independent reader garbles a character
into one (``NO.5:`` for ``NO.53``) it has not read it otherwise, so a value may hold a character there.
Only one at a time: two value characters in a row on marks are read as nothing (a rule of
asterisks is not a name), so they count as differences (:func:`_trace`)."""


def _fold_chars(text: str, *, marks: bool = False) -> list[tuple[int, str]]:
    """``(position, character)`` of the letters, digits and MRZ fillers, folded as OCR confuses them.

    A folded character is the characters it may stand for (usually one): upper-cased, accents
    dropped (``Á`` is ``A``), O/0, I/1, S/5, B/8 merged, and a lower-case ``l`` either ``L`` or
    ``1`` (:func:`_same`). With ``marks``, punctuation and symbols are kept as :data:`MARK`.
    """
    folded = []
    for i, ch in enumerate(text.replace("«", "<")):
        if ch.isalnum() or ch == "<":
            folded.append((i, _fold(ch)))
        elif marks and not ch.isspace():
            folded.append((i, MARK))
    return folded


def _fold(ch: str) -> str:
    if ch == "l":
        return "L1"
    bare = ch if ch.isascii() else unicodedata.normalize("NFKD", ch)[0]
    return bare.upper().translate(_CONFUSED)


def _same(a: str, b: str) -> bool:
    """Whether two folded characters may be the same character."""
    return a == b or ((len(a) > 1 or len(b) > 1) and not set(a).isdisjoint(b))


def _ground_text(text: str, lines: Sequence[Line]) -> Match:
    value = _fold_chars(text)
    if not value:
        return NOT_FOUND
    haystack = [(line, at, ch) for line in lines for at, ch in _fold_chars(line.text, marks=True)]
    if not haystack:
        return NOT_FOUND
    alignments = _alignments(value, [(k, ch) for k, (_, _, ch) in enumerate(haystack)])
    # Where the value is printed more than once as well, the place that holds it whole counts.
    whole = next((a for a in alignments if not any(_carried_on(haystack, a[2], a[3]))), None)
    distance, differs, start, end, read = whole or alignments[0]
    found = _distinct(line for line, _, _ in haystack[start:end])
    reading = _stretch(found, haystack[start][1], haystack[max(end - 1, start)][1])
    scores = tuple(None if k is None else haystack[k][0].char_score(haystack[k][1]) for k in read)
    if whole is None:
        # A value cut short: its line goes on with more of it (a dropped first or last word).
        before, after = _carried_on(haystack, start, end)
        ends = [value[0][0]] * before + [value[-1][0]] * after
        differs = tuple(sorted({*differs, *ends}))
        distance += 1
        scores += (None,)
    if not distance:
        return Match(Grounding.GROUNDED, reading=reading, lines=found)
    if distance > _NEAR_SHARE * len(value):
        return NOT_FOUND
    return Match(
        Grounding.NEAR,
        reading=reading,
        differs_at=differs,
        lines=found,
        distance=distance,
        differing_scores=scores,
    )


_UNSPACED = "\u2e80"
"""Where the scripts that write no spaces between words (Chinese, Japanese) begin: no word ends there."""
_JOINED = " ,.;/&-"
"""What may join a value to more of it on a line: spaces and an address's punctuation, not brackets."""


def _carried_on(haystack: list[tuple[Line, int, str]], start: int, end: int) -> tuple[bool, bool]:
    """Whether the lines of an aligned stretch go on, before it or after it, with more words of a value.

    A word joined to the stretch by spaces or commas and made mostly of letters carries it on
    (``SHAH ALAM, SELANGOR.`` after ``SHAH ALAM``); a number (a telephone, a registration number)
    or anything after a bracket or a colon does not.
    """
    inside = [k for k in range(start, end) if haystack[k][2] != MARK]
    if not inside:
        return False, False
    first_line, first_at, _ = haystack[inside[0]]
    last_line, last_at, _ = haystack[inside[-1]]
    return _words_go_on(first_line.text[:first_at][::-1]), _words_go_on(last_line.text[last_at + 1 :])


def _words_go_on(rest: str) -> bool:
    """Whether ``rest`` (the text next to a value, read away from it) carries on with a word."""
    joined = rest.lstrip(_JOINED)
    if not joined or not joined[0].isalnum() or joined[0] >= _UNSPACED:
        return False
    aside = re.split(r"[()\[\]{}]", joined, maxsplit=1)[0]  # up to a bracketed aside
    return sum(ch.isalpha() for ch in aside) > sum(ch.isdigit() for ch in aside)


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


def _align(value: list[tuple[int, str]], text: list[tuple[int, str]]) -> tuple[int, tuple[int, ...]]:
    """Edit-distance alignment of ``value`` against the whole of ``text``.

    Returns the number of hard differences and the positions of ``value`` they touch
    (:func:`_trace`).
    """
    _, move = _table(value, text, anywhere=False)
    return _trace(value, text, move, len(text))[:2]


def _alignments(
    value: list[tuple[int, str]], text: list[tuple[int, str]]
) -> list[tuple[int, tuple[int, ...], int, int, tuple[int | None, ...]]]:
    """The cheapest alignments of ``value`` against any stretch of ``text``, the latest first.

    Each is as :func:`_trace` gives it, with ``text``'s positions its indices. Ties go to the
    later end: a last character replaced rather than left out (``BHP`` for ``BHD``).
    """
    cost, move = _table(value, text, anywhere=True)
    last = cost[len(value)]
    best = min(last)
    return [_trace(value, text, move, end) for end in range(len(text), -1, -1) if last[end] == best]


def _table(
    value: list[tuple[int, str]], text: list[tuple[int, str]], *, anywhere: bool
) -> tuple[list[list[int]], list[list[int]]]:
    """The cost and move tables of aligning ``value`` with ``text`` (``anywhere``: a free start).

    A :data:`MARK` in ``text`` may stand for one value character at a small cost, or for none
    at no cost.
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
            diagonal = above[j - 1] + (0 if _same(v, t) else _SOFT if mark else _HARD)
            left_out = above[j] + _HARD
            extra = row[j - 1] + (0 if mark else _HARD)
            best = min(diagonal, left_out, extra)
            row[j] = best
            move[i][j] = 0 if best == diagonal else (1 if best == left_out else 2)
    return cost, move


def _trace(
    value: list[tuple[int, str]], text: list[tuple[int, str]], move: list[list[int]], end: int
) -> tuple[int, tuple[int, ...], int, int, tuple[int | None, ...]]:
    """Follow an alignment back from ``end``.

    Returns its hard differences (characters replaced, left out or extra, and value characters
    on a run of marks: :data:`MARK`), the original
    positions of ``value``'s characters they touch (an extra character is charged to the value
    character after it), its start and end in ``text``, and for each hard difference the
    position in ``text`` of the character read there (``None`` for a value character left out).
    """
    n = len(value)
    differs: set[int] = set()
    read: list[int | None] = []
    on_marks: list[tuple[int, int]] = []  # (index in value, index in text) of value characters on a mark
    i, j = n, end
    while i > 0:
        step = move[i][j] if j > 0 else 1
        if step == 0:
            if text[j - 1][1] == MARK:
                on_marks.append((i - 1, j - 1))
            elif not _same(value[i - 1][1], text[j - 1][1]):
                differs.add(value[i - 1][0])
                read.append(text[j - 1][0])
            i, j = i - 1, j - 1
        elif step == 1:
            differs.add(value[i - 1][0])
            read.append(None)
            i -= 1
        else:
            if text[j - 1][1] != MARK:
                differs.add(value[min(i, n - 1)][0])
                read.append(text[j - 1][0])
            j -= 1
    indices = {k for k, _ in on_marks}
    for k, at in on_marks:
        if k - 1 in indices or k + 1 in indices:  # a run of marks: nothing was read there
            differs.add(value[k][0])
            read.append(text[at][0])
    return len(read), tuple(sorted(differs)), j, end, tuple(reversed(read))


# --- a second recogniser's reading of the same lines ----------------------------------------


def second_agreement(value: str, reading: str) -> float:
    """Whether a second recogniser's reading of a value's lines spells the value as first read: 1.0 or 0.0.

    Letters and digits only, case ignored: the second model (PP-OCRv4) drops most spaces, and
    punctuation is where the two differ most and matters least. No confusion is forgiven: an
    ``O`` for a ``0`` is exactly what one model misreads. The value may be anywhere in the
    reading (its lines hold more: a phone number after an address). Measured on the tune half
    (``bench/second_reading.py``), one character off was as often a misread by either model, so
    it counts as differing (``evidence.factors["second_reading"]``).
    """
    return 1.0 if _alnum(value) in _alnum(reading) else 0.0


def _alnum(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())
