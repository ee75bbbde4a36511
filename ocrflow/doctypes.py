"""Document types: one JSON Schema file each, read once and shared by every stage.

The same schema drives extraction (``x-ocrflow`` hints per property), validation
(``type``, ``pattern``, ``format``), the review form and masking. See
``schemas/README.md`` for the keywords.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ocrflow.checks import FORMAT_CHECKS
from ocrflow.errors import ConfigurationError
from ocrflow.project import SCHEMA_DIR

SCHEMA_SUFFIX = ".schema.json"


@dataclass(frozen=True)
class FieldSpec:
    """One property of a document type, with its extraction hints."""

    name: str
    schema: dict[str, Any]
    required: bool

    @property
    def hints(self) -> dict[str, Any]:
        return self.schema.get("x-ocrflow", {})

    @property
    def title(self) -> str:
        return self.schema.get("title", self.name.replace("_", " "))

    @property
    def labels(self) -> list[str]:
        return list(self.hints.get("labels", []))

    @property
    def pattern(self) -> str | None:
        return self.hints.get("pattern")

    @property
    def normalize(self) -> str:
        return self.hints.get("normalize", "text")

    @property
    def locate(self) -> str:
        return self.hints.get("locate", "label")

    @property
    def masked_in_views(self) -> bool:
        """ID and card numbers: shown masked wherever a person monitors runs.

        A field with a checked number format (an ID, a card number, an IBAN, an MRZ line,
        which holds the document number) is masked whether or not the schema says ``mask``.
        """
        return bool(self.hints.get("mask", False)) or self.format in FORMAT_CHECKS

    @property
    def allow_masked(self) -> bool:
        """The document itself prints this number partly masked (a train ticket's ID)."""
        return bool(self.hints.get("allow_masked", False))

    @property
    def format(self) -> str | None:
        return self.schema.get("format")


@dataclass(frozen=True)
class DocType:
    name: str
    schema: dict[str, Any]
    path: Path | None = field(default=None, compare=False)

    @property
    def hints(self) -> dict[str, Any]:
        return self.schema.get("x-ocrflow", {})

    @cached_property
    def fields(self) -> dict[str, FieldSpec]:
        required = set(self.schema.get("required", []))
        return {
            name: FieldSpec(name=name, schema=prop, required=name in required)
            for name, prop in self.schema.get("properties", {}).items()
        }

    @property
    def detect_keywords(self) -> list[str]:
        return list(self.hints.get("detect", []))

    @property
    def task(self) -> str | None:
        """The OCR task the type asks for (``x-ocrflow.task``, e.g. ``table_parsing``), else ``None``."""
        task = self.hints.get("task")
        return str(task) if task else None

    @property
    def rules(self) -> list[str]:
        return list(self.hints.get("rules", []))

    @property
    def examples(self) -> list[dict[str, Any]]:
        return list(self.schema.get("examples", []))

    def masked_fields(self) -> set[str]:
        return {name for name, spec in self.fields.items() if spec.masked_in_views}


def bundled_schema_dir() -> Path:
    """The schemas shipped with ocrflow: the project's ``schemas/`` (see :mod:`ocrflow.project`)."""
    return SCHEMA_DIR


def load_doctype(path: Path) -> DocType:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read document-type schema {path}: {exc}") from exc
    name = path.name[: -len(SCHEMA_SUFFIX)]
    return DocType(name=name, schema=schema, path=path)


def load_doctypes(extra_dir: Path | None = None) -> dict[str, DocType]:
    """Every document type, bundled first; a schema in ``extra_dir`` overrides a bundled one."""
    dirs = [bundled_schema_dir()] + ([Path(extra_dir)] if extra_dir else [])
    types: dict[str, DocType] = {}
    for directory in dirs:
        if not directory.is_dir():
            raise ConfigurationError(f"schema folder {directory} does not exist")
        for path in sorted(directory.glob(f"*{SCHEMA_SUFFIX}")):
            doctype = load_doctype(path)
            types[doctype.name] = doctype
    return types


def get_doctype(types: dict[str, DocType], name: str) -> DocType:
    try:
        return types[name]
    except KeyError:
        known = ", ".join(sorted(types))
        raise ConfigurationError(f"unknown document type {name!r}; known types: {known}, or auto") from None
