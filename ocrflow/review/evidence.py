"""What the item page shows about a field's value: where it is printed and what vouches for it.

Two readings of a field can stand side by side: the engine's (its value, and the lines it
came from, ``FieldResult.boxes``) and the independent reading's (``FieldResult.evidence``:
what another engine read there, and where). The page highlights both when the field's
input has focus, and the independent reading is offered as a one-click value when it
differs.

A result written before fields carried boxes still gets its field located: the stored OCR
lines of the field's page that hold its raw text are where it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ocrflow.models import DocumentResult, FieldBox, FieldResult, Grounding
from ocrflow.verify import READINGS_DISAGREE, UNGROUNDED

OUTCOMES = {
    Grounding.GROUNDED: "found as read",
    Grounding.NEAR: "found with different characters",
    Grounding.NOT_FOUND: "not found on the page",
    Grounding.UNVERIFIED: "not checked",
}
"""How the page names each grounding outcome."""


_PART = 4
"""Fewest characters a line needs to count as part of a multi-line value (not a stray word)."""


@dataclass(frozen=True)
class Highlight:
    """One box to light up when a field's input has focus: the engine's or the independent reading's."""

    field: str
    kind: str
    """``engine`` (where the value came from) or ``independent`` (where the other reading found it)."""
    page: int
    points: str
    """The box as SVG polygon points, in page pixels."""


def located(field: FieldResult, result: DocumentResult) -> list[FieldBox]:
    """Where the value is printed: its own boxes, else the stored lines of its page that hold its raw text.

    A value printed over several lines (an address) is where the lines are that its raw text
    holds whole. The stored lines are the engine's, or the independent reading's where the
    engine gave none (an API engine's key-information answer).
    """
    if field.boxes:
        return list(field.boxes)
    raw = _folded(field.raw or "")
    if not raw:
        return []
    lines = [
        (page.page_number, line)
        for page in result.pages
        if field.page in (None, page.page_number)
        for line in page.lines or page.independent_lines
        if _folded(line.text)
    ]
    holding = [(number, line) for number, line in lines if raw in _folded(line.text)]
    if not holding:
        holding = [
            (n, line) for n, line in lines if len(_folded(line.text)) >= _PART and _folded(line.text) in raw
        ]
    return [FieldBox(page=number, box=line.box, line=line.text) for number, line in holding]


def highlights(result: DocumentResult) -> dict[int, list[Highlight]]:
    """Every field's boxes, by page number, for the page's SVG overlay."""
    by_page: dict[int, list[Highlight]] = {}
    for name, field in result.fields.items():
        independent = field.evidence.boxes if field.evidence else []
        for kind, boxes in (("engine", located(field, result)), ("independent", independent)):
            for where in boxes:
                points = " ".join(f"{x:g},{y:g}" for x, y in where.box)
                by_page.setdefault(where.page, []).append(Highlight(name, kind, where.page, points))
    return by_page


def readings(field: FieldResult | None, engine: str | None) -> dict[str, Any] | None:
    """Both readings of a field with evidence: the engine's and the independent one, for the form.

    ``offer`` is the independent reading's value for the field, when grounding found the two
    disagree: the candidate it added (:mod:`ocrflow.confidence`), normalised like the field.
    """
    evidence = field.evidence if field else None
    if field is None or evidence is None or evidence.outcome is Grounding.UNVERIFIED:
        return None
    value = "" if field.value is None else str(field.value)
    differs = set(evidence.differs_at)
    disagree = any(error.code in (UNGROUNDED, READINGS_DISAGREE) for error in field.errors)
    return {
        "engine": engine or "the engine",
        "value": value,
        "marked": [(char, i in differs) for i, char in enumerate(value)],
        "reader": evidence.reader or "the independent reading",
        "reading": evidence.reading,
        "outcome": OUTCOMES[evidence.outcome],
        "grounded": evidence.outcome is Grounding.GROUNDED and not disagree,
        "offer": str(field.candidates[-1]) if disagree and field.candidates else None,
    }


def _folded(text: str) -> str:
    """Letters and digits only, case ignored: how a value and a printed line are compared."""
    return re.sub(r"[\W_]+", "", text).casefold()
