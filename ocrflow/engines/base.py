"""The interface every OCR engine implements."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from ocrflow.doctypes import DocType
from ocrflow.models import OcrResult, OcrTask


@runtime_checkable
class OcrEngine(Protocol):
    """A page image and a task in, an :class:`OcrResult` out.

    Boxes are returned in the pixels of the image given; the pipeline maps them back
    to the original page. Engines raise only :mod:`ocrflow.errors` exceptions. ``doctype``
    matters only for key-information extraction: its JSON Schema names the fields to fill.
    """

    name: str
    model: str
    supported_tasks: frozenset[OcrTask]

    def recognize(
        self, image: Path, task: OcrTask, *, page_number: int = 1, doctype: DocType | None = None
    ) -> OcrResult: ...
