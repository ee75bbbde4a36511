"""Ingest: turn an input file into page images that every OCR engine accepts.

``find_inputs`` expands the command line into files (and lists the paths that hold none),
``identify`` names a file by the SHA-256 of its bytes, and ``ingest`` splits it into pages on
disk (``work_dir/<document_id>/page-0001.png``, or ``.jpg`` when the source is a JPEG nothing
had to change: its own bytes, not re-encoded).
``open_document`` and ``ingest_page`` do the same a page at a time, so a runner can read page 1
of a long PDF while later pages are still being rendered.
Bad input never raises here: it becomes :class:`~ocrflow.models.Reason` items, for the whole
document (``page=None``) or for one page, and the other pages still go through. Only regular
files are read, never through a link and never past the size cap: a FIFO, a device, a link
loop or a link leaving the input folder is a reason, so one odd entry cannot hang or end a batch.

Pages are decoded one at a time (:func:`iter_pages`), so a 200-page PDF or TIFF is never in
memory whole. Every page leaves this stage inside Qwen-OCR's input limits: repaired where that
is possible (downscaled, saved as JPEG), refused with a reason where it is not.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import math
import os
import stat
import threading
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import ExifTags, Image, ImageFile, ImageOps

from ocrflow import _imageio
from ocrflow.errors import ConfigurationError, InputError
from ocrflow.models import IDENTITY, Affine, IngestResult, PageRef, Reason, SourceRef, Stage, StepRecord
from ocrflow.settings import IngestOptions

# Qwen-OCR's input limits (Alibaba Cloud Model Studio, "Text extraction (Qwen-OCR)", image
# limits: https://www.alibabacloud.com/help/en/model-studio/qwen-vl-ocr). Pages meet them here,
# before any engine runs, so no page fails at OCR time for its size. The "only PNG or JPEG
# between 4K and 8K" rule holds because only PNG or JPEG is ever written.
MIN_SIDE = 10
"""Each side must be longer than this many pixels."""
MAX_ASPECT_RATIO = 200
"""Long side over short side, at most."""
MAX_PIXELS = 15_680_000
"""Larger pages are downscaled, keeping their aspect ratio."""
MAX_ENCODED_BYTES = 10_000_000
"""The file limit is "10 MB"; of its two readings the decimal one is the stricter."""
JPEG_QUALITIES = (92, 85, 75, 60)
"""Tried in turn when a page's PNG is over :data:`MAX_ENCODED_BYTES`."""
PNG_FAST, PNG_SMALL = 1, 6
"""zlib levels a page is written at: the fast one first (a scan's PNG is about as small as at
PIL's default 6 and written 2-3 times faster; bench/RESULTS-overhead.md), the default when the
fast one is over :data:`MAX_ENCODED_BYTES`, before JPEG."""
_AS_IS = {"image/jpeg": "jpg", "image/png": "png"}
"""Sources whose own file can be a page (the formats every engine takes), with the page's suffix."""

SUPPORTED_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".heif", ".pdf"}
)
"""What ``discover`` picks up inside folders; files named directly are taken whatever their name."""

log = logging.getLogger(__name__)

_MP_LIMIT = f"{MAX_PIXELS / 1e6:.2f} MP limit"

PDFIUM_LOCK = threading.Lock()
"""pdfium allows one call at a time in a process, even on different documents; Prefect runs
tasks in threads. Any other code calling pdfium in this process should hold this lock too."""


@dataclass(frozen=True)
class DecodedPage:
    """One page decoded to RGB or L, upright, within :data:`MAX_PIXELS`, not yet on disk.

    ``file`` is set when the source file, as it is, already is this page (a JPEG or PNG
    that nothing had to change): its bytes become the page, never re-encoded.
    """

    number: int
    image: Image.Image
    to_original: Affine = field(default_factory=lambda: [row[:] for row in IDENTITY])
    steps: tuple[StepRecord, ...] = ()
    file: Path | None = None


@dataclass(frozen=True)
class MissingInput:
    """A path a run was given that holds no document to read: it is reported, the rest goes on."""

    path: Path
    message: str
    """``<path> does not exist``, or why a link named directly leads nowhere."""


