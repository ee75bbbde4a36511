"""OCR engines behind one small interface, chosen by name from a plain registry."""

from __future__ import annotations

from collections.abc import Callable

from ocrflow.engines.base import OcrEngine
from ocrflow.errors import ConfigurationError
from ocrflow.settings import Settings


def _local(settings: Settings) -> OcrEngine:
    from ocrflow.engines.rapid import RapidOcrEngine

    return RapidOcrEngine(settings.local_engine)


ENGINES: dict[str, Callable[[Settings], OcrEngine]] = {"local": _local}


def create_engine(settings: Settings) -> OcrEngine:
    """Build the engine ``settings.engine`` names; an unknown name lists the known ones."""
    try:
        factory = ENGINES[settings.engine]
    except KeyError:
        known = ", ".join(sorted(ENGINES))
        raise ConfigurationError(f"unknown OCR engine {settings.engine!r}; known engines: {known}") from None
    return factory(settings)


__all__ = ["ENGINES", "OcrEngine", "create_engine"]
