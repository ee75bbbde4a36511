"""Page images for the review app, found by document and page number only.

The client names an item and a page number; the file is the document's own source,
decoded as ingest decodes it (PDF pages rendered, EXIF turned upright) and cached as PNG
beside the results. No part of a request ever becomes part of a path.
"""

from __future__ import annotations

from pathlib import Path

from ocrflow import _imageio
from ocrflow.ingest import DecodedPage, identify, iter_pages
from ocrflow.models import DocumentResult
from ocrflow.settings import IngestOptions


def page_png(
    result: DocumentResult, page_number: int, cache_dir: Path, options: IngestOptions
) -> bytes | None:
    """PNG bytes of one page of ``result``'s document, or None if it has no such page any more."""
    if page_number not in {page.page_number for page in result.pages}:
        return None
    cached = cache_dir / f"{result.document_id}-{page_number}.png"
    if cached.exists():
        return cached.read_bytes()
    source = Path(result.source)
    if not source.is_file():
        return None
    ref = identify(source)
    if ref.document_id != result.document_id:
        return None  # the file at that path is another document now
    # Pages decode in order, so keep each one passed on the way: page N of a PDF then costs
    # one rendering pass, and the pages before it are ready when the reviewer turns back.
    cache_dir.mkdir(parents=True, exist_ok=True)
    for page in iter_pages(ref, options):
        if not isinstance(page, DecodedPage):
            continue
        data = _imageio.encode(page.image, "PNG")
        _imageio.write_atomically(cache_dir / f"{result.document_id}-{page.number}.png", data)
        if page.number == page_number:
            return data
    return None