@dataclass(frozen=True)
class Inputs:
    """What a run's paths hold: the files to process, and the paths that hold none."""

    files: list[Path]
    missing: list[MissingInput] = field(default_factory=list)


def find_inputs(paths: Iterable[Path], *, follow_links_outside: bool = False) -> Inputs:
    """Files as given, folders expanded recursively to supported files; sorted, without repeats.

    Hidden files and folders (names starting with ``.``) inside a folder are skipped. A file
    named directly is kept whatever its extension, so a mis-named file still gets a record.

    Links: a path named directly is followed (someone chose it). Inside a folder, a link to a
    file in that folder is replaced by the file; a link that leaves the folder is followed only
    with ``follow_links_outside``, and links to folders never are (they can loop). Every link
    not followed (leaving the folder, broken, a loop) is kept as it is, so :func:`identify`
    refuses it with a reason; anything else that is not a regular file is kept for the same.
    A path named directly that leads nowhere is listed in ``missing``: one typo does not stop a batch.
    """
    found: dict[str, Path] = {}
    missing: list[MissingInput] = []
    for given in paths:
        try:
            path = _follow_named(Path(given))
        except ConfigurationError as exc:
            missing.append(MissingInput(path=Path(given), message=exc.message))
            continue
        files = _walk(path, follow_links_outside) if path.is_dir() else [path]
        for file in files:
            # A link still here is not followed: an entry of its own, whatever it points at.
            key = os.path.abspath(file) if file.is_symlink() else os.path.realpath(file)
            found.setdefault(key, file)
    return Inputs(files=sorted(found.values()), missing=missing)


def discover(paths: Iterable[Path], *, follow_links_outside: bool = False) -> list[Path]:
    """The files of :func:`find_inputs`; a path that leads nowhere is a :class:`ConfigurationError`."""
    inputs = find_inputs(paths, follow_links_outside=follow_links_outside)
    if inputs.missing:
        raise ConfigurationError(inputs.missing[0].message)
    return inputs.files


def _follow_named(path: Path) -> Path:
    if not path.is_symlink():
        if not path.exists():
            raise ConfigurationError(f"{path} does not exist")
        return path
    target = _link_target(path)
    if target is None:
        raise ConfigurationError(f"{path} {_describe_dead_link(path)}")
    return target


def _walk(folder: Path, follow_links_outside: bool) -> list[Path]:
    real_folder = Path(os.path.realpath(folder))
    files = []
    for root, dirs, names in os.walk(folder, onerror=_unlisted):
        for name in dirs:
            if not name.startswith(".") and Path(root, name).is_symlink():
                log.warning("not following %s: links to folders are not followed", Path(root, name))
        dirs[:] = [name for name in dirs if not name.startswith(".")]  # pruned, so .git is never read
        for name in names:
            if name.startswith(".") or Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
                continue
            path = Path(root, name)
            target = _link_target(path) if path.is_symlink() else None
            if target is not None and (follow_links_outside or target.is_relative_to(real_folder)):
                path = target
            files.append(path)
    return files


def _unlisted(error: OSError) -> None:
    # A folder that cannot be listed holds documents nobody would hear of otherwise.
    log.warning("cannot list %s (%s); its documents are not processed", error.filename, error.strerror)


def _link_target(link: Path) -> Path | None:
    """Where a link finally leads, or None for a broken link or a loop."""
    try:
        return Path(os.path.realpath(link, strict=True))
    except OSError:  # ELOOP for a loop, ENOENT for a broken link
        return None


def _describe_dead_link(link: Path) -> str:
    try:
        os.stat(link)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link caught in a loop of links (following it never reaches a file)"
    return f"is a symbolic link to {os.readlink(link)}, which does not exist"


