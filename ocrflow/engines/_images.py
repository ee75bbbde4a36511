"""Page images as base64 data URLs or local files to upload, and grouping pages into requests.

Both of DashScope's APIs take a local image as a ``data:<mime>;base64,...`` URL of at
most 10 MB. The documentation's advice for files of 7 to 10 MB (reference 001, FAQ "How to
select a file upload method") is to pass the local path through the DashScope SDK, which
uploads it; an engine that can (``upload_from``) gets such a page as a file to upload, as it is.
Otherwise a page over the limit is re-encoded rather than refused: first losslessly (PNG at
full compression, then lossless WEBP), since the documentation advises lossless formats for
text; only when no lossless form fits, as JPEG, then smaller. The scale is kept so boxes can
be mapped back to the page's own pixels, and ``lossy`` says what was done.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from PIL import Image

from ocrflow._imageio import DECODE_ERRORS
from ocrflow.errors import InputError

MAX_DATA_URL_CHARS = 10 * 1024 * 1024
"""Qwen-OCR's limit on a Base64-encoded image."""
MAX_FILE_BYTES = 10 * 1024 * 1024
"""Qwen-OCR's limit on an image passed by local path or URL."""
UPLOAD_FROM_BYTES = 7 * 1024 * 1024
"""From this size the documentation advises passing the local path (DashScope SDK) over Base64."""
_MIME = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
"""Formats the API reads as they are; anything else is re-encoded as PNG."""
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}
_JPEG_QUALITIES = (90, 80, 70)
_SHRINK = 0.75


@dataclass(frozen=True)
class EncodedImage:
    """An image ready to send, and the size it was sent at."""

    data_url: str
    width: int
    height: int
    scale: float = 1.0
    """Pixels of the original image per pixel sent (above 1 when it had to be shrunk)."""
    upload: Path | None = None
    """A file to send by the SDK's local-file upload instead of ``data_url`` (then empty)."""
    lossy: bool = False
    """The page had to be re-encoded as JPEG to fit."""


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _encode(image: Image.Image, fmt: str, **params: int | bool) -> str:
    buffer = BytesIO()
    image.save(buffer, format=fmt, **params)
    return _data_url(buffer.getvalue(), _MIME[fmt])


def encode_image(
    path: Path, *, max_chars: int = MAX_DATA_URL_CHARS, upload_from: int | None = None
) -> EncodedImage:
    """``path`` ready to send; raises :class:`InputError` if it is not an image.

    With ``upload_from`` (bytes), a file of that size up to :data:`MAX_FILE_BYTES` in a format the
    API reads is handed over for upload as it is; otherwise it becomes a data URL of at most
    ``max_chars``, re-encoded as the module docstring says when it does not fit.
    """
    try:
        raw = Path(path).read_bytes()
        with Image.open(BytesIO(raw)) as image:
            fmt, width, height = image.format, image.width, image.height
            if fmt in _MIME and upload_from is not None and upload_from <= len(raw) <= MAX_FILE_BYTES:
                return EncodedImage("", width, height, upload=Path(path))
            if fmt in _MIME and 4 * math.ceil(len(raw) / 3) + 32 <= max_chars:
                return EncodedImage(_data_url(raw, _MIME[fmt]), width, height)
            image.load()
            return _reencode(image, max_chars)
    except FileNotFoundError:
        raise InputError(f"page image {path} does not exist", code="missing_page_image") from None
    except DECODE_ERRORS as exc:
        raise InputError(f"page image {path} cannot be read: {exc}", code="unreadable_page_image") from exc


def _lossless(image: Image.Image) -> Iterator[str]:
    yield _encode(image if image.mode in _PNG_MODES else image.convert("RGB"), "PNG", optimize=True)
    alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    yield _encode(image.convert("RGBA" if alpha else "RGB"), "WEBP", lossless=True)


def _reencode(image: Image.Image, max_chars: int) -> EncodedImage:
    for url in _lossless(image):
        if len(url) <= max_chars:
            return EncodedImage(url, image.width, image.height)
    rgb = image.convert("RGB")
    for quality in _JPEG_QUALITIES:
        url = _encode(rgb, "JPEG", quality=quality)
        if len(url) <= max_chars:
            return EncodedImage(url, rgb.width, rgb.height, lossy=True)
    scale = 1.0
    while min(rgb.width, rgb.height) * _SHRINK >= 32:
        scale /= _SHRINK
        rgb = rgb.resize((round(image.width / scale), round(image.height / scale)), Image.Resampling.LANCZOS)
        url = _encode(rgb, "JPEG", quality=_JPEG_QUALITIES[-1])
        if len(url) <= max_chars:
            return EncodedImage(url, rgb.width, rgb.height, scale=image.width / rgb.width, lossy=True)
    raise InputError("page image cannot be made small enough to send", code="page_image_too_large")


def pack(tokens: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive indices grouped so each group's tokens stay within ``budget`` (a lone page always fits)."""
    groups: list[list[int]] = []
    used = 0
    for i, cost in enumerate(tokens):
        if groups and used + cost <= budget:
            groups[-1].append(i)
            used += cost
        else:
            groups.append([i])
            used = cost
    return groups
