"""The OCR stage: run an engine on a prepared page, report boxes in original-page pixels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ocrflow.doctypes import DocType
from ocrflow.engines.base import OcrEngine, PageBatching
from ocrflow.errors import ConfigurationError
from ocrflow.models import Affine, OcrResult, OcrTask, PageRef


def map_box(box: list[list[float]], affine: Affine) -> list[list[float]]:
    matrix = np.asarray(affine, dtype=float)
    points = np.asarray(box, dtype=float)
    mapped = points @ matrix[:, :2].T + matrix[:, 2]
    return [[round(float(x), 1), round(float(y), 1)] for x, y in mapped]


def choose_task(engine: OcrEngine, doctype: DocType | None, requested: OcrTask | None = None) -> OcrTask:
    """The task to read a document with.

    The run's ``requested`` task wins, then the type's own (``x-ocrflow.task``); either must be one
    the engine can do (:func:`check_task` says so before anything runs). Otherwise the richest task
    the engine offers: the schema's fields if the type is known, else lines with boxes.
    """
    wanted = requested or (OcrTask(doctype.task) if doctype is not None and doctype.task else None)
    if wanted is not None:
        return wanted
    if doctype is not None and OcrTask.KEY_INFORMATION_EXTRACTION in engine.supported_tasks:
        return OcrTask.KEY_INFORMATION_EXTRACTION
    if OcrTask.ADVANCED_RECOGNITION in engine.supported_tasks:
        return OcrTask.ADVANCED_RECOGNITION
    return OcrTask.TEXT_RECOGNITION


def check_task(engine: OcrEngine, doctype: DocType | None, requested: OcrTask | None = None) -> OcrTask:
    """The task :func:`choose_task` picks; a :class:`ConfigurationError` names the engines that can."""
    task = choose_task(engine, doctype, requested)
    if task not in engine.supported_tasks:
        from ocrflow.engines.rapid import API_ENGINES_FOR

        supported = ", ".join(sorted(t.value for t in engine.supported_tasks))
        raise ConfigurationError(
            f"the {engine.name} engine ({engine.model}) cannot do {task.value}; it does {supported}. "
            f"Engines that can: {API_ENGINES_FOR}"
        )
    return task


def recognize(
    page: PageRef, engine: OcrEngine, doctype: DocType | None = None, task: OcrTask | None = None
) -> OcrResult:
    """Read one page; engine errors propagate as :mod:`ocrflow.errors` types for the caller to route."""
    task = choose_task(engine, doctype, task)
    result = engine.recognize(page.path, task, page_number=page.page_number, doctype=doctype)
    return _in_original(result, page)


def packs_pages(
    engine: OcrEngine,
    doctype: DocType | None,
    task: OcrTask | None = None,
    *,
    independent_reading: bool = True,
) -> bool:
    """Whether the engine reads several pages in one request for this type's task.

    API engines pack pages up to their input-token limit, except for text with positions,
    whose boxes must each belong to one page. A packed key-information answer does not say
    which page a value is on; the independent reading finds it. Without that reading each
    page is a request of its own, so every value's page is known.
    """
    packing = isinstance(engine, PageBatching) and engine.packs_pages
    chosen = choose_task(engine, doctype, task)
    placeable = independent_reading or chosen is not OcrTask.KEY_INFORMATION_EXTRACTION
    return packing and placeable and chosen is not OcrTask.ADVANCED_RECOGNITION


def recognize_document(
    pages: Sequence[PageRef],
    engine: PageBatching,
    doctype: DocType | None = None,
    task: OcrTask | None = None,
) -> list[OcrResult]:
    """Read a document's pages in as few requests as the engine allows: one result per request.

    Pages are sent in runs of consecutive numbers, so each result's page range stays right
    when a page in the middle is missing.
    """
    task = choose_task(engine, doctype, task)
    results = []
    for run in _consecutive(sorted(pages, key=lambda page: page.page_number)):
        answers = engine.recognize_pages(
            [page.path for page in run], task, doctype=doctype, first_page_number=run[0].page_number
        )
        by_number = {page.page_number: page for page in run}
        results.extend(_in_original(answer, by_number.get(answer.page_number, run[0])) for answer in answers)
    return results


def _consecutive(pages: Sequence[PageRef]) -> list[list[PageRef]]:
    runs: list[list[PageRef]] = []
    for page in pages:
        if runs and page.page_number == runs[-1][-1].page_number + 1:
            runs[-1].append(page)
        else:
            runs.append([page])
    return runs


def _in_original(result: OcrResult, page: PageRef) -> OcrResult:
    """Boxes in the original page's pixels, and the frame the page was read in."""
    to_original = page.to_original
    lines = tuple(line.model_copy(update={"box": map_box(line.box, to_original)}) for line in result.lines)
    return result.model_copy(
        update={"lines": lines, "page_number": page.page_number, "reading_frame": invert(page.to_original)}
    )


def invert(affine: Affine) -> Affine:
    matrix = np.vstack([np.asarray(affine, dtype=float), [0.0, 0.0, 1.0]])
    return np.linalg.inv(matrix)[:2].round(9).tolist()