def identify(path: Path, max_bytes: int | None = None) -> SourceRef:
    """Name a regular file by the SHA-256 of its bytes and sniff its type from its first bytes.

    Only a regular file is read, and never through a link (:func:`discover` resolves the links
    it follows): a FIFO would block the read forever and ``/dev/zero`` never ends. A file over
    ``max_bytes`` is refused by its size, unread. Raises :class:`InputError` with a code and a
    message a person can act on when the file cannot be read.
    """
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise _unreadable_error(exc) from exc
    _require_regular(path, info, max_bytes)
    try:
        # Non-blocking, so a FIFO swapped in since lstat() cannot block the open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW)
    except OSError as exc:
        raise _unreadable_error(exc) from exc
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        _require_regular(path, info, max_bytes)
        digest, head, size = hashlib.sha256(), b"", 0
        # One byte past the stated size tells a file that is not what its size says.
        while size <= info.st_size and (chunk := file.read(min(_READ_CHUNK, info.st_size + 1 - size))):
            head = head or chunk[: _imageio.HEAD_BYTES]
            digest.update(chunk)
            size += len(chunk)
    if size != info.st_size:
        raise InputError(_changed_while_read(info.st_size, size), code="unstable_file")
    media_type = _imageio.sniff_media_type(head)
    return SourceRef(path=path, document_id=digest.hexdigest(), size=size, media_type=media_type)


_READ_CHUNK = 1 << 20

