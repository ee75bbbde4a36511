"""Page images for the review app, found by document and page number only.

The client names an item and a page number; the file is the document's own source,
decoded as ingest decodes it (PDF pages rendered, EXIF turned upright) and cached as PNG
beside the results. No part of a request ever becomes part of a path.
"""

from __future__ import annotations

import io
from pathlib import Path

from ocrflow.ingest import DecodedPage, identify, iter_pages
from ocrflow.models import DocumentResult
from ocrflow.settings import IngestOptions
from ocrflow.store import write_bytes_atomically


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
    for page in iter_pages(ref, options):
        if isinstance(page, DecodedPage) and page.number == page_number:
            buffer = io.BytesIO()
            page.image.save(buffer, format="PNG")
            data = buffer.getvalue()
            write_bytes_atomically(cached, data)
            return data
    return None
