"""The key-information-extraction template (``result_schema``) built from a document type.

Qwen-OCR fills a JSON template whose keys are the fields to find and whose values say
what each field is. ocrflow builds that template from the document type's JSON Schema,
so one schema drives extraction and validation for every engine: each property becomes
a key, its ``description`` (or ``title``) the value hint. The API accepts at most three
levels of nesting; deeper objects are flattened into their own hint.
"""

from __future__ import annotations

from typing import Any

from ocrflow.doctypes import DocType

MAX_DEPTH = 3
"""Qwen-OCR's documented limit for nested ``result_schema`` templates."""


def result_schema(doctype: DocType) -> dict[str, Any]:
    """The ``result_schema`` for ``doctype``: property names as keys, descriptions as value hints."""
    return _template(doctype.schema, depth=1)


def _hint(prop: dict[str, Any]) -> str:
    return str(prop.get("description") or prop.get("title") or "")


def _template(schema: dict[str, Any], depth: int) -> dict[str, Any]:
    return {name: _value(prop, depth) for name, prop in schema.get("properties", {}).items()}


def _value(prop: dict[str, Any], depth: int) -> Any:
    types = prop.get("type")
    types = set(types) if isinstance(types, list) else {types}
    if "object" in types and "properties" in prop and depth < MAX_DEPTH:
        return _template(prop, depth + 1)
    items = prop.get("items")
    if "array" in types and isinstance(items, dict):
        # A list is given as a one-element template that the model repeats per element.
        if "properties" in items and depth < MAX_DEPTH:
            return [_template(items, depth + 1)]
        return [_hint(items) or _hint(prop)]
    return _hint(prop)
