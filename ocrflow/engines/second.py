"""A second recogniser: PP-OCRv4, re-reading lines the embedded engine already found.

The embedded engine reads with PP-OCRv6 (:mod:`ocrflow.engines.rapid`). A value read by one
model is wrong too often to vouch for a receipt's name or address, and the same model at
another scale repeats its own misreads (``bench/RESULTS-quality.md``). PP-OCRv4 is a different
model, trained apart, that errs differently: it re-reads a field's lines (their boxes cropped
from the page the first engine read: recognition only, no second detection).

Its ONNX model ships inside the ``rapidocr-onnxruntime`` 1.4.4 wheel, which asks for
``opencv-python`` (it would clash with our ``opencv-python-headless``), so ``scripts/setup.sh``
installs it without dependencies and only its model file is used: RapidOCR 3.x, already
installed, loads it (the character set is in the model's metadata). Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ocrflow.engines.rapid import ModelPool
from ocrflow.errors import EngineError
from ocrflow.models import Affine, Box, OcrLine

MODEL = "ppocrv4-rec (rapidocr-onnxruntime 1.4.4)"
_MODEL_FILE = "ch_PP-OCRv4_rec_infer.onnx"


def model_path() -> Path | None:
    """The PP-OCRv4 recognition model inside the installed ``rapidocr_onnxruntime``, or ``None``.

    Found without importing the package (importing it would import ``opencv-python``'s ``cv2``
    API we did not install; only the model file is wanted).
    """
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / _MODEL_FILE
    return path if path.is_file() else None


def available() -> bool:
    return model_path() is not None


class SecondReader:
    """PP-OCRv4 recognition of given lines of a page image.

    At most ``parallel`` reads run at once, each on its own model (loaded when first needed,
    ~96 MiB): the embedded engine's bound (``local_engine.parallel``, by default the cores
    divided by ``threads``), however many threads read documents.
    """

    model = MODEL

    def __init__(self, threads: int | None = None, parallel: int = 1) -> None:
        self._threads = threads
        self._pool = ModelPool(self._load, parallel)

    def _load(self):
        from rapidocr import OCRVersion, RapidOCR

        path = model_path()
        if path is None:
            raise EngineError(
                "the second recogniser's model is not installed (scripts/setup.sh installs "
                "rapidocr-onnxruntime 1.4.4)",
                code="second_reader_missing",
            )
        params = {
            "Global.use_det": False,
            "Global.use_cls": False,
            "Global.log_level": "warning",
            "Global.return_word_box": True,
            "Global.return_single_char_box": True,
            "Rec.model_path": str(path),
            "Rec.ocr_version": OCRVersion.PPOCRV4,
        }
        if self._threads:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = self._threads
        return RapidOCR(params=params)

    def read(self, image: Path, boxes: Sequence[Box], frame: Affine | None = None) -> list[OcrLine]:
        """Each box's line of ``image`` as PP-OCRv4 reads it (text, score, each character's score).

        ``boxes`` are in the page's original pixels; ``frame`` maps them onto ``image`` (an
        OCR result's ``reading_frame``). The line keeps the box it was given.
        """
        import cv2
        from rapidocr.utils.process_img import get_rotate_crop_image

        page = cv2.imread(str(image))
        if page is None:
            raise EngineError(f"cannot read page image {Path(image).name}", code="second_reader_failed")
        matrix = np.asarray(frame, dtype=float) if frame is not None else None
        lines = []
        with self._pool.take() as rapid:
            for box in boxes:
                points = np.asarray(box, dtype=np.float32)
                if matrix is not None:
                    points = (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)
                crop = get_rotate_crop_image(page, points)
                output = rapid(crop, use_det=False, use_cls=False)
                text = output.txts[0] if output.txts else ""
                score = float(output.scores[0]) if output.scores else 0.0
                lines.append(OcrLine(text=text, box=box, score=score, char_scores=_char_scores(output, text)))
        return lines


def _char_scores(output: object, text: str) -> tuple[float, ...] | None:
    """Each non-space character's score (as :attr:`OcrLine.char_scores`), where they fit the text.

    With detection off RapidOCR scores every character of the line, spaces included.
    """
    words = getattr(output, "word_results", None)
    confs = getattr(words[0], "confs", None) if words else None
    if confs is None or len(confs) != len(text):
        return None
    return tuple(float(c) for ch, c in zip(text, confs, strict=True) if not ch.isspace())
