"""What both API engines do around the call: pack pages into requests, turn answers into results.

A request may carry several pages. The service answers once for all of them, so a packed
result describes its whole request: its ``page_number`` is the request's first page, its
``text``, ``key_values`` and ``usage`` cover every page in it. Advanced recognition is never
packed, because its boxes must belong to one page.

Each image's ``min_pixels``/``max_pixels`` and its token count come from :mod:`ocrflow.cost`
(fixed or adaptive bounds), the same figures ``ocrflow estimate`` shows.

An answer the service cut off (``x-dashscope-partialresponse``) is billed but unusable: its
usage is held under the request's pages and the page is retried. The retry that answers adds
the held usage to its own, so the document's usage says all it cost; what no retry claimed is
handed to the run's token budget by :meth:`ApiEngine.take_unanswered`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrflow import cost
from ocrflow.doctypes import DocType
from ocrflow.engines._images import EncodedImage, encode_image, pack
from ocrflow.engines._parse import parse_key_values, strip_fences, word_box
from ocrflow.engines._ratelimit import SharedRateLimit
from ocrflow.engines.kie import result_schema
from ocrflow.errors import EngineError, TransientError
from ocrflow.models import OcrLine, OcrResult, OcrTask, TokenLogprob, Usage
from ocrflow.settings import ApiLimits, CostOptions

_FENCED_TASKS = {OcrTask.TABLE_PARSING, OcrTask.DOCUMENT_PARSING, OcrTask.FORMULA_RECOGNITION}
_PROMPT_MARGIN = 64
"""Tokens kept free beside the prompt's own characters (chat markup, role tokens)."""
LINE_SCORE = 1.0
"""The APIs report no per-line confidence; a line they return is taken as read."""


@dataclass(frozen=True)
class Prepared:
    """A page ready to send: its image, its pixel bounds, and what it costs in input tokens."""

    image: EncodedImage
    min_pixels: int
    max_pixels: int
    tokens: int


@dataclass(frozen=True)
class PlannedRequest:
    """One request of a document: its pages (numbers and prepared images) and its prompt's schema."""

    first_page: int
    last_page: int
    pages: list[Prepared]
    schema: dict[str, Any] | None
    images: tuple[str, ...]
    """The page image paths, the request's identity for held usage."""

    @property
    def label(self) -> str:
        return pages_label(self.first_page, self.last_page)


def pages_label(first: int, last: int) -> str:
    """How messages name a request's pages: ``page 3`` or ``pages 3-5``."""
    return f"page {first}" if first == last else f"pages {first}-{last}"


@dataclass(frozen=True)
class Answer:
    """One response, reduced to what ocrflow keeps."""

    text: str
    usage: Usage
    words: list[dict[str, Any]] | None = None
    key_values: dict[str, Any] | None = None
    cut_off: str | None = None
    """Set when the service cut the answer off: the message of the error raised once its usage is held."""
    logprobs: tuple[TokenLogprob, ...] | None = None
    """The answer's token log probabilities, when the response carried them."""


