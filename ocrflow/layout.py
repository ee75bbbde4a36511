"""Reading order for OCR lines: rows of lines that share a baseline, top to bottom."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ocrflow.models import OcrResult


@dataclass(frozen=True)
class Line:
    text: str
    score: float
    page: int
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@dataclass(frozen=True)
class Row:
    """Lines whose vertical extents overlap by more than half, left to right."""

    lines: tuple[Line, ...]

    @property
    def text(self) -> str:
        return " ".join(line.text for line in self.lines)

    @property
    def score(self) -> float:
        return min(line.score for line in self.lines)

    @property
    def page(self) -> int:
        return self.lines[0].page


def _same_row(a: Line, b: Line) -> bool:
    overlap = min(a.y1, b.y1) - max(a.y0, b.y0)
    return overlap > 0.5 * min(a.height, b.height)


def rows(results: Sequence[OcrResult]) -> list[Row]:
    """All pages' lines grouped into rows in reading order."""
    out: list[Row] = []
    for result in sorted(results, key=lambda r: r.page_number):
        lines = sorted(
            (
                Line(
                    text=ocr_line.text.strip(),
                    score=ocr_line.score,
                    page=result.page_number,
                    x0=min(x for x, _ in ocr_line.box),
                    y0=min(y for _, y in ocr_line.box),
                    x1=max(x for x, _ in ocr_line.box),
                    y1=max(y for _, y in ocr_line.box),
                )
                for ocr_line in result.lines
                if ocr_line.text.strip()
            ),
            key=lambda line: (line.y0 + line.y1) / 2,
        )
        current: list[Line] = []
        for line in lines:
            if current and not any(_same_row(line, other) for other in current):
                out.append(Row(tuple(sorted(current, key=lambda item: item.x0))))
                current = []
            current.append(line)
        if current:
            out.append(Row(tuple(sorted(current, key=lambda item: item.x0))))
    return out
