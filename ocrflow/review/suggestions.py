"""Checksum repairs to offer a reviewer: one common OCR confusion that makes a number valid.

Only suggested, never applied: a repaired digit that happens to pass a checksum is still a
guess (checks.py refuses to guess for the same reason), so a person looks at the image
and chooses.
"""

from __future__ import annotations

from ocrflow.checks import FORMAT_CHECKS
from ocrflow.doctypes import DocType
from ocrflow.models import FieldResult

CONFUSIONS: tuple[tuple[str, str], ...] = (("8", "X"), ("1", "7"), ("0", "O"), ("5", "S"), ("2", "Z"))
"""Character pairs OCR mixes up on ID and card numbers; each is tried both ways."""

_SWAPS: dict[str, tuple[str, ...]] = {}
for _a, _b in CONFUSIONS:
    for _from, _to in ((_a, _b), (_b, _a)):
        _SWAPS[_from] = (*_SWAPS.get(_from, ()), _to)
        if _from.isalpha():
            _SWAPS[_from.lower()] = (*_SWAPS.get(_from.lower(), ()), _to)


def repairs(value: str, number_format: str) -> list[str]:
    """Every one-character confusion of ``value`` that passes the format's check, in order."""
    check = FORMAT_CHECKS.get(number_format)
    if check is None or not value or check.is_valid(value):
        return []
    found: list[str] = []
    for index, char in enumerate(value):
        for replacement in _SWAPS.get(char, ()):
            candidate = value[:index] + replacement + value[index + 1 :]
            if candidate not in found and check.is_valid(candidate):
                found.append(candidate)
    return found


def field_repairs(fields: dict[str, FieldResult], doctype: DocType | None) -> dict[str, list[str]]:
    """Suggested repairs by field, for the checked-number fields whose value fails its check."""
    if doctype is None:
        return {}
    suggestions = {}
    for name, field in fields.items():
        spec = doctype.fields.get(name)
        if spec is None or spec.format not in FORMAT_CHECKS or not isinstance(field.value, str):
            continue
        found = repairs(field.value, spec.format)
        if found:
            suggestions[name] = found
    return suggestions
