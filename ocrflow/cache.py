"""A cache of OCR results, so a re-run or a retry never pays twice for the same request.

A result is stored under a key made of everything that decides the answer: the page
image's SHA-256, the engine's name, the model, the task, and whatever else the engine's
request carries (pixel bounds, prompt). Engines say what that is by implementing the
optional :meth:`Fingerprinted.request_fingerprint`; an engine without it is keyed by
name, model and task alone. For key-information extraction the document type's JSON
Schema is part of the key too, since it becomes the template of fields to fill. Files
live in ``<out>/.cache/ocr/<2 hex>/<key>.json``, written atomically, so concurrent
workers and interrupted runs never leave half a file.

On a hit, the result comes back with zero tokens in its ``usage`` (nothing was paid this
run), and the tokens the original call cost are added to :attr:`CachedEngine.saved`
instead: summing the results' usage gives the tokens paid this run, honestly, while
``saved`` says what the cache spared. Failures are never cached: they raise through.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import TypeAdapter

from ocrflow import _imageio
from ocrflow.doctypes import DocType
from ocrflow.engines.base import OcrEngine, PageBatching
from ocrflow.models import OcrResult, OcrTask, Usage

CACHE_FORMAT = "2"
"""Part of every key: changing how results are stored invalidates the old entries."""


@runtime_checkable
class Fingerprinted(Protocol):
    """An engine whose requests depend on more than its name, model and task.

    ``request_fingerprint`` returns the parts that change the answer for ``task``, as
    strings: e.g. ``{"min_pixels": "3072", "max_pixels": "8388608", "prompt": <text or
    its hash>, "max_pixels_mode": "adaptive"}``. Anything derived from the image alone
    (such as adaptive pixel bounds) is covered by the image hash and need not be listed.
    """

    def request_fingerprint(self, task: OcrTask) -> dict[str, str]: ...


def cache_dir(out_dir: Path) -> Path:
    """Where a run writing to ``out_dir`` keeps its OCR cache."""
    return Path(out_dir) / ".cache" / "ocr"


def request_parts(engine: OcrEngine, task: OcrTask, doctype: DocType | None = None) -> dict[str, str]:
    """Everything besides the image that decides an engine's answer to ``task`` (for ``doctype``)."""
    parts = {"engine": engine.name, "model": engine.model, "task": task.value}
    if isinstance(engine, Fingerprinted):
        parts |= {f"request.{name}": str(value) for name, value in engine.request_fingerprint(task).items()}
    if doctype is not None and task is OcrTask.KEY_INFORMATION_EXTRACTION:
        schema = json.dumps(doctype.schema, sort_keys=True, ensure_ascii=False)
        parts["doctype"] = doctype.name
        parts["schema"] = hashlib.sha256(schema.encode()).hexdigest()
    return parts


