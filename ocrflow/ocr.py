"""The OCR stage: run an engine on a prepared page, report boxes in original-page pixels."""

from __future__ import annotations

import numpy as np

from ocrflow.doctypes import DocType
from ocrflow.engines.base import OcrEngine
from ocrflow.models import Affine, OcrLine, OcrResult, OcrTask, PageRef


def map_box(box: list[list[float]], affine: Affine) -> list[list[float]]:
    matrix = np.asarray(affine, dtype=float)
    points = np.asarray(box, dtype=float)
    mapped = points @ matrix[:, :2].T + matrix[:, 2]
    return [[round(float(x), 1), round(float(y), 1)] for x, y in mapped]


def choose_task(engine: OcrEngine, doctype: DocType | None) -> OcrTask:
    """The richest task the engine offers: the schema's fields if the type is known, else lines with boxes."""
    if doctype is not None and OcrTask.KEY_INFORMATION_EXTRACTION in engine.supported_tasks:
        return OcrTask.KEY_INFORMATION_EXTRACTION
    if OcrTask.ADVANCED_RECOGNITION in engine.supported_tasks:
        return OcrTask.ADVANCED_RECOGNITION
    return OcrTask.TEXT_RECOGNITION


def recognize(page: PageRef, engine: OcrEngine, doctype: DocType | None = None) -> OcrResult:
    """Read one page; engine errors propagate as :mod:`ocrflow.errors` types for the caller to route."""
    task = choose_task(engine, doctype)
    result = engine.recognize(page.path, task, page_number=page.page_number, doctype=doctype)
    lines = tuple(
        OcrLine(text=line.text, box=map_box(line.box, page.to_original), score=line.score)
        for line in result.lines
    )
    return result.model_copy(
        update={"lines": lines, "page_number": page.page_number, "reading_frame": invert(page.to_original)}
    )


def invert(affine: Affine) -> Affine:
    matrix = np.vstack([np.asarray(affine, dtype=float), [0.0, 0.0, 1.0]])
    return np.linalg.inv(matrix)[:2].round(9).tolist()
