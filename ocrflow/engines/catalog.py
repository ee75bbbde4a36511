"""What the vendor documents about its models: limits, regions, Batch availability, prices.

Every figure here comes from the documentation copied into ``../shared/reference/`` (the
tests read those files and compare), except where a docstring says otherwise:

- Token limits: "Text extraction (Qwen-OCR)", table "Availability" (reference 001; the
  guide, reference 000, gives the same figures): qwen-vl-ocr and qwen-vl-ocr-2025-11-20
  have a 38,192-token context window, at most 30,000 input tokens and 8,192 output tokens.
  The reference gives no figures for other snapshots; they get the same, as the nearest
  documented model (the budget then reserves the larger answer, never a smaller one).
- Which region serves which model: DashScope's OpenAI-compatible mode page, "Supported
  models" (reference 003).
- Prices: the reference gives none for Qwen-OCR (it links to a pricing page that is not
  part of it); Qianfan-OCR's page (reference 004) gives an estimated price per 1,000 images.
- Batch: the reference says only that the Batch API processes non-real-time work "at a lower
  cost" (001, "Going live"). The 50% price and the models and regions come from Model
  Studio's "OpenAI compatible - Batch (file input)" page (last updated 2026-03-31), which is
  not in the reference (:data:`BATCH_SOURCE`); the per-file limits are the ones issue 10 states.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger("ocrflow")


@dataclass(frozen=True)
class ModelLimits:
    """A model's documented token limits per request."""

    context_window: int
    max_input: int
    max_output: int


QWEN_OCR_LIMITS = ModelLimits(context_window=38_192, max_input=30_000, max_output=8_192)
"""qwen-vl-ocr and qwen-vl-ocr-2025-11-20 (reference 001, "Availability")."""

DOCUMENTED_LIMITS: dict[str, ModelLimits] = {
    "qwen-vl-ocr": QWEN_OCR_LIMITS,
    "qwen-vl-ocr-2025-11-20": QWEN_OCR_LIMITS,
}


def model_limits(model: str) -> ModelLimits:
    """The documented limits of ``model``; undocumented Qwen-OCR names get qwen-vl-ocr's."""
    return DOCUMENTED_LIMITS.get(model.rsplit("/", 1)[-1].lower(), QWEN_OCR_LIMITS)


# --- regions -----------------------------------------------------------------------------------

REGION_MODELS: dict[str, frozenset[str]] = {
    # Reference 003, "Supported models": the Qwen-OCR series per deployment region.
    "singapore": frozenset({"qwen-vl-ocr", "qwen-vl-ocr-2025-11-20"}),
    "virginia": frozenset(),
    "beijing": frozenset(
        {
            "qwen-vl-ocr",
            "qwen-vl-ocr-latest",
            "qwen-vl-ocr-2025-11-20",
            "qwen-vl-ocr-2025-08-28",
            "qwen-vl-ocr-2025-04-13",
            "qwen-vl-ocr-2024-10-28",
        }
    ),
}
"""The Qwen-OCR models each region lists. Virginia (US) lists only ``qwen3-vl-flash-us`` models."""


def region_warning(region: str, model: str) -> str | None:
    """A warning when ``region`` does not list ``model`` (sent anyway: the list may be out of date)."""
    listed = REGION_MODELS.get(region)
    if listed is None or model in listed:
        return None
    where = [name for name, models in REGION_MODELS.items() if model in models]
    hint = f"; it is listed in {', '.join(where)}" if where else "; no region in the reference lists it"
    return (
        f"the {region} region does not list model {model!r} (DashScope's compatible-mode model list){hint}. "
        "Requests may fail with 'model not found'."
    )


def warn_if_unlisted(region: str, model: str, *, base_url: str | None = None) -> str | None:
    """Log :func:`region_warning` once, before anything is sent; a custom ``base_url`` is not checked."""
    if base_url is not None:
        return None
    message = region_warning(region, model)
    if message is not None:
        logger.warning(message)
    return message


# --- Batch -------------------------------------------------------------------------------------

BATCH_SOURCE = (
    "Alibaba Cloud Model Studio, 'OpenAI compatible - Batch (file input)', last updated 2026-03-31 "
    "(not in ../shared/reference, which only says the Batch API costs less)"
)
BATCH_PRICE_FACTOR = 0.5
"""Batch requests cost 50% of real-time calls (:data:`BATCH_SOURCE`)."""
BATCH_MAX_REQUESTS = 50_000
"""Requests one batch input file may hold. The reference gives no Batch limits; these two are the
ones issue 10 states (OpenAI's Batch API allows 50,000 requests too), so a file is split at them."""
BATCH_MAX_FILE_BYTES = 100 * 1024 * 1024
"""Size of one batch input file (see :data:`BATCH_MAX_REQUESTS`)."""
BATCH_COMPLETION_WINDOW = "24h"
BATCH_MODELS: dict[str, frozenset[str]] = {
    # Singapore serves only text models by Batch; Beijing serves Qwen-OCR's stable and latest names.
    "beijing": frozenset({"qwen-vl-ocr", "qwen-vl-ocr-latest"}),
    "singapore": frozenset(),
    "virginia": frozenset(),
}


def batch_refusal(region: str, model: str, *, base_url: str | None = None) -> str | None:
    """Why Batch cannot serve ``model`` in ``region``, or ``None`` when it can.

    A self-hosted ``base_url`` is taken at its word: it is the operator's to know.
    """
    if base_url is not None:
        return None
    models = BATCH_MODELS.get(region, frozenset())
    if model in models:
        return None
    where = [name for name, served in BATCH_MODELS.items() if model in served]
    served = (
        f"use the {', '.join(where)} region"
        if where
        else "Batch serves Qwen-OCR only as "
        + ", ".join(sorted(BATCH_MODELS["beijing"]))
        + " in the beijing region"
    )
    return f"DashScope's Batch API does not serve {model!r} in the {region} region; {served}"


# --- prices ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentedPrice:
    """A price the reference gives, with the date and page it was read from."""

    model: str
    per_1k_images: float | None
    input_per_million: float | None
    output_per_million: float | None
    currency: str
    as_of: str
    source: str
    note: str = ""


DOCUMENTED_PRICES: dict[str, DocumentedPrice] = {
    "baidu/Qianfan-OCR": DocumentedPrice(
        model="baidu/Qianfan-OCR",
        per_1k_images=1.341,
        input_per_million=None,
        output_per_million=None,
        currency="USD",
        as_of="2026-04",
        source="reference 004 (Qianfan-OCR model page, updated Apr 2026)",
        note="estimated, set at launch; the page says the hosted API is not yet live",
    ),
}
"""Prices the reference states. It states none for Qwen-OCR (reference 000 links to a pricing
page it does not include), so Qwen-OCR's cost is unknown until ``OCRFLOW_COST__PRICES`` sets it."""

UNPRICED_MODELS = ("qwen-vl-ocr", "qwen-vl-ocr-2025-11-20", "qwen-vl-ocr-latest")
"""Models the reference documents without a price."""