def cache_key(image_sha256: str, parts: dict[str, str]) -> str:
    """The SHA-256 of the image hash and the request parts, in a canonical form."""
    canonical = json.dumps({"format": CACHE_FORMAT, "image": image_sha256, **parts}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class OcrCache:
    """Results on disk by key, two hex characters of fan-out so no folder grows huge."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> OcrResult | None:
        """The stored result, or ``None`` if there is none or it cannot be read (then it is redone)."""
        results = self.get_packed(key)
        return results[0] if results and len(results) == 1 else None

    def put(self, key: str, result: OcrResult) -> None:
        self.put_packed(key, [result])

    def get_packed(self, key: str) -> list[OcrResult] | None:
        """The results of one multi-page request, or ``None``."""
        try:
            return _load(self.path(key).read_bytes())
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put_packed(self, key: str, results: list[OcrResult]) -> None:
        self._write(key, _dump(results))

    def _write(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        _imageio.write_atomically(target, data)


_RESULTS = TypeAdapter(list[OcrResult])


def _dump(results: Sequence[OcrResult]) -> bytes:
    """Results with their lines' per-character scores: result files leave those out, grounding reads them."""
    scores = [[line.char_scores for line in result.lines] for result in results]
    return json.dumps(
        {"results": _RESULTS.dump_python(list(results), mode="json"), "char_scores": scores}
    ).encode()


def _load(data: bytes) -> list[OcrResult]:
    stored = json.loads(data)
    results = _RESULTS.validate_python(stored["results"])
    return [
        result.model_copy(
            update={
                "lines": tuple(
                    line.model_copy(update={"char_scores": None if chars is None else tuple(chars)})
                    for line, chars in zip(result.lines, line_scores, strict=True)
                )
            }
        )
        for result, line_scores in zip(results, stored["char_scores"], strict=True)
    ]


def file_sha256(path: Path) -> str:
    with Path(path).open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


class CachedEngine:
    """Any engine behind the cache, itself an :class:`~ocrflow.engines.base.OcrEngine`.

    Thread-safe: Prefect runs pages in threads, and two may share a page image (the same
    scan in two documents); both then call the engine once each at worst, never corrupt it.
    """

    def __init__(self, engine: OcrEngine, cache_dir: Path) -> None:
        self.engine = engine
        self.cache = OcrCache(cache_dir)
        self.hits = 0
        self.misses = 0
        self.paid = Usage()
        """What the calls that reached the engine cost."""
        self.saved = Usage()
        """What the cached answers originally cost: not paid again this run."""
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def model(self) -> str:
        return self.engine.model

    @property
    def supported_tasks(self) -> frozenset[OcrTask]:
        return self.engine.supported_tasks

    def request_fingerprint(self, task: OcrTask) -> dict[str, str]:
        # Passed through, so a wrapped engine is keyed exactly like the bare one.
        return self.engine.request_fingerprint(task) if isinstance(self.engine, Fingerprinted) else {}

    def recognize(
        self, image: Path, task: OcrTask, *, page_number: int = 1, doctype: DocType | None = None
    ) -> OcrResult:
        started = time.perf_counter()
        try:
            digest = file_sha256(image)
        except OSError:
            # A missing or unreadable page is the engine's to report, in its own words.
            return self.engine.recognize(image, task, page_number=page_number, doctype=doctype)
        key = cache_key(digest, request_parts(self.engine, task, doctype))
        cached = self.cache.get(key)
        if cached is not None:
            with self._lock:
                self.hits += 1
                self.saved += cached.usage
            free = Usage(pages=1, seconds=round(time.perf_counter() - started, 3))
            return cached.model_copy(update={"page_number": page_number, "usage": free})
        result = self.engine.recognize(image, task, page_number=page_number, doctype=doctype)
        self.cache.put(key, result)
        with self._lock:
            self.misses += 1
            self.paid += result.usage
        return result

    @property
    def packs_pages(self) -> bool:
        return isinstance(self.engine, PageBatching) and self.engine.packs_pages

    def recognize_pages(
        self,
        images: Sequence[Path],
        task: OcrTask,
        *,
        doctype: DocType | None = None,
        first_page_number: int = 1,
    ) -> list[OcrResult]:
        """A multi-page request is one entry, keyed by its pages' images in order."""
        if not self.packs_pages:
            return [
                self.recognize(image, task, page_number=first_page_number + offset, doctype=doctype)
                for offset, image in enumerate(images)
            ]
        started = time.perf_counter()
        try:
            digests = [file_sha256(image) for image in images]
        except OSError:
            return self.engine.recognize_pages(
                images, task, doctype=doctype, first_page_number=first_page_number
            )
        key = cache_key(",".join(digests), {**request_parts(self.engine, task, doctype), "packed": "yes"})
        cached = self.cache.get_packed(key)
        if cached:
            with self._lock:
                self.hits += 1
                for result in cached:
                    self.saved += result.usage
            shift = first_page_number - cached[0].page_number
            seconds = round(time.perf_counter() - started, 3)
            return [
                result.model_copy(
                    update={
                        "page_number": result.page_number + shift,
                        "usage": Usage(pages=result.usage.pages, seconds=seconds),
                    }
                )
                for result in cached
            ]
        results = self.engine.recognize_pages(
            images, task, doctype=doctype, first_page_number=first_page_number
        )
        self.cache.put_packed(key, results)
        with self._lock:
            self.misses += 1
            for result in results:
                self.paid += result.usage
        return results
