"""Masking of ID and card numbers wherever a person monitors runs (artifacts, logs, lists)."""

from __future__ import annotations

from typing import Any

from ocrflow.doctypes import DocType


def mask_value(value: Any) -> str:
    """Keep the first four and last four characters: ``4107281991****5515`` -> ``4107**********5515``."""
    text = str(value)
    if len(text) <= 4:
        return "*" * len(text)
    if len(text) <= 8:
        return "*" * (len(text) - 2) + text[-2:]
    return text[:4] + "*" * (len(text) - 8) + text[-4:]


def masked_values(values: dict[str, Any], doctype: DocType | None) -> dict[str, Any]:
    """A copy of ``{field: value}`` with the schema's ``mask`` fields masked."""
    secret = doctype.masked_fields() if doctype else set()
    return {
        name: mask_value(v) if name in secret and v not in (None, "") else v for name, v in values.items()
    }
