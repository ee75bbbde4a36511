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
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ocrflow.models import Box

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n?(.*?)(?:```|\Z)", re.DOTALL)
_MAX_LITERAL_CHARS = 200_000
"""Longer answers are not fed to ``ast.literal_eval``: its parser recurses and allocates freely."""
_OUTSIDE_STRINGS = {"：": ":", "，": ",", "｛": "{", "｝": "}", "［": "[", "］": "]"}
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
    depth, quote, escaped = 0, "", False
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "{｛":
            depth += 1
        elif ch in "}｝":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
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
    out: list[str] = []
    quote, escaped, i = "", False, 0
    while i < len(text):
        ch = text[i]
        if quote:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            i += 1
            continue
        if ch in "\"'":
            quote = ch
            out.append(ch)
            i += 1
            continue
        word = re.match(r"[A-Za-z_]+", text[i:])
        if word:
            # Any other bare word cannot be a literal; leaving it makes literal_eval refuse the text.
            out.append(_WORDS.get(word.group(0), word.group(0)))
            i += len(word.group(0))
            continue
        out.append(_OUTSIDE_STRINGS.get(ch, ch))
        i += 1
    return "".join(out)


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