_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe (FIFO), which would keep a reader waiting for data that may never come"),
    (stat.S_ISCHR, "a device (like /dev/zero or /dev/urandom), whose data may never end"),
    (stat.S_ISBLK, "a disk device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def _require_regular(path: Path, info: os.stat_result, max_bytes: int | None) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise _link_error(path)
    if not stat.S_ISREG(info.st_mode):
        kind = next((text for is_kind, text in _SPECIAL_FILES if is_kind(info.st_mode)), "a special file")
        message = f"this is {kind}, not a document; only regular files are read. Remove it from the input"
        raise InputError(message, code="not_a_regular_file")
    if max_bytes is not None and info.st_size > max_bytes:
        message = (
            f"the file is {_megabytes(info.st_size)}, over the {_megabytes(max_bytes)} limit "
            "(OCRFLOW_INGEST__MAX_FILE_BYTES); split or compress the document and upload it again"
        )
        raise InputError(message, code="file_too_large")


def _link_error(link: Path) -> InputError:
    if _link_target(link) is None:
        message = f"the file {_describe_dead_link(link)}; remove the link or point it at the document"
        return InputError(message, code="dead_link")
    message = (
        f"the file is a symbolic link to {os.readlink(link)}, which is not followed: in an input folder "
        "only links to files in that folder are (OCRFLOW_INGEST__FOLLOW_LINKS_OUTSIDE=true follows any). "
        "Copy the document into the folder instead"
    )
    return InputError(message, code="link_not_followed")


def _unreadable_error(exc: OSError) -> InputError:
    message = f"the file could not be read ({exc.strerror or exc}); check that it exists and is readable"
    return InputError(message, code="unreadable_file")


def _changed_while_read(stated: int, read: int) -> str:
    if stated == 0:
        return (
            f"the file says it is empty but holds data ({read:,} bytes and more): it is made up by the "
            "system as it is read (like the files under /proc), not a stored document"
        )
    return (
        f"the file changed while it was read (its size was {stated:,} bytes, {read:,} were read); "
        "wait until it is completely copied and run again"
    )


def ingest(path: Path, work_dir: Path, options: IngestOptions) -> IngestResult:
    """Split a document into page images under ``work_dir/<document_id>/``; never raises for bad input.

    Re-ingesting the same bytes rewrites the same files. A file that cannot be read at all gets
    the SHA-256 of its absolute path as ``document_id``, having no content to name it by.
    """
    opened = open_document(path, options)
    if opened.reasons:
        return opened
    source = opened.source
    folder = work_dir / source.document_id
    pages: list[PageRef] = []
    reasons: list[Reason] = []
    with closing(iter_pages(source, options)) as items:
        for item in items:
            outcome = _save(item, folder, source.document_id) if isinstance(item, DecodedPage) else item
            if isinstance(outcome, PageRef):
                pages.append(outcome)
            else:
                reasons.append(outcome)
    page_count = len(pages) + sum(1 for reason in reasons if reason.page is not None)
    return IngestResult(source=source, pages=tuple(pages), reasons=tuple(reasons), page_count=page_count)


def open_document(path: Path, options: IngestOptions) -> IngestResult:
    """Name a document and count its pages, decoding none: what :func:`ingest_page` needs.

    The result has ``page_count`` and no pages, or the reason the whole document cannot be
    used (``page=None``). So a runner can hand each page on as soon as it exists: page 1 of a
    200-page PDF is read while page 2 is being rendered.
    """
    try:
        source = identify(path, options.max_file_bytes)
    except InputError as exc:
        return unreadable(path, exc.code, exc.message)
    if source.size == 0:
        message = "the file is empty (0 bytes); upload the document again"
        return IngestResult(source=source, reasons=(_reason("empty_file", message),))
    counted = _count_pages(source, options)
    if isinstance(counted, Reason):
        return IngestResult(source=source, reasons=(counted,))
    return IngestResult(source=source, page_count=counted)


def ingest_page(source: SourceRef, number: int, work_dir: Path, options: IngestOptions) -> PageRef | Reason:
    """Decode and save page ``number`` of a document :func:`open_document` counted, or say why not.

    Only this page is decoded and held in memory; a PDF is opened again for each page.
    """
    if source.media_type == _imageio.PDF:
        page = _render_pdf_page(source.path, number, options)
    else:
        page = _decode_image_page(source.path, source.media_type, number, options)
    if isinstance(page, Reason):
        return page
    return _save(page, work_dir / source.document_id, source.document_id)


def unreadable(path: Path, code: str, message: str) -> IngestResult:
    """The ingest record of a file with no content to name it by: its absolute path's SHA-256 is its id."""
    path_id = hashlib.sha256(str(Path(path).absolute()).encode()).hexdigest()
    source = SourceRef(path=Path(path), document_id=path_id, size=0, media_type=_imageio.UNKNOWN)
    return IngestResult(source=source, reasons=(_reason(code, message),))


def iter_pages(source: SourceRef, options: IngestOptions) -> Iterator[DecodedPage | Reason]:
    """Decode a document one page at a time: each page, or the reason it cannot be used.

    A reason with ``page=None`` means the whole document cannot be used; nothing follows it.
    Nothing is kept from one page to the next, so memory holds one page at most.
    """
    if source.media_type == _imageio.PDF:
        yield from _pdf_pages(source.path, options)
    elif source.media_type in _imageio.PIL_FORMATS:
        yield from _image_pages(source.path, source.media_type, options)
    else:
        with source.path.open("rb") as file:
            yield _not_supported(file.read(_imageio.HEAD_BYTES))


def _count_pages(source: SourceRef, options: IngestOptions) -> int | Reason:
    if source.media_type == _imageio.PDF:
        with PDFIUM_LOCK:
            opened = _open_pdf(source.path, options.max_pages)
            if isinstance(opened, Reason):
                return opened
            count = len(opened)
            opened.close()
        return count
    if source.media_type in _imageio.PIL_FORMATS:
        try:
            image = _imageio.open_image(source.path, source.media_type)
        except _imageio.DECODE_ERRORS:
            return _damaged(source.path, source.media_type, None)
        with image:
            return _frame_count(image, source.path, source.media_type, options.max_pages)
    with source.path.open("rb") as file:
        return _not_supported(file.read(_imageio.HEAD_BYTES))


# --- PDF -----------------------------------------------------------------------------------


def _pdf_pages(path: Path, options: IngestOptions) -> Iterator[DecodedPage | Reason]:
    # The lock is held per call, never across a yield, so other threads' pages interleave.
    with PDFIUM_LOCK:
        opened = _open_pdf(path, options.max_pages)
    if isinstance(opened, Reason):
        yield opened
        return
    try:
        for number in range(1, len(opened) + 1):
            with PDFIUM_LOCK:
                page = _render_page(opened, number, options.pdf_dpi)
            yield page
    finally:
        with PDFIUM_LOCK:
            opened.close()


def _render_pdf_page(path: Path, number: int, options: IngestOptions) -> DecodedPage | Reason:
    with PDFIUM_LOCK:
        opened = _open_pdf(path, options.max_pages)
        if isinstance(opened, Reason):  # it was opened when its pages were counted
            return _unreadable_pdf_page(number)
        try:
            return _render_page(opened, number, options.pdf_dpi)
        finally:
            opened.close()


def _open_pdf(path: Path, max_pages: int) -> pdfium.PdfDocument | Reason:
    # pdfium's raw loader, because pypdfium2 reports a PDF with no pages as a failure carrying
    # whatever error an earlier call left behind. pdfium reads the file as it needs it.
    handle = pdfium_c.FPDF_LoadDocument(os.fsencode(path), None)
    if not handle:
        error = pdfium_c.FPDF_GetLastError()
        if error in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            message = "the PDF is password-protected; remove the password and upload it again"
            return _reason("encrypted_pdf", message)
        message = "the PDF is damaged and cannot be opened; export or scan the document again and upload it"
        return _reason("unreadable_pdf", message)
    pdf = pdfium.PdfDocument(handle)
    count = len(pdf)
    if count == 0 or count > max_pages:
        pdf.close()
        if count == 0:
            return _reason("empty_pdf", "the PDF has no pages; export the document again and upload it")
        return _too_many_pages(count, max_pages)
    pdf.init_forms()  # so filled-in form fields are rendered too
    return pdf


def _render_page(pdf: pdfium.PdfDocument, number: int, dpi: int) -> DecodedPage | Reason:
    try:
        page = pdf[number - 1]
    except pdfium.PdfiumError:
        return _unreadable_pdf_page(number)
    try:
        width_pt, height_pt = page.get_size()  # in points, with the page's /Rotate applied
        scale = dpi / 72
        refusal = _refuse_size(math.ceil(width_pt * scale), math.ceil(height_pt * scale), number)
        if refusal is not None:
            return refusal
        render_scale = min(scale, _fitting_pdf_scale(width_pt, height_pt))
        detail = f"rendered at {dpi} dpi"
        if render_scale < scale:
            # Rendering smaller beats rendering big and shrinking: less memory, same result.
            detail = f"rendered at {render_scale * 72:.1f} dpi instead of {dpi} to meet the {_MP_LIMIT}"
        bitmap = page.render(scale=render_scale)
        try:
            image = bitmap.to_pil()  # pdfium's BGR becomes RGB, so PIL copies and the bitmap can go
        finally:
            bitmap.close()
    except pdfium.PdfiumError:
        return _unreadable_pdf_page(number)
    finally:
        page.close()
    # Coordinates map back to the page at the configured dpi, whatever it was rendered at.
    ratio = scale / render_scale
    step = _step(detail, dpi=round(render_scale * 72, 3))
    return DecodedPage(number, image, [[ratio, 0.0, 0.0], [0.0, ratio, 0.0]], (step,))


def _fitting_pdf_scale(width_pt: float, height_pt: float) -> float:
    # pdfium rounds each side up, so solve (w*s + 1) * (h*s + 1) = MAX_PIXELS for s.
    a, b, c = width_pt * height_pt, width_pt + height_pt, 1 - MAX_PIXELS
    return (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)


# --- images --------------------------------------------------------------------------------


def _image_pages(path: Path, media_type: str, options: IngestOptions) -> Iterator[DecodedPage | Reason]:
    try:
        image = _imageio.open_image(path, media_type)
    except _imageio.DECODE_ERRORS:
        yield _damaged(path, media_type, None)
        return
    with image:
        count = _frame_count(image, path, media_type, options.max_pages)
        if isinstance(count, Reason):
            yield count
            return
        for number in range(1, count + 1):
            yield _image_page(image, number, count, path, media_type, options)


def _decode_image_page(
    path: Path, media_type: str, number: int, options: IngestOptions
) -> DecodedPage | Reason:
    try:
        image = _imageio.open_image(path, media_type)
    except _imageio.DECODE_ERRORS:
        return _damaged(path, media_type, number)
    with image:
        count = _frame_count(image, path, media_type, options.max_pages)
        if isinstance(count, Reason):  # it was counted when the document was opened: it changed since
            return _damaged(path, media_type, number)
        return _image_page(image, number, count, path, media_type, options)


def _frame_count(image: ImageFile.ImageFile, path: Path, media_type: str, max_pages: int) -> int | Reason:
    """How many pages an image has, at most ``max_pages``, or why it cannot be used.

    Only a TIFF's frames are pages; other formats' extra frames are animation or thumbnails.
    Frames are stepped through one by one, never past one over the limit, so a TIFF of a million
    frames costs as much as one of ``max_pages + 1`` (PIL's ``n_frames`` would read them all,
    and after a frame fails to read it can report a count that is not there).
    """
    if media_type != "image/tiff":
        return 1
    for frame in range(1, max_pages + 1):
        try:
            image.seek(frame)
        except EOFError:
            return frame
        except _imageio.DECODE_ERRORS:  # a frame cannot be read: cut short or damaged
            return _damaged(path, media_type, None)
    return _too_many_pages(max_pages + 1, max_pages, exact=False)


def _image_page(
    image: ImageFile.ImageFile, number: int, count: int, path: Path, media_type: str, options: IngestOptions
) -> DecodedPage | Reason:
    page = _decode_frame(image, number, path, media_type, options.max_decoded_pixels)
    if isinstance(page, DecodedPage) and count == 1 and not page.steps and media_type in _AS_IS:
        return replace(page, file=path)  # the file is the page as it is
    return page


def _decode_frame(
    image: ImageFile.ImageFile, number: int, path: Path, media_type: str, max_pixels: int
) -> DecodedPage | Reason:
    try:
        image.seek(number - 1)
        width, height = image.size  # from the header: nothing is decoded yet
        if width * height > max_pixels:
            return _bomb(number, width, height, max_pixels)
        refusal = _refuse_size(width, height, number)
        if refusal is not None:
            return refusal
        _imageio.load(image, max_pixels)
    except Image.DecompressionBombError:
        return _bomb(number, *image.size, max_pixels)
    except _imageio.DECODE_ERRORS:
        return _damaged(path, media_type, number)

    steps = []
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    page = ImageOps.exif_transpose(image)  # always a new image, so the next seek leaves it alone
    if orientation in range(2, 9):  # 1 is upright; PIL ignores values outside 1-8
        steps.append(_step(f"applied EXIF orientation {orientation}", exif_orientation=orientation))
    page, conversion = _imageio.to_rgb_or_l(page)
    if conversion:
        steps.append(_step(conversion))
    return _downscale(DecodedPage(number, page, steps=tuple(steps)))


def _downscale(page: DecodedPage) -> DecodedPage:
    width, height = page.image.size
    if width * height <= MAX_PIXELS:
        return page
    factor = math.sqrt(MAX_PIXELS / (width * height))
    size = (math.floor(width * factor), math.floor(height * factor))  # floor keeps it under the limit
    image = page.image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    step = _step(f"downscaled {width}x{height} -> {size[0]}x{size[1]} to meet the {_MP_LIMIT}", scale=factor)
    to_original = [[width / size[0], 0.0, 0.0], [0.0, height / size[1], 0.0]]
    return DecodedPage(page.number, image, to_original, (*page.steps, step))


# --- writing -------------------------------------------------------------------------------


def _save(page: DecodedPage, folder: Path, document_id: str) -> PageRef | Reason:
    encoded = _encode_page(page, document_id)
    if isinstance(encoded, Reason):
        return encoded
    data, suffix, steps = encoded
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"page-{page.number:04d}.{suffix}"
    _imageio.write_atomically(target, data)
    target.with_suffix(".jpg" if suffix == "png" else ".png").unlink(missing_ok=True)  # an older run's
    return PageRef(
        document_id=document_id,
        page_number=page.number,
        path=target,
        sha256=hashlib.sha256(data).hexdigest(),
        width=page.image.width,
        height=page.image.height,
        to_original=page.to_original,
        steps=steps,
    )


def _encode_page(page: DecodedPage, document_id: str) -> tuple[bytes, str, tuple[StepRecord, ...]] | Reason:
    """The page file's bytes and suffix: the source's own bytes if they are the page, else a PNG.

    A PNG over :data:`MAX_ENCODED_BYTES` is tried at the smaller zlib level, then as JPEG.
    """
    if page.file is not None:
        data = page.file.read_bytes()
        # Only the bytes that were identified and decoded: the file may have changed since.
        if len(data) <= MAX_ENCODED_BYTES and hashlib.sha256(data).hexdigest() == document_id:
            return data, _AS_IS[_imageio.sniff_media_type(data[: _imageio.HEAD_BYTES])], page.steps
    for level in (PNG_FAST, PNG_SMALL):
        data = _imageio.encode(page.image, "PNG", compress_level=level)
        if len(data) <= MAX_ENCODED_BYTES:
            return data, "png", page.steps
    png_size = len(data)
    for quality in JPEG_QUALITIES:
        data = _imageio.encode(page.image, "JPEG", quality=quality)
        if len(data) <= MAX_ENCODED_BYTES:
            detail = (
                f"saved as JPEG quality {quality}: the PNG was {_megabytes(png_size)}, over the OCR limit"
            )
            return data, "jpg", (*page.steps, _step(detail, quality=quality))
    message = (
        f"page {page.number} is over the {_megabytes(MAX_ENCODED_BYTES)} OCR limit even as a "
        f"JPEG at quality {JPEG_QUALITIES[-1]}; scan it at a lower resolution and upload it again"
    )
    return _reason("page_too_large", message, page.number)


# --- reasons -------------------------------------------------------------------------------


def _reason(code: str, message: str, page: int | None = None) -> Reason:
    return Reason(stage=Stage.INGEST, code=code, message=message, page=page)


def _step(detail: str, **measurements: float) -> StepRecord:
    return StepRecord(step="ingest", applied=True, detail=detail, measurements=measurements)


def _refuse_size(width: int, height: int, number: int) -> Reason | None:
    """A reason when no repair can bring a page inside Qwen-OCR's size limits.

    The shape is checked first: a 1x3000 strip is a strip, not just a small image.
    """
    ratio = max(width, height) / max(min(width, height), 1)
    if ratio > MAX_ASPECT_RATIO:
        message = (
            f"page {number} is {width}x{height} pixels: its long side is {ratio:.0f} times its short side, "
            f"and OCR accepts at most {MAX_ASPECT_RATIO}:1. Crop or split the image and upload it again"
        )
        return _reason("extreme_aspect_ratio", message, number)
    if min(width, height) <= MIN_SIDE:
        message = (
            f"page {number} is {width}x{height} pixels; OCR needs each side longer than {MIN_SIDE} "
            "pixels. Upload a larger scan or photo of the document"
        )
        return _reason("image_too_small", message, number)
    return None


def _bomb(number: int, width: int, height: int, limit: int) -> Reason:
    message = (
        f"page {number} is {width}x{height} pixels ({width * height:,} pixels), over the safety limit "
        f"of {limit:,}; it may be a decompression bomb. Check where the file came from, or resize it "
        "and upload it again"
    )
    return _reason("decompression_bomb", message, number)


def _too_many_pages(count: int, limit: int, *, exact: bool = True) -> Reason:
    pages = (
        f"{count} pages, more than the limit of {limit}" if exact else f"more than {limit} pages, the limit"
    )
    message = f"the document has {pages}; split it and upload the parts"
    return _reason("too_many_pages", message)


def _unreadable_pdf_page(number: int) -> Reason:
    message = f"page {number} of the PDF is damaged and cannot be rendered; export the document again"
    return _reason("unreadable_pdf", message, number)


def _damaged(path: Path, media_type: str, page: int | None) -> Reason:
    kind = _imageio.PIL_FORMATS[media_type]
    where = "the image" if page is None else f"page {page}"
    if _imageio.looks_truncated(path, media_type):
        message = (
            f"{where} cannot be decoded: the {kind} file is cut short, probably by an incomplete upload "
            "or copy; upload the complete file again"
        )
        return _reason("truncated_image", message, page)
    message = f"{where} cannot be decoded: the {kind} file is damaged; export or scan it again and upload it"
    return _reason("corrupt_image", message, page)


def _not_supported(head: bytes) -> Reason:
    image_format = _imageio.unsupported_image_format(head)
    if image_format is not None:
        message = (
            f"the file is a {image_format} image, which ocrflow does not read; convert it to PNG or JPEG"
        )
        return _reason("unsupported_format", message)
    message = (
        f"the file is not an image or PDF (it {_imageio.describe_content(head)}); "
        "upload a scan, photo or PDF of the document"
    )
    return _reason("not_an_image", message)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
