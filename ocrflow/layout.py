"""Reading order for OCR lines: rows of lines that share a baseline, top to bottom."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ocrflow.models import Affine, Box, OcrResult


@dataclass(frozen=True)
class Line:
    text: str
    score: float
    page: int
    x0: float
    y0: float
    x1: float
    y1: float
    box: Box = field(default_factory=list, compare=False)
    """The line's corners as the engine's result gives them (original-page pixels)."""
    char_scores: tuple[float, ...] | None = field(default=None, compare=False)
    """The recogniser's score of each character of ``text`` that is not a space, where it gave them."""

    def char_score(self, at: int) -> float | None:
        """The recogniser's score of the character at ``at`` in ``text``, where it gave one."""
        if self.char_scores is None or self.text[at].isspace():
            return None
        k = at - self.text.count(" ", 0, at)
        return self.char_scores[k] if k < len(self.char_scores) else None

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


def _line(
    text: str,
    score: float,
    page: int,
    box: list[list[float]],
    frame: Affine | None,
    char_scores: tuple[float, ...] | None = None,
) -> Line:
    original = box
    if frame is not None:
        (a, b, c), (d, e, f) = frame
        box = [[a * x + b * y + c, d * x + e * y + f] for x, y in box]
    xs = [x for x, _ in box]
    ys = [y for _, y in box]
    return Line(
        text=text,
        score=score,
        page=page,
        x0=min(xs),
        y0=min(ys),
        x1=max(xs),
        y1=max(ys),
        box=original,
        char_scores=char_scores,
    )


def _same_row(a: Line, b: Line) -> bool:
    overlap = min(a.y1, b.y1) - max(a.y0, b.y0)
    return overlap > 0.5 * min(a.height, b.height)


def rows(results: Sequence[OcrResult]) -> list[Row]:
    """All pages' lines grouped into rows in reading order."""
    out: list[Row] = []
    for result in sorted(results, key=lambda r: r.page_number):
        lines = sorted(
            (
                _line(
                    ocr_line.text.strip(),
                    ocr_line.score,
                    result.page_number,
                    ocr_line.box,
                    result.reading_frame,
                    ocr_line.char_scores,
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
