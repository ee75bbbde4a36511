"""What an OCR call will cost before it is sent.

Qwen-VL-family models resize every image with ``smart_resize`` and bill one token per
``factor`` x ``factor`` pixels of the result, plus two for the vision start and end
markers. :func:`estimate` applies that to a document's pages (as :func:`ocrflow.ingest.ingest`
would send them) without sending anything. Prices come from
:class:`~ocrflow.settings.CostOptions`; with none set, the cost is unknown, not guessed.

Adaptive mode (:func:`adaptive_max_pixels`) measures how tall a page's text is and gives
the page the smallest pixel budget that keeps it at least ``legible_text_height`` pixels
tall after resizing; a page of large print then costs a fraction of the default.

A run's token budget (:mod:`ocrflow.admission`) reserves a document's image tokens plus,
per page, :func:`first_page_allowance` for the prompt and the answer.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ocrflow.doctypes import DocType
from ocrflow.engines.catalog import BATCH_PRICE_FACTOR, DOCUMENTED_PRICES, model_limits
from ocrflow.engines.kie import result_schema
from ocrflow.engines.prompts import prompt_for
from ocrflow.errors import ConfigurationError, InputError
from ocrflow.ingest import discover, ingest
from ocrflow.models import Frozen, OcrTask, PageRef, Reason, Usage
from ocrflow.settings import CostOptions, ModelPrice, Settings

MAX_ASPECT_RATIO = 200
VISION_MARKER_TOKENS = 2
"""``<|vision_start|>`` and ``<|vision_end|>`` (the docs' vision_bos/eos), one token each."""


@dataclass(frozen=True)
class ModelFamily:
    """How a family of models turns pixels into tokens, and its default pixel bounds."""

    name: str
    factor: int
    """Side in pixels of the square that costs one token."""
    min_pixels: int
    max_pixels: int


# Sources (Alibaba Cloud Model Studio): "Text extraction (Qwen-OCR)",
# https://www.alibabacloud.com/help/en/model-studio/qwen-vl-ocr: qwen-vl-ocr (= the
# 2025-11-20 snapshot, built on Qwen3-VL) bills 32x32 pixels per token, min_pixels
# 32*32*3 and max_pixels 32*32*8192 by default. "Image and video understanding"
# (vision), image-token section: 32x32 for Qwen3-VL and the listed 2025-07/08 qwen-vl
# snapshots, 28x28 for Qwen2.5-VL and other models, a floor of 4 tokens, and a default
# ceiling of 2560 tokens (32 px) or 1280 tokens (28 px) unless high resolution is asked for.
# The Qwen2.5-VL-based qwen-vl-ocr snapshots used 28 px and 28*28*4 .. 28*28*8192.
_QWEN_OCR = ModelFamily("qwen-vl-ocr", 32, 32 * 32 * 3, 32 * 32 * 8192)
_QWEN_OCR_28 = ModelFamily("qwen-vl-ocr (Qwen2.5-VL based)", 28, 28 * 28 * 4, 28 * 28 * 8192)
_QWEN3_VL = ModelFamily("Qwen3-VL / Qwen3.5", 32, 32 * 32 * 4, 32 * 32 * 2560)
_OTHER = ModelFamily("other (28 px)", 28, 28 * 28 * 4, 28 * 28 * 1280)

_FAMILIES: tuple[tuple[str, ModelFamily], ...] = (
    # First matching prefix wins, so pinned snapshots come before their family's name.
    ("qwen-vl-ocr-2024-", _QWEN_OCR_28),
    ("qwen-vl-ocr-2025-04-", _QWEN_OCR_28),
    ("qwen-vl-ocr-2025-08-", _QWEN_OCR_28),
    ("qwen-vl-ocr", _QWEN_OCR),
    ("qwen3", _QWEN3_VL),
    ("qwen-vl-max-2025-08-13", _QWEN3_VL),
    ("qwen-vl-plus-2025-08-15", _QWEN3_VL),
    ("qwen-vl-plus-2025-07-10", _QWEN3_VL),
)


def model_family(model: str) -> ModelFamily:
    """The family a model name belongs to; an organisation prefix (``Qwen/``) and case are ignored."""
    name = model.rsplit("/", 1)[-1].lower()
    return next((family for prefix, family in _FAMILIES if name.startswith(prefix)), _OTHER)


# --- smart_resize and tokens ------------------------------------------------------------


def smart_resize(
    height: int, width: int, *, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """The ``(height, width)`` a Qwen-VL model resizes an image to, as its reference code does.

    Both sides become multiples of ``factor``; if that leaves more than ``max_pixels`` (or
    fewer than ``min_pixels``) the image is scaled by the square root of the ratio,
    rounding down (up), keeping its aspect ratio as closely as the multiples allow.
    This is ``qwen_vl_utils.smart_resize`` (QwenLM/Qwen3-VL), which Model Studio's token
    calculator follows; that calculator omits the one-``factor`` floor per side, which
    only matters for sides under ``factor / 2`` pixels.
    """
    if min(height, width) < 1:
        raise InputError(f"an image of {width}x{height} pixels has no area", code="empty_image")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise InputError(
            f"the image is {width}x{height} pixels: its aspect ratio is over {MAX_ASPECT_RATIO}:1, "
            "which Qwen-VL models refuse; crop or split it",
            code="extreme_aspect_ratio",
        )
    if min_pixels > max_pixels:
        raise ConfigurationError(f"min_pixels ({min_pixels:,}) is larger than max_pixels ({max_pixels:,})")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def image_tokens(
    height: int, width: int, *, model: str, min_pixels: int | None = None, max_pixels: int | None = None
) -> int:
    """Input tokens one image costs: one per ``factor``² pixels after :func:`smart_resize`, plus 2."""
    family = model_family(model)
    h_bar, w_bar = smart_resize(
        height,
        width,
        factor=family.factor,
        min_pixels=family.min_pixels if min_pixels is None else min_pixels,
        max_pixels=family.max_pixels if max_pixels is None else max_pixels,
    )
    return h_bar * w_bar // family.factor**2 + VISION_MARKER_TOKENS


# --- adaptive max_pixels ------------------------------------------------------------------

_WORK_SIDE = 1600
"""Pages are measured at most this long: enough for 10 px glyphs on an A4 scan, and fast."""
_MIN_GLYPHS = 5


def text_height(page: Path) -> float | None:
    """The median glyph height on a page, in its own pixels; ``None`` if no text is found.

    Glyphs are the connected components of a locally thresholded image, kept when they
    are shaped like characters (not rules, boxes, specks or pictures). Their median height
    sits between the x-height and the cap height, about 0.75 of the line boxes SROIE and
    FUNSD annotate (bench/RESULTS-cost.md).
    """
    gray = cv2.imread(str(page), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        return None
    scale = min(1.0, _WORK_SIDE / max(gray.shape))
    if scale < 1:
        size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    # A local threshold, because photos have shadows and dark surroundings Otsu would split on;
    # the closing joins dot-matrix strokes that would otherwise count as many tiny glyphs.
    ink = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 31, 15)
    ink = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    parts = stats[1:].astype(float)  # row 0 is the background
    widths, heights = parts[:, cv2.CC_STAT_WIDTH], parts[:, cv2.CC_STAT_HEIGHT]
    aspect, fill = widths / heights, parts[:, cv2.CC_STAT_AREA] / (widths * heights)
    glyph = (
        (heights >= 4)
        & (heights <= 0.9 * gray.shape[0])
        & (aspect >= 0.15)
        & (aspect <= 2.5)
        & (fill >= 0.15)
        & (fill <= 0.9)
    )
    if glyph.sum() < _MIN_GLYPHS:
        return None
    return float(np.median(heights[glyph])) / scale


def _bounds(family: ModelFamily, options: CostOptions) -> tuple[int, int]:
    min_pixels = family.min_pixels if options.min_pixels is None else options.min_pixels
    max_pixels = family.max_pixels if options.max_pixels is None else options.max_pixels
    if min_pixels > max_pixels:
        raise ConfigurationError(
            f"cost.min_pixels ({min_pixels:,}) is larger than cost.max_pixels ({max_pixels:,})"
        )
    return min_pixels, max_pixels


def _image_size(page: Path) -> tuple[int, int]:
    with Image.open(page) as image:
        return image.size


def adaptive_max_pixels(page: Path, model: str, options: CostOptions) -> int:
    """The smallest ``max_pixels`` (whole tokens) keeping the page's text legible after resizing.

    Legible means the median glyph height (:func:`text_height`) stays at least
    ``options.legible_text_height`` pixels. Pages are never enlarged for it, and the result
    never exceeds the fixed ceiling (``options.max_pixels`` or the model's default). A page
    where no text is found gets the ceiling: better to pay for it than to lose it.
    """
    family = model_family(model)
    min_pixels, ceiling = _bounds(family, options)
    glyphs = text_height(page)
    if glyphs is None:
        return ceiling
    width, height = _image_size(page)

    def scale(max_pixels: int) -> float:
        h_bar, w_bar = smart_resize(
            height, width, factor=family.factor, min_pixels=min_pixels, max_pixels=max_pixels
        )
        return min(h_bar / height, w_bar / width)

    wanted = min(options.legible_text_height / glyphs, scale(ceiling))
    token_pixels = family.factor**2
    low, high = max(1, math.ceil(min_pixels / token_pixels)), ceiling // token_pixels
    if high < low or scale(high * token_pixels) < wanted:
        return ceiling
    # The resized size grows monotonically with max_pixels, so the smallest fit is a bisection away.
    while low < high:
        middle = (low + high) // 2
        if scale(middle * token_pixels) >= wanted:
            high = middle
        else:
            low = middle + 1
    return low * token_pixels


def pixel_bounds(page: Path | None, model: str, options: CostOptions) -> tuple[int, int]:
    """``(min_pixels, max_pixels)`` to send with a page: adaptive when set and the page is at hand."""
    min_pixels, max_pixels = _bounds(model_family(model), options)
    if options.max_pixels_mode == "adaptive" and page is not None:
        max_pixels = adaptive_max_pixels(page, model, options)
    return min_pixels, max_pixels


# --- estimates ------------------------------------------------------------------------------


class PageEstimate(Frozen):
    """One page's image tokens and their input cost, before anything is sent."""

    page_number: int
    width: int
    height: int
    resized: tuple[int, int]
    """``(height, width)`` after :func:`smart_resize`, as the model will see the page."""
    min_pixels: int
    max_pixels: int
    tokens: int
    """Image tokens including the 2 vision markers; the prompt and the answer are not included."""
    cost: float | None
    """``tokens`` at the model's input price; ``None`` when no price is set."""


class DocumentEstimate(Frozen):
    path: Path
    pages: tuple[PageEstimate, ...] = ()
    reasons: tuple[Reason, ...] = ()
    """Why pages (or the whole document) could not be estimated, as ingest reports them."""

    @property
    def tokens(self) -> int:
        return sum(page.tokens for page in self.pages)

    @property
    def cost(self) -> float | None:
        costs = [page.cost for page in self.pages]
        return None if not costs or None in costs else sum(costs)


def estimate_page(
    page: Path | tuple[int, int], model: str, options: CostOptions, *, page_number: int = 1
) -> PageEstimate:
    """Tokens and input cost of one page, given as an image file or as its ``(width, height)``.

    A bare size cannot be measured, so adaptive mode needs the file; a size gets the fixed bounds.
    """
    if isinstance(page, tuple):
        width, height = page
        min_pixels, max_pixels = pixel_bounds(None, model, options)
    else:
        width, height = _image_size(page)
        min_pixels, max_pixels = pixel_bounds(page, model, options)
    family = model_family(model)
    resized = smart_resize(height, width, factor=family.factor, min_pixels=min_pixels, max_pixels=max_pixels)
    tokens = resized[0] * resized[1] // family.factor**2 + VISION_MARKER_TOKENS
    price = price_of(model, options)
    return PageEstimate(
        page_number=page_number,
        width=width,
        height=height,
        resized=resized,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        tokens=tokens,
        cost=None if price is None else tokens * price.input / 1_000_000 + price.per_1k_images / 1000,
    )


def estimate(paths: Iterable[Path], settings: Settings, model: str) -> list[DocumentEstimate]:
    """Estimate every document under ``paths`` (folders expanded) page by page; nothing is sent.

    Pages are made exactly as a run makes them (PDFs rendered at ``settings.ingest.pdf_dpi``),
    in a temporary folder removed afterwards.
    """
    estimates = []
    with tempfile.TemporaryDirectory(prefix="ocrflow-estimate-") as work:
        for path in discover(paths, follow_links_outside=settings.ingest.follow_links_outside):
            ingested = ingest(path, Path(work), settings.ingest)
            pages = tuple(
                estimate_page(page.path, model, settings.cost, page_number=page.page_number)
                for page in ingested.pages
            )
            estimates.append(DocumentEstimate(path=path, pages=pages, reasons=ingested.reasons))
    return estimates


def document_tokens(pages: Iterable[PageRef], model: str, options: CostOptions) -> int:
    """The image tokens a document's pages will cost, for the run's budget.

    A page the model would refuse (an extreme aspect ratio) costs nothing: it is never sent.
    """
    total = 0
    for page in pages:
        try:
            total += estimate_page(page.path, model, options, page_number=page.page_number).tokens
        except InputError:
            continue
    return total


PROMPT_MARKUP_TOKENS = 64
"""Chat markup and role tokens around a request's prompt (the engines keep as much free when packing)."""


def first_page_allowance(settings: Settings, task: OcrTask, doctype: DocType | None = None) -> int:
    """Tokens beyond its image one page is reserved before any document of the run has finished.

    An upper bound, so the first documents cannot overshoot the budget: the task's prompt at one
    token per character (every ASCII and common CJK character is at most one token in Qwen's
    tokenizer) plus chat markup, as if each page went in a request of its own, and
    ``cost.output_tokens_per_page`` (default: the model's documented output limit) for the answer,
    capped by ``openai.max_tokens`` where set.
    """
    schema = result_schema(doctype) if doctype and task is OcrTask.KEY_INFORMATION_EXTRACTION else None
    output = settings.cost.output_tokens_per_page or model_limits(billed_model(settings)).max_output
    if settings.engine == "openai":
        options = settings.openai
        prompt = prompt_for(
            task, options.prompt_style, result_schema=schema, language=options.qwen_prompt_language
        )
        output = min(output, options.max_tokens or output)
    else:
        # DashScope's native API applies the documented Qwen-OCR prompt itself; it still counts as input.
        prompt = prompt_for(task, "qwen-ocr", result_schema=schema)
    return len(prompt) + PROMPT_MARKUP_TOKENS + output


def billed_model(settings: Settings, engine: str | None = None, model: str | None = None) -> str:
    """The model an estimate prices: ``model`` if given, else the one the API ``engine`` is set to use.

    Without either, the configured engine's model; if that engine is the free embedded one,
    DashScope's model, since the question is what the API would cost.
    """
    models = {"dashscope": settings.dashscope.model, "openai": settings.openai.model}
    if model:
        return model
    if engine is None:
        return models.get(settings.engine, settings.dashscope.model)
    if engine not in models:
        raise ConfigurationError(
            f"the {engine!r} engine is not billed per token; name an API engine (--engine dashscope or "
            "--engine openai) or a model (--model qwen-vl-ocr)"
        )
    return models[engine]


def price_of(model: str, options: CostOptions) -> ModelPrice | None:
    """The price set in ``options`` for ``model``, else the one the reference states, else ``None``."""
    if model in options.prices:
        return options.prices[model]
    documented = DOCUMENTED_PRICES.get(model)
    if documented is None:
        return None
    return ModelPrice(
        input=documented.input_per_million or 0.0,
        output=documented.output_per_million or 0.0,
        per_1k_images=documented.per_1k_images or 0.0,
        as_of=documented.as_of,
        source=f"{documented.source}; {documented.note}" if documented.note else documented.source,
    )


def usage_cost(usage: Usage, model: str, options: CostOptions, *, batch: bool = False) -> float | None:
    """What a call's usage cost at the model's price, or ``None`` when it has none.

    DashScope's ``input_tokens`` already include the ``image_tokens``. ``batch``: the Batch API's
    price, half the real-time one (``ocrflow.engines.catalog.BATCH_PRICE_FACTOR``).
    """
    price = price_of(model, options)
    if price is None:
        return None
    cost = (usage.input_tokens * price.input + usage.output_tokens * price.output) / 1_000_000
    cost += usage.pages * price.per_1k_images / 1000
    return cost * BATCH_PRICE_FACTOR if batch else cost