class ApiEngine:
    """Base of the engines that send page images to a remote model; subclasses implement :meth:`_ask`."""

    name: str
    model: str
    supported_tasks: frozenset[OcrTask]
    packs_pages = True
    upload_from: int | None = None
    """Image files from this many bytes go by the SDK's local-file upload (see :mod:`._images`)."""

    def __init__(
        self, *, cost_options: CostOptions | None, max_input_tokens: int, limits: ApiLimits | None = None
    ) -> None:
        self.cost_options = cost_options or CostOptions()
        self._max_input_tokens = max_input_tokens
        self.rate_limit = SharedRateLimit(limits)
        self._unanswered: dict[tuple[str, ...], Usage] = {}
        self._unanswered_lock = threading.Lock()

    def recognize(
        self, image: Path, task: OcrTask, *, page_number: int = 1, doctype: DocType | None = None
    ) -> OcrResult:
        """Read one page, as :class:`~ocrflow.engines.base.OcrEngine` asks.

        ``doctype`` goes beyond the protocol and is optional: for key-information
        extraction its JSON Schema becomes the template of fields to fill; without it the
        model extracts every field it finds.
        """
        return self.recognize_pages([image], task, doctype=doctype, first_page_number=page_number)[0]

    def recognize_pages(
        self,
        images: Sequence[Path],
        task: OcrTask,
        *,
        doctype: DocType | None = None,
        first_page_number: int = 1,
    ) -> list[OcrResult]:
        """Read a document's pages in as few requests as the input limit allows; one result per request."""
        results = []
        for request in self.plan(images, task, doctype=doctype, first_page_number=first_page_number):
            self.rate_limit.acquire()
            started = time.perf_counter()
            answer = self._ask(request.pages, task, request.schema, request.label)
            held = (task.value, *request.images)
            if answer.cut_off is not None:
                self._hold(held, answer.usage)
                raise TransientError(answer.cut_off, code="partial_response")
            usage = self._claim(held) + answer.usage.model_copy(
                update={"pages": len(request.pages), "seconds": round(time.perf_counter() - started, 3)}
            )
            results.append(self.result(answer, task, request.first_page, request.pages[0].image, usage))
        return results

    def plan(
        self,
        images: Sequence[Path],
        task: OcrTask,
        *,
        doctype: DocType | None = None,
        first_page_number: int = 1,
        packed: bool = True,
    ) -> list[PlannedRequest]:
        """The requests that read ``images``: packed up to the input limit, one page each for boxes.

        ``packed=False`` sends each page alone (:func:`ocrflow.ocr.packs_pages` says when).
        """
        if task not in self.supported_tasks:
            supported = ", ".join(sorted(t.value for t in self.supported_tasks))
            raise EngineError(
                f"the {self.name} engine cannot do {task.value} with this model; it supports {supported}. "
                "Engines that can: the dashscope engine, or the openai engine with Qwen-OCR "
                "(OCRFLOW_OPENAI__PROMPT_STYLE=qwen-ocr)",
                code="unsupported_task",
            )
        schema = result_schema(doctype) if doctype and task is OcrTask.KEY_INFORMATION_EXTRACTION else None
        prepared = [self._prepare(Path(path)) for path in images]
        if task is OcrTask.ADVANCED_RECOGNITION or not packed:
            groups = [[i] for i in range(len(prepared))]
        else:
            reserve = len(self._prompt(task, schema)) + _PROMPT_MARGIN
            groups = pack([page.tokens for page in prepared], self._max_input_tokens - reserve)
        return [
            PlannedRequest(
                first_page=first_page_number + group[0],
                last_page=first_page_number + group[-1],
                pages=[prepared[i] for i in group],
                schema=schema,
                images=tuple(str(images[i]) for i in group),
            )
            for group in groups
        ]

    def take_unanswered(self, images: Sequence[Path]) -> Usage:
        """The usage of cut-off answers for requests among ``images`` that no retry claimed, now released."""
        names = {str(image) for image in images}
        with self._unanswered_lock:
            requests = [request for request in self._unanswered if set(request[1:]) <= names]
            return sum((self._unanswered.pop(request) for request in requests), Usage())

    def _hold(self, request: tuple[str, ...], usage: Usage) -> None:
        with self._unanswered_lock:
            self._unanswered[request] = self._unanswered.get(request, Usage()) + usage

    def _claim(self, request: tuple[str, ...]) -> Usage:
        with self._unanswered_lock:
            return self._unanswered.pop(request, Usage())

    def request_fingerprint(self, task: OcrTask) -> dict[str, str]:
        """What besides the image, model and task decides the answer, for :mod:`ocrflow.cache`.

        A key-information template depends on the document type, which this does not see.
        """
        options = self.cost_options
        parts = {
            "min_pixels": str(options.min_pixels),
            "max_pixels": str(options.max_pixels),
            "max_pixels_mode": options.max_pixels_mode,
            "prompt": hashlib.sha256(self._prompt(task, None).encode()).hexdigest()[:16],
        }
        if options.max_pixels_mode == "adaptive":
            parts["legible_text_height"] = str(options.legible_text_height)
        return parts

    def _prepare(self, path: Path) -> Prepared:
        image = encode_image(path, upload_from=self.upload_from)
        min_pixels, max_pixels = cost.pixel_bounds(path, self.model, self.cost_options)
        tokens = cost.image_tokens(
            image.height, image.width, model=self.model, min_pixels=min_pixels, max_pixels=max_pixels
        )
        return Prepared(image, min_pixels, max_pixels, tokens)

    def _prompt(self, task: OcrTask, schema: dict[str, Any] | None) -> str:
        """The instruction text the model reads for ``task`` (counted against the input limit)."""
        raise NotImplementedError

    def _ask(self, pages: list[Prepared], task: OcrTask, schema: dict[str, Any] | None, label: str) -> Answer:
        """Send one request; raise :mod:`ocrflow.errors` types only. ``label`` names the pages in messages."""
        raise NotImplementedError

    def result(
        self, answer: Answer, task: OcrTask, page_number: int, image: EncodedImage, usage: Usage
    ) -> OcrResult:
        """The reading an answer gives, numbered by the first page of its request."""
        lines: tuple[OcrLine, ...] = ()
        text = answer.text.strip()
        key_values = None
        if task is OcrTask.ADVANCED_RECOGNITION:
            lines = tuple(_lines(answer.words or [], image.scale))
            text = "\n".join(line.text for line in lines) if lines else text
        elif task is OcrTask.KEY_INFORMATION_EXTRACTION:
            key_values = answer.key_values if answer.key_values else parse_key_values(answer.text)
        elif task in _FENCED_TASKS:
            text = strip_fences(answer.text)
        return OcrResult(
            engine=self.name,
            model=self.model,
            task=task,
            page_number=page_number,
            lines=lines,
            text=text,
            key_values=key_values,
            usage=usage,
            logprobs=answer.logprobs,
        )


def _lines(words: list[dict[str, Any]], scale: float) -> list[OcrLine]:
    lines = []
    for word in words:
        box = word_box(word)
        text = word.get("text")
        if box is None or not isinstance(text, str) or not text.strip():
            continue
        lines.append(OcrLine(text=text, box=[[x * scale, y * scale] for x, y in box], score=LINE_SCORE))
    return lines
