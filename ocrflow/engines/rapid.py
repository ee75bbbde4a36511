"""The embedded offline engine: RapidOCR on onnxruntime, models shipped in its wheel."""

from __future__ import annotations

import ctypes
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Generic, TypeVar

from ocrflow.doctypes import DocType
from ocrflow.engines import _table_model
from ocrflow.engines._stitch import stitch_fragments
from ocrflow.errors import EngineError, InputError
from ocrflow.models import OcrLine, OcrResult, OcrTask, Usage
from ocrflow.settings import LocalEngineOptions

_Model = TypeVar("_Model")

_SUPPORTED = frozenset({OcrTask.TEXT_RECOGNITION, OcrTask.ADVANCED_RECOGNITION, OcrTask.MULTI_LAN})
API_ENGINES_FOR = "the dashscope engine, or the openai engine (Qwen-OCR, Qianfan-OCR or a Qwen3-VL server)"


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): its allocator has no such call
        return None


def release_freed_memory() -> None:
    """Hand the C heap's free pages back to the system, where the C library is glibc.

    onnxruntime (without its arena, as RapidOCR configures it) allocates a page's intermediate
    tensors from the C heap: several hundred MiB for a receipt scan at the detector's size.
    glibc keeps what is freed for reuse, so each page read at once otherwise stays resident at
    its peak: on a long PDF two pages at once held ~1.1 GiB (bench/RESULTS-overhead.md).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class ModelPool(Generic[_Model]):
    """At most ``size`` models in use at once, each loaded when first needed and kept for reuse.

    However many threads call in (Prefect's pool may be larger, preprocessing runs beside), no
    more models are loaded than may run at once: each one costs its weights' memory.
    """

    def __init__(self, load: Callable[[], _Model], size: int) -> None:
        self.size = size
        self._load = load
        self._slots = threading.BoundedSemaphore(size)
        self._idle: queue.SimpleQueue[_Model] = queue.SimpleQueue()

    @contextmanager
    def take(self) -> Iterator[_Model]:
        with self._slots:
            try:
                model = self._idle.get_nowait()
            except queue.Empty:
                model = self._load()
            try:
                yield model
            finally:
                self._idle.put(model)


class RapidOcrEngine:
    """RapidOCR 3.x with PP-OCRv6 detection and recognition (Chinese and Latin script).

    The angle classifier is off and detection is capped at 960 px by default: on the
    eval-dev text lines that cut the character error rate from 5.1% to 0.5% with no
    loss on receipts. Page orientation is the preprocessing stage's job.

    Multilingual recognition reads what its Chinese and Latin-script models can (French,
    German, Spanish...), not Cyrillic, Arabic, Korean or Japanese kana. Table parsing is offered
    when RapidTable's bundled model is installed (:mod:`ocrflow.engines._table_model`): the
    lines read here are matched to the cells it finds. Document parsing, formulas and
    key-information extraction need a vision-language model: the error names the engines.
    """

    name = "local"

    def __init__(self, options: LocalEngineOptions | None = None) -> None:
        self.options = options or LocalEngineOptions()
        self.model = "rapidocr-ppocrv6-small"
        self._tables = _table_model.TableModel() if _table_model.available() else None
        self.supported_tasks = _SUPPORTED | ({OcrTask.TABLE_PARSING} if self._tables else set())
        self.parallel = self.options.pages_at_once()
        """Pages read at once: each takes one of this many RapidOCR instances, made when first needed."""
        self._pool = ModelPool(self._load, self.parallel)

    @contextmanager
    def _engine(self) -> Iterator:
        # At most `parallel` pages are read at once, each with its own RapidOCR: pages x threads
        # stay within the cores.
        with self._pool.take() as ocr:
            try:
                yield ocr
            finally:
                if self.options.release_memory:
                    release_freed_memory()

    def _load(self):
        from rapidocr import RapidOCR

        params = {
            "Global.use_cls": self.options.use_angle_classifier,
            "Global.max_side_len": self.options.max_side_len,
            "Global.text_score": self.options.text_score,
            "Det.limit_side_len": self.options.detection_side,
            "Rec.rec_img_shape": [3, 48, self.options.line_width],
            "Rec.rec_batch_num": self.options.line_batch,
            "Global.log_level": "warning",
            # Each character's own confidence (grounding records it where a reading differs).
            "Global.return_word_box": True,
            "Global.return_single_char_box": True,
        }
        if self.options.threads:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = self.options.threads
        return RapidOCR(params=params)

    def recognize(
        self, image: Path, task: OcrTask, *, page_number: int = 1, doctype: DocType | None = None
    ) -> OcrResult:
        if task not in self.supported_tasks:
            supported = ", ".join(sorted(t.value for t in self.supported_tasks))
            missing = " (install rapid-table: scripts/setup.sh does)" if task is OcrTask.TABLE_PARSING else ""
            raise EngineError(
                f"the local engine cannot do {task.value}{missing}; it supports {supported}. "
                f"Engines that can: {API_ENGINES_FOR}.",
                code="unsupported_task",
            )
        if not Path(image).is_file():
            raise InputError(f"page image {image} does not exist", code="missing_page_image")
        started = time.perf_counter()
        try:
            with self._engine() as ocr:
                output = ocr(str(image))
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"RapidOCR failed on page {page_number}: {exc}") from exc
        boxes = output.boxes if output.boxes is not None else ()
        texts = output.txts or ()
        chars = _char_scores(output.word_results, texts)
        lines = stitch_fragments(
            [
                OcrLine(
                    text=text,
                    box=[[float(x), float(y)] for x, y in box],
                    score=float(score),
                    char_scores=scores,
                )
                for box, text, score, scores in zip(boxes, texts, output.scores or (), chars, strict=True)
            ]
        )
        text = "\n".join(line.text for line in lines)
        if task is OcrTask.TABLE_PARSING and self._tables is not None:
            text = self._tables.html(Path(image), lines)
        return OcrResult(
            engine=self.name,
            model=self.model,
            task=task,
            page_number=page_number,
            lines=lines,
            text=text,
            usage=Usage(pages=1, seconds=round(time.perf_counter() - started, 3)),
        )


def _char_scores(words: object, texts: Sequence[str]) -> list[tuple[float, ...] | None]:
    """Each line's per-character scores from RapidOCR's single-character results, where they fit.

    RapidOCR leaves out a character it could not box (and a line with none), so scores that
    do not spell the line's text exactly are not used.
    """
    per_line: list[tuple[float, ...] | None] = [None] * len(texts)
    if not isinstance(words, tuple | list) or len(words) != len(texts):
        return per_line
    for i, (text, line) in enumerate(zip(texts, words, strict=True)):
        if "".join(str(char) for char, _, _ in line) == text.replace(" ", ""):
            per_line[i] = tuple(float(score) for _, score, _ in line)
    return per_line
