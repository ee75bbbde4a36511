"""Reading model output robustly: code fences, pseudo-JSON, text lines with boxes.

Vision models wrap answers in Markdown fences (```json, ```html, ```latex), put prose
around JSON, and, when prompted with the single-quoted examples of Qwen-OCR's own
documentation, answer in Python-literal style (``{'发票号码': 'xxx'}``) with full-width
colons. The contract for key-value output: :func:`parse_key_values` returns a ``dict`` or
``None``, never raises. An engine that gets ``None`` keeps the raw answer in
``OcrResult.text`` and leaves ``key_values`` as ``None``; extraction then finds no fields,
so the document goes to review with the model's answer kept for the reviewer.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ocrflow.models import Box

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n?(.*?)(?:```|\Z)", re.DOTALL)
_MAX_LITERAL_CHARS = 200_000
"""Longer answers are not fed to ``ast.literal_eval``: its parser recurses and allocates freely."""
_OUTSIDE_STRINGS = str.maketrans({"：": ":", "，": ",", "｛": "{", "｝": "}", "［": "[", "］": "]"})
_WORD = re.compile(r"[A-Za-z_]+")
_WORDS = {"null": "None", "true": "True", "false": "False", "None": "None", "True": "True", "False": "False"}


def strip_fences(text: str) -> str:
    """The content of the first fenced block (an unclosed fence runs to the end), else ``text`` stripped."""
    match = _FENCE.search(text)
    return (match.group(2) if match else text).strip()


def parse_key_values(text: str) -> dict[str, Any] | None:
    """The JSON object in a model's answer, or ``None`` when there is none to be read safely."""
    for candidate in _candidates(text):
        value = _load(candidate)
        if isinstance(value, dict):
            return value
    return None


def _candidates(text: str) -> Iterable[str]:
    inner = strip_fences(text)
    yield inner
    for source in (inner, text):
        span = _outer_braces(source)
        if span:
            yield span


def _outer_braces(text: str) -> str | None:
    """From the first ``{`` to its matching ``}``, honouring quotes; ``None`` if unbalanced."""
    start = text.find("{")
    if start < 0:
        return None
    depth, run_start = 0, start
    for run, quoted in _quoted_runs(text[start:]):
        for offset, ch in enumerate("" if quoted else run):
            if ch in "{｛":
                depth += 1
            elif ch in "}｝":
                depth -= 1
                if depth == 0:
                    return text[start : run_start + offset + 1]
        run_start += len(run)
    return None


def _load(candidate: str) -> Any:
    try:
        return json.loads(candidate)
    except ValueError:
        pass
    if len(candidate) > _MAX_LITERAL_CHARS:
        return None
    try:
        # literal_eval only builds literals (no names, calls or attributes): safe on untrusted text.
        return ast.literal_eval(_pythonize(candidate))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _pythonize(text: str) -> str:
    """Full-width punctuation and JSON words outside strings become their Python-literal forms."""
    return "".join(run if quoted else _pythonize_unquoted(run) for run, quoted in _quoted_runs(text))


def _pythonize_unquoted(run: str) -> str:
    # Any other bare word cannot be a literal; leaving it makes literal_eval refuse the text.
    return _WORD.sub(lambda word: _WORDS.get(word[0], word[0]), run).translate(_OUTSIDE_STRINGS)


def _quoted_runs(text: str) -> Iterator[tuple[str, bool]]:
    """``text`` cut into runs outside and inside quotes (``'`` or ``"``, with backslash escapes).

    Each run comes with whether it is quoted; a quoted run includes its quotes, and an unclosed
    quote runs to the end.
    """
    run_start, quote, escaped = 0, "", False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                yield text[run_start : i + 1], True
                run_start, quote = i + 1, ""
        elif ch in "\"'":
            if i > run_start:
                yield text[run_start:i], False
            run_start, quote = i, ch
    if run_start < len(text):
        yield text[run_start:], bool(quote)


def parse_words(text: str) -> list[dict[str, Any]]:
    """Text lines with boxes from a JSON list in the answer (compatible-mode advanced recognition)."""
    for candidate in (strip_fences(text), text):
        start, end = candidate.find("["), candidate.rfind("]")
        if start < 0 or end <= start:
            continue
        value = _load(candidate[start : end + 1])
        if isinstance(value, list):
            return [item for item in value if isinstance(item, dict) and isinstance(item.get("text"), str)]
    return []


def word_box(word: Mapping[str, Any]) -> Box | None:
    """A text line's four corners: its ``location`` if given, else its ``rotate_rect``."""
    location = word.get("location")
    if _numbers(location, 8):
        return [[float(location[i]), float(location[i + 1])] for i in range(0, 8, 2)]
    rect = word.get("rotate_rect")
    if _numbers(rect, 5):
        return rotated_rect_corners(*(float(v) for v in rect))
    return None


def _numbers(value: Any, count: int) -> bool:
    return (
        isinstance(value, Sequence)
        and len(value) == count
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


def rotated_rect_corners(cx: float, cy: float, width: float, height: float, angle: float) -> Box:
    """Corners of ``[cx, cy, width, height, angle]`` (degrees), clockwise from the top-left one."""
    theta = math.radians(angle)
    ux, uy = math.cos(theta) * width / 2, math.sin(theta) * width / 2
    vx, vy = -math.sin(theta) * height / 2, math.cos(theta) * height / 2
    corners = [
        (cx + sx * ux + sy * vx, cy + sx * uy + sy * vy) for sx, sy in ((1, 1), (1, -1), (-1, -1), (-1, 1))
    ]
    # Image y points down, so increasing atan2 goes clockwise on screen.
    corners.sort(key=lambda p: math.atan2(p[1] - cy, p[0] - cx))
    first = min(range(4), key=lambda k: corners[k][0] + corners[k][1])
    ordered = corners[first:] + corners[:first]
    return [[round(x, 1), round(y, 1)] for x, y in ordered]
