"""The interface every OCR engine implements."""

from __future__ import annotations

from collections.abc import Sequence
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


@runtime_checkable
class PageBatching(OcrEngine, Protocol):
    """An engine that can read several pages of a document in one request (the API engines)."""

    packs_pages: bool
    """False for a wrapper whose engine cannot."""

    def recognize_pages(
        self,
        images: Sequence[Path],
        task: OcrTask,
        *,
        doctype: DocType | None = None,
        first_page_number: int = 1,
    ) -> list[OcrResult]:
        """One result per request, numbered by the first page it covers."""
        ...
