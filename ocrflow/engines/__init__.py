"""OCR engines behind one small interface, chosen by name from a plain registry."""

from __future__ import annotations

from collections.abc import Callable

from ocrflow.engines._api import ApiEngine, pages_label
from ocrflow.engines._images import EncodedImage, encode_image
from ocrflow.engines._ratelimit import SharedRateLimit
from ocrflow.engines._remote import KeySource, resolve_api_key
from ocrflow.engines.base import OcrEngine, PageBatching
from ocrflow.errors import ConfigurationError
from ocrflow.settings import Settings


def _local(settings: Settings) -> OcrEngine:
    from ocrflow.engines.rapid import RapidOcrEngine

    return RapidOcrEngine(settings.local_engine)


def _dashscope(settings: Settings) -> OcrEngine:
    from ocrflow.engines.dashscope import DashScopeEngine

    return DashScopeEngine(settings.dashscope, settings.cost, settings.api_limits)


def _openai(settings: Settings) -> OcrEngine:
    from ocrflow.engines.openai_compat import OpenAICompatEngine

    return OpenAICompatEngine(settings.openai, settings.cost, settings.api_limits)


ENGINES: dict[str, Callable[[Settings], OcrEngine]] = {
    "local": _local,
    "dashscope": _dashscope,
    "openai": _openai,
}


def create_engine(settings: Settings) -> OcrEngine:
    """Build the engine ``settings.engine`` names; an unknown name lists the known ones."""
    try:
        factory = ENGINES[settings.engine]
    except KeyError:
        known = ", ".join(ENGINES)  # registry order: the offline default first
        raise ConfigurationError(f"unknown OCR engine {settings.engine!r}; known engines: {known}") from None
    return factory(settings)


__all__ = [
    "ENGINES",
    "ApiEngine",
    "EncodedImage",
    "KeySource",
    "OcrEngine",
    "PageBatching",
    "SharedRateLimit",
    "create_engine",
    "encode_image",
    "pages_label",
    "resolve_api_key",
]
