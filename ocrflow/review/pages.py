"""Page images for the review app, found by document and page number only.

The client names an item and a page number; the file is the document's own source,
decoded as ingest decodes it (PDF pages rendered, EXIF turned upright). No part of a
request ever becomes part of a path.

A reviewer's screen needs far less than a scan holds (a 35 MP page is an 8 MB PNG), so a
page is served as a **screen-sized rendition** (its long side at most ``SCREEN_SIDE``
pixels) and, for a closer look, a **zoomed crop** of any region, cut from full-resolution
**tiles**: a crop decodes only the tiles it covers, never the whole page. Renditions, tiles
and each page's size are cached beside the results the first time the page is shown, in
one decoding pass that also caches the pages before it (page N of a PDF costs one pass).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ocrflow import _imageio
from ocrflow.errors import InputError
from ocrflow.ingest import DecodedPage, identify, iter_pages
from ocrflow.models import DocumentResult
from ocrflow.settings import IngestOptions

SCREEN_SIDE = 2000
"""Long side, in pixels, of the rendition the item page shows (sharp on a 4K-wide half screen)."""
TILE = 1024
"""Side of a full-resolution tile."""
CROP_SIDE = 1600
"""Long side, in pixels, of a zoomed crop at most."""


@dataclass(frozen=True)
class PageCache:
    """Where one document's page images are kept."""

    folder: Path
    document_id: str

    def rendition(self, number: int) -> Path:
        return self.folder / f"{self.document_id}-{number}.png"

    def meta(self, number: int) -> Path:
        return self.folder / f"{self.document_id}-{number}.json"

    def tile(self, number: int, column: int, row: int) -> Path:
        return self.folder / f"{self.document_id}-{number}-t{column}-{row}.jpg"


def page_png(
    result: DocumentResult, page_number: int, cache_dir: Path, options: IngestOptions
) -> bytes | None:
    """The screen-sized PNG of one page of ``result``'s document, or None if it has no such page."""
    cache = PageCache(cache_dir, result.document_id)
    if not _cached(result, page_number, cache, options):
        return None
    return cache.rendition(page_number).read_bytes()


def page_crop(
    result: DocumentResult,
    page_number: int,
    cache_dir: Path,
    options: IngestOptions,
    region: tuple[float, float, float, float],
    max_side: int = CROP_SIDE,
) -> bytes | None:
    """A JPEG of ``region`` (left, top, right, bottom as fractions of the page) at up to full resolution.

    Scaled down to ``max_side`` when the region holds more pixels than that. Only the tiles
    the region covers are decoded.
    """
    cache = PageCache(cache_dir, result.document_id)
    if not _cached(result, page_number, cache, options):
        return None
    meta = json.loads(cache.meta(page_number).read_text())
    width, height = meta["width"], meta["height"]
    left, top, right, bottom = region
    x0, y0 = round(left * width), round(top * height)
    box = (x0, y0, max(x0 + 1, round(right * width)), max(y0 + 1, round(bottom * height)))
    crop = Image.new(meta["mode"], (box[2] - box[0], box[3] - box[1]), "white")
    for row in range(box[1] // TILE, (box[3] - 1) // TILE + 1):
        for column in range(box[0] // TILE, (box[2] - 1) // TILE + 1):
            with Image.open(cache.tile(page_number, column, row)) as tile:
                tile.load()
                crop.paste(tile, (column * TILE - box[0], row * TILE - box[1]))
    crop.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    data = _imageio.encode(crop, "JPEG", quality=88)
    crop.close()
    return data


def _cached(result: DocumentResult, page_number: int, cache: PageCache, options: IngestOptions) -> bool:
    """True once ``page_number``'s rendition, tiles and size are cached (rendering them if needed)."""
    if page_number not in {page.page_number for page in result.pages}:
        return False
    if cache.meta(page_number).exists():
        return True
    # The run that stored the result read this path, following any link in it then.
    source = Path(os.path.realpath(result.source))
    try:
        ref = identify(source, options.max_file_bytes)
    except InputError:  # gone, or no longer a file a run would read (a FIFO in its place...)
        return False
    if ref.document_id != result.document_id:
        return False  # the file at that path is another document now
    cache.folder.mkdir(parents=True, exist_ok=True)
    found = False
    try:
        for page in iter_pages(ref, options):
            if not isinstance(page, DecodedPage):
                continue
            if not cache.meta(page.number).exists():
                _store(page, cache)
            page.image.close()
            if page.number == page_number:
                found = True
                break
    finally:
        _give_memory_back()
    return found


def _store(page: DecodedPage, cache: PageCache) -> None:
    image = page.image
    for row in range(math.ceil(image.height / TILE)):
        for column in range(math.ceil(image.width / TILE)):
            box = (
                column * TILE,
                row * TILE,
                min(image.width, (column + 1) * TILE),
                min(image.height, (row + 1) * TILE),
            )
            tile = image.crop(box)
            _imageio.write_atomically(
                cache.tile(page.number, column, row), _imageio.encode(tile, "JPEG", quality=90)
            )
            tile.close()
    scale = min(1.0, SCREEN_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # resize() makes the smaller image directly (reducing first), never a full-size copy.
    screen = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0) if scale < 1 else image
    _imageio.write_atomically(cache.rendition(page.number), _imageio.encode(screen, "PNG", compress_level=6))
    if screen is not image:
        screen.close()
    meta = {"width": image.width, "height": image.height, "mode": image.mode, "tile": TILE}
    # Written last: its presence says the page's files are all there.
    _imageio.write_atomically(cache.meta(page.number), json.dumps(meta).encode())


def _give_memory_back() -> None:
    # A decoded page is a few hundred MB at most; glibc keeps freed heap memory for reuse,
    # so a server that showed a few large pages would stay large. Hand it back to the system.
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return
    try:
        ctypes.CDLL(libc_name).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def region_of(text: str) -> tuple[float, float, float, float] | None:
    """``left,top,right,bottom`` as fractions of the page, or None unless it is a real region."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        return None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        return None
    left, top, right, bottom = values
    if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
        return None
    return left, top, right, bottom


__all__ = ["CROP_SIDE", "SCREEN_SIDE", "TILE", "page_crop", "page_png", "region_of"]
