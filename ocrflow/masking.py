"""Masking of ID and card numbers wherever a person monitors runs (artifacts, logs, lists).

By length: at most a third of a number's characters are shown, and never more than its
last four (``110101199003071233`` -> ``**************1233``, passport ``L898902C3`` ->
``******2C3``). Only letters and digits count and are hidden; separators (spaces, dashes,
an MRZ's ``<`` fillers) stay where they are, so the shape of the number is still visible.
"""

from __future__ import annotations

from typing import Any

from ocrflow.doctypes import DocType

MAX_SHOWN = 4
"""Trailing characters a masked number shows at most."""


def shown_characters(length: int) -> int:
    """How many trailing letters or digits of a ``length``-character number may be shown."""
    return min(MAX_SHOWN, length // 3)


def mask_value(value: Any) -> str:
    """``4107281991****5515`` -> ``**************5515``; ``L898902C3`` -> ``******2C3``."""
    text = str(value)
    significant = [i for i, char in enumerate(text) if char.isalnum()]
    keep = set(significant[len(significant) - shown_characters(len(significant)) :])
    return "".join(char if i in keep or not char.isalnum() else "*" for i, char in enumerate(text))


def masked_values(values: dict[str, Any], doctype: DocType | None) -> dict[str, Any]:
    """A copy of ``{field: value}`` with the schema's ``mask`` fields masked."""
    secret = doctype.masked_fields() if doctype else set()
    return {
        name: mask_value(v) if name in secret and v not in (None, "") else v for name, v in values.items()
    }
