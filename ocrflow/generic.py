"""What a page shows when it matches no document type: key-values, tables, layout measures.

A page that is not a receipt, a passport or any other type still has structure worth
keeping: ``Label: value`` pairs, and tables (rows whose cells line up in columns). These
come from the OCR lines' positions and text only; nothing is inferred beyond what is
printed, and nothing is named after a type's fields. :func:`layout_measures` gives type
detection the layout evidence it weighs beside keywords and fields.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from typing import Any

from ocrflow.layout import Line, Row, rows
from ocrflow.models import Extraction, FieldResult, OcrResult

GENERIC = "generic"
"""The ``doc_type`` of a document that matches no type well."""

_KEY_VALUE = re.compile(r"^\s*(?P<key>[^:：]{1,40}?)\s*[:：]\s*(?P<value>\S.*)$")
_MONEY = re.compile(r"(?<![\d.,])-?\d{1,6}(?:,\d{3})*[.,]\d{2}(?!\d)")
_MIN_TABLE_ROWS = 3


def _is_key(text: str) -> bool:
    letters = sum(ch.isalpha() for ch in text)
    return letters >= 2 and letters >= 0.5 * len(text.replace(" ", "")) and not text.rstrip().endswith(".")


def key_values(rows_: Sequence[Row]) -> list[dict[str, Any]]:
    """``Label: value`` pairs: on one line, or a line ending in a colon and the next cell on its row."""
    pairs: list[dict[str, Any]] = []
    for row in rows_:
        cells = list(row.lines)
        k = 0
        while k < len(cells):
            line = cells[k]
            m = _KEY_VALUE.match(line.text)
            if m and _is_key(m["key"]):
                pairs.append(_pair(m["key"], m["value"], [line]))
            elif line.text.rstrip().endswith((":", "：")) and k + 1 < len(cells):
                key = line.text.rstrip().rstrip(":：").strip()
                if _is_key(key):
                    pairs.append(_pair(key, cells[k + 1].text, [line, cells[k + 1]]))
                    k += 1
            k += 1
    return pairs


def _pair(key: str, value: str, lines: list[Line]) -> dict[str, Any]:
    return {
        "key": key.strip(),
        "value": value.strip(),
        "page": lines[0].page,
        "box": _box(lines),
        "confidence": round(min(line.score for line in lines), 4),
    }


def _box(lines: Sequence[Line]) -> list[float]:
    return [
        round(min(line.x0 for line in lines), 1),
        round(min(line.y0 for line in lines), 1),
        round(max(line.x1 for line in lines), 1),
        round(max(line.y1 for line in lines), 1),
    ]


def _overlaps(a: Line, b: Line) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > 0


def _tabular(row: Row) -> bool:
    """A row that may be part of a table: 2+ cells, and not a ``Label:`` row with its value."""
    return len(row.lines) >= 2 and not row.lines[0].text.rstrip().endswith((":", "："))


def _aligned(row: Row, previous: Row) -> bool:
    """Consecutive rows of one table: close together, and at least two cells over one another."""
    if not (_tabular(row) and _tabular(previous)) or row.page != previous.page:
        return False
    height = max(line.height for line in (*row.lines, *previous.lines))
    gap = min(line.y0 for line in row.lines) - max(line.y1 for line in previous.lines)
    if gap > 1.5 * height:
        return False
    return sum(any(_overlaps(cell, other) for other in previous.lines) for cell in row.lines) >= 2


def _columns(run: Sequence[Row]) -> list[tuple[float, float]]:
    """Column extents: the cells' horizontal spans merged where they overlap."""
    spans = sorted((cell.x0, cell.x1) for row in run for cell in row.lines)
    columns: list[list[float]] = []
    for x0, x1 in spans:
        if columns and x0 < columns[-1][1]:
            columns[-1][1] = max(columns[-1][1], x1)
        else:
            columns.append([x0, x1])
    return [(x0, x1) for x0, x1 in columns]


def tables(rows_: Sequence[Row]) -> list[dict[str, Any]]:
    """Runs of 3+ consecutive rows whose cells line up, as rows of cell texts by column."""
    found: list[dict[str, Any]] = []
    run: list[Row] = []

    def close() -> None:
        if len(run) >= _MIN_TABLE_ROWS:
            columns = _columns(run)
            if len(columns) >= 2:
                cells = []
                for row in run:
                    texts = [""] * len(columns)
                    for cell in row.lines:
                        at = next(i for i, (x0, x1) in enumerate(columns) if x0 <= cell.x0 <= x1)
                        texts[at] = f"{texts[at]} {cell.text}".strip()
                    cells.append(texts)
                lines = [cell for row in run for cell in row.lines]
                found.append({"page": run[0].page, "box": _box(lines), "rows": cells})
        run.clear()

    for row in rows_:
        if run and _aligned(row, run[-1]):
            run.append(row)
            continue
        close()
        if _tabular(row):
            run.append(row)
    close()
    return found


def extract_generic(results: Sequence[OcrResult]) -> Extraction:
    """The generic outcome: key-values and tables where the page has them, and no other field."""
    rows_ = rows(results)
    fields: dict[str, FieldResult] = {}
    pairs = key_values(rows_)
    if pairs:
        fields["key_values"] = FieldResult(
            value=pairs, confidence=min(p["confidence"] for p in pairs), page=pairs[0]["page"]
        )
    grids = tables(rows_)
    if grids:
        lines = [line for row in rows_ for line in row.lines]
        fields["tables"] = FieldResult(
            value=grids, confidence=min(line.score for line in lines), page=grids[0]["page"]
        )
    return Extraction(doc_type=GENERIC, fields=fields)


def layout_measures(rows_: Sequence[Row]) -> dict[str, float]:
    """What the page looks like, for type detection.

    - ``rows``: rows of text; ``row_chars``: median characters per row (prose runs long,
      receipts and cards short);
    - ``money_rows``: share of rows holding an amount such as ``12.50`` (receipts, invoices);
    - ``money_right``: share of those amounts in the right half of the text (a price column);
    - ``tall``: height over width of the text's extent (a receipt is a strip).
    """
    if not rows_:
        return {"rows": 0, "row_chars": 0.0, "money_rows": 0.0, "money_right": 0.0, "tall": 0.0}
    lines = [line for row in rows_ for line in row.lines]
    left, right = min(line.x0 for line in lines), max(line.x1 for line in lines)
    top, bottom = min(line.y0 for line in lines), max(line.y1 for line in lines)
    middle = (left + right) / 2
    money = [line for line in lines if _MONEY.search(line.text)]
    return {
        "rows": float(len(rows_)),
        "row_chars": float(statistics.median(len(row.text) for row in rows_)),
        "money_rows": sum(bool(_MONEY.search(row.text)) for row in rows_) / len(rows_),
        "money_right": sum(line.x1 > middle for line in money) / len(money) if money else 0.0,
        "tall": (bottom - top) / max(right - left, 1.0),
    }
