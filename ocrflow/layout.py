"""Reading order for OCR lines: rows of lines that share a baseline, top to bottom.

Phone photos of receipts are tilted and curved: a printed row's left end can be a whole line
height above or below its right end, so lines that share a row are found along their
baselines (each line's slope from its four corners, the page's dominant slope where a line is
too short to show its own), not by overlapping axis-aligned boxes.
"""

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
    slope: float = field(default=0.0, compare=False)
    """The rise of the line's baseline per pixel across, in the reading frame (0: level)."""

    def char_score(self, at: int) -> float | None:
        """The recogniser's score of the character at ``at`` in ``text``, where it gave one."""
        if self.char_scores is None or self.text[at].isspace():
            return None
        k = at - self.text.count(" ", 0, at)
        return self.char_scores[k] if k < len(self.char_scores) else None

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def text_height(self) -> float:
        """The height of the text itself: a tilted line's box is taller by its rise.

        Never 0, as distances are measured in it: a box may be flat (a model's word box).
        """
        return max(self.height - abs(self.slope) * (self.x1 - self.x0), 0.3 * self.height, 1e-6)

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2


@dataclass(frozen=True)
class Row:
    """Lines along one printed row, left to right."""

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
        slope=_slope(box),
    )


def _slope(box: list[list[float]]) -> float:
    """The mean rise per pixel of a quadrilateral's top and bottom edges (corners clockwise from top left)."""
    if len(box) != 4:
        return 0.0
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = box
    edges = [(x1 - x0, y1 - y0), (x2 - x3, y2 - y3)]
    rises = [dy / dx for dx, dy in edges if dx > 0]
    return sum(rises) / len(rises) if rises else 0.0


def _dominant_slope(lines: Sequence[Line]) -> float:
    """The page's tilt: the median slope of its lines long enough to measure one (0 without any)."""
    slopes = sorted(line.slope for line in lines if line.x1 - line.x0 >= 3 * line.text_height)
    return slopes[len(slopes) // 2] if slopes else 0.0


def _own_slope(line: Line, tilt: float) -> float:
    """A line's slope where it is long enough to show one; a box of a character or two says little."""
    weight = min(1.0, (line.x1 - line.x0) / (3 * line.text_height))
    return weight * line.slope + (1 - weight) * tilt


def _across(line: Line, tilt: float) -> float:
    """How far down the page a line's centre is, measured across the page's tilt."""
    x, y = line.centre
    return y - tilt * x


def _stacked(a: Line, b: Line) -> bool:
    """One line is above the other: they overlap across the page by more than a third of the shorter."""
    overlap = min(a.x1, b.x1) - max(a.x0, b.x0)
    return overlap > min(a.x1 - a.x0, b.x1 - b.x0) / 3


def _offset(a: Line, b: Line, tilt: float) -> float:
    """How far apart two lines' baselines are, in text heights, where they come closest across the page.

    Both lines' centre lines are extended to the middle of the gap between them, each along
    its own slope: a curved receipt bends, so the page's tilt fits neither end of a long row.
    """
    middle = (max(a.x0, b.x0) + min(a.x1, b.x1)) / 2
    heights = []
    for line in (a, b):
        x, y = line.centre
        heights.append(y + _own_slope(line, tilt) * (middle - x))
    return abs(heights[0] - heights[1]) / max(a.text_height, b.text_height)


def _page_rows(lines: list[Line]) -> list[Row]:
    """One page's lines in rows: the closest pairs along a baseline join first, never two stacked lines."""
    tilt = _dominant_slope(lines)
    lines = sorted(lines, key=lambda line: _across(line, tilt))
    pairs = []
    for i, a in enumerate(lines):
        for j in range(i + 1, len(lines)):
            b = lines[j]
            if _across(b, tilt) - _across(a, tilt) > 2 * max(a.text_height, b.text_height):
                break
            if not _stacked(a, b) and (offset := _offset(a, b, tilt)) < 0.5:
                pairs.append((offset, i, j))
    row_of = list(range(len(lines)))
    members = {i: [i] for i in range(len(lines))}
    for _, i, j in sorted(pairs):
        ri, rj = row_of[i], row_of[j]
        if ri == rj or any(_stacked(lines[k], lines[m]) for k in members[ri] for m in members[rj]):
            continue
        for k in members[rj]:
            row_of[k] = ri
        members[ri] += members.pop(rj)
    built = [[lines[k] for k in row] for row in members.values()]
    built.sort(key=lambda row: sum(_across(line, tilt) for line in row) / len(row))
    return [Row(tuple(sorted(row, key=lambda line: line.x0))) for row in built]


def rows(results: Sequence[OcrResult]) -> list[Row]:
    """All pages' lines grouped into rows in reading order."""
    out: list[Row] = []
    for result in sorted(results, key=lambda r: r.page_number):
        lines = [
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
        ]
        out.extend(_page_rows(lines))
    return out
