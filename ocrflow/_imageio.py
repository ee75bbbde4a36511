"""Image file plumbing for ingest: what a file is, how to open it, and how to write a page.

Nothing here knows about documents, limits or reasons; :mod:`ocrflow.ingest` decides those.
"""

from __future__ import annotations

import os
import struct
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pillow_heif
from PIL import Image, ImageFile

pillow_heif.register_heif_opener()

HEAD_BYTES = 1024
"""Enough of a file to sniff its type: a PDF header may sit anywhere in the first 1024 bytes."""
PDF = "application/pdf"
UNKNOWN = "application/octet-stream"
PIL_FORMATS = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
    "image/webp": "WEBP",
    "image/heic": "HEIF",
}
"""The image types ingest reads, and the PIL plugin each must be opened with."""
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)
"""What PIL, pillow_heif and the TIFF reader raise for a malformed file rather than a bug
(TypeError: PIL's "Missing dimensions" for a TIFF frame whose tags are gone, as when cut short)."""

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
_BMP_INFO_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}
_UNSUPPORTED_IMAGES = ((b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"))
_OTHER_CONTENT = (
    (b"PK\x03\x04", "looks like a ZIP archive, for example a Word or Excel file"),
    (b"\xd0\xcf\x11\xe0", "looks like an old Microsoft Office file"),
)
_END_MARKERS = {"image/jpeg": b"\xff\xd9", "image/png": b"IEND"}
_PIL_GLOBALS = threading.Lock()


def sniff_media_type(head: bytes) -> str:
    """The media type a file's first bytes show, whatever its name says."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "image/heic"
    # "BM" alone is too weak (text can start with it); the DIB header size confirms it.
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_INFO_HEADER_SIZES:
        return "image/bmp"
    if b"%PDF-" in head:
        return PDF
    return UNKNOWN


def unsupported_image_format(head: bytes) -> str | None:
    """The name of an image format ingest recognises but does not read (GIF...), if it is one."""
    return next((name for magic, name in _UNSUPPORTED_IMAGES if head.startswith(magic)), None)


def describe_content(head: bytes) -> str:
    """A few words on what a file that is not an image seems to be, to complete "it ..."."""
    known = next((text for magic, text in _OTHER_CONTENT if head.startswith(magic)), None)
    if known is not None:
        return known
    return "starts like text" if _looks_like_text(head) else "is in a format ocrflow does not recognise"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # only a character cut off by the sample's end is fine
            return False
        text = head[: exc.start].decode("utf-8")
    return all(char.isprintable() or char in "\t\n\r\f" for char in text)


def open_image(path: Path, media_type: str) -> ImageFile.ImageFile:
    """Open lazily (header only) with the PIL plugin for ``media_type``, without PIL's bomb check.

    PIL's check inside ``open`` raises without saying the image's size, so the caller checks
    ``size`` itself before calling :func:`load`.
    """
    with _pil_pixel_limit(None):
        return Image.open(path, formats=[PIL_FORMATS[media_type]])


def load(image: ImageFile.ImageFile, max_pixels: int) -> None:
    """Decode the current frame with PIL's own bomb guard set to ``max_pixels``, not PIL's default."""
    with _pil_pixel_limit(max_pixels):
        image.load()


@contextmanager
def _pil_pixel_limit(limit: int | None) -> Iterator[None]:
    # Image.MAX_IMAGE_PIXELS is a PIL module global: set it only for this call and put it back,
    # under a lock so concurrent ingests (Prefect runs tasks in threads) cannot interleave.
    # The price is that one image decodes at a time in a process.
    with _PIL_GLOBALS:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, limit
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def looks_truncated(path: Path, media_type: str) -> bool:
    """Whether a file that failed to decode is cut short.

    Judged from the file, not the decoder's message: a whole JPEG ends with its EOI marker
    and a whole PNG with its IEND chunk; a TIFF's offsets all point inside it. Other formats
    have nothing to check.
    """
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        if media_type == "image/tiff":
            return _tiff_points_past_end(file, size)
        marker = _END_MARKERS.get(media_type)
        if marker is None:
            return False
        file.seek(max(0, size - 64))
        return marker not in file.read()


_TIFF_EXTENTS = ((273, 279), (324, 325))
"""(offsets, byte counts) tags of a frame's strips and of its tiles."""
_TIFF_VALUE_SIZES = {3: 2, 4: 4}
_MAX_TIFF_FRAMES = 10_000


def _tiff_points_past_end(file: BinaryIO, size: int) -> bool:
    """Whether a classic TIFF's frames or pixel data lie beyond the file's end: it was cut short.

    A TIFF has no end marker, but every frame (IFD) and strip is found by its offset, so a
    copy cut short leaves offsets pointing past the end. BigTIFF is not judged.
    """
    head = file.read(8)
    order = "<" if head[:2] == b"II" else ">"
    if len(head) < 8 or struct.unpack(f"{order}H", head[2:4])[0] != 42:
        return False
    offset, seen = struct.unpack(f"{order}I", head[4:8])[0], set()
    while offset and offset not in seen and len(seen) < _MAX_TIFF_FRAMES:
        seen.add(offset)
        file.seek(offset)
        counted = file.read(2)
        if len(counted) < 2:
            return True
        (count,) = struct.unpack(f"{order}H", counted)
        table = file.read(12 * count + 4)
        if len(table) < 12 * count + 4:
            return True
        values = {}
        for index in range(count):
            tag, kind, n, inline = struct.unpack(f"{order}HHI4s", table[12 * index : 12 * index + 12])
            width = _TIFF_VALUE_SIZES.get(kind, 0)
            if tag in (273, 279, 324, 325) and 0 < n * width <= size:  # more values than bytes: damaged
                raw = inline[: n * width]
                if n * width > 4:
                    (at,) = struct.unpack(f"{order}I", inline)
                    file.seek(at)
                    raw = file.read(n * width)
                    if len(raw) < n * width:
                        return True
                values[tag] = struct.unpack(f"{order}{n}{'H' if width == 2 else 'I'}", raw)
        for starts, lengths in _TIFF_EXTENTS:
            extents = zip(values.get(starts, ()), values.get(lengths, ()), strict=False)
            if any(start + length > size for start, length in extents):
                return True
        (offset,) = struct.unpack(f"{order}I", table[-4:])
    return False


def to_rgb_or_l(image: Image.Image) -> tuple[Image.Image, str | None]:
    """Pixels every later stage can read: RGB, or L for grayscale; transparency goes onto white.

    Returns the image and what was done to it, or None if it already was RGB or L.
    """
    mode = image.mode
    if image.has_transparency_data:
        target = "L" if mode in ("L", "LA", "La") else "RGB"
        with_alpha = image.convert(target + "A")
        flat = Image.new(target, image.size, "white")
        flat.paste(with_alpha, mask=with_alpha.getchannel("A"))
        return flat, f"flattened {mode} transparency onto white"
    if mode in ("L", "RGB"):
        return image, None
    if mode.startswith("I;16") or mode == "I":  # 16-bit scans; PIL's convert() would clip, not scale
        pixels = np.clip(np.asarray(image), 0, 65535) >> 8
        return Image.fromarray(pixels.astype(np.uint8), "L"), f"converted {mode} to 8-bit grayscale"
    target = "L" if mode in ("1", "F") else "RGB"
    return image.convert(target), f"converted {mode} to {target}"


def encode(image: Image.Image, pil_format: str, **params: int) -> bytes:
    """The image as a file's bytes, so their size can be checked before anything is written."""
    buffer = BytesIO()
    image.save(buffer, pil_format, **params)
    return buffer.getvalue()


def write_atomically(target: Path, data: bytes) -> None:
    """Write via a temporary file and a rename, so no reader ever sees half a file.

    Two runs may ingest the same document at once, and a later stage may be reading it.
    """
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
