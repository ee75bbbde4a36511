"""The ingest stage: discovery, identity, every supported format, every bad input, Qwen-OCR limits."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import textwrap
import weakref
import zlib
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageDraw, ImageFile

from ocrflow import ingest as ingest_module
from ocrflow.errors import ConfigurationError, InputError
from ocrflow.ingest import (
    MAX_ENCODED_BYTES,
    MAX_PIXELS,
    DecodedPage,
    discover,
    identify,
    ingest,
    ingest_page,
    iter_pages,
    open_document,
)
from ocrflow.models import IDENTITY, IngestResult, Reason, Stage
from ocrflow.settings import IngestOptions
from tests.conftest import EVAL_DEV  # noqa: E402

# --- helpers -------------------------------------------------------------------------------


def run(path: Path, tmp_path: Path, **options: int) -> IngestResult:
    return ingest(path, tmp_path / "work", IngestOptions(**options))


def only_reason(result: IngestResult) -> Reason:
    assert not result.pages
    assert len(result.reasons) == 1
    reason = result.reasons[0]
    assert reason.stage is Stage.INGEST
    return reason


def document(size: tuple[int, int] = (320, 200), mode: str = "RGB") -> Image.Image:
    """A page with distinct halves, so a wrong rotation or crop shows up in the pixels."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, size[0] // 2 - 1, size[1] - 1), fill=(200, 30, 30))
    draw.rectangle((size[0] // 2, 0, size[0] - 1, size[1] - 1), fill=(30, 30, 200))
    return image.convert(mode)


def noise(width: int, height: int) -> Image.Image:
    pixels = np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def make_pdf(path: Path, sizes: list[tuple[float, float]], rotations: dict[int, int] | None = None) -> Path:
    pdf = pdfium.PdfDocument.new()
    for index, (width, height) in enumerate(sizes):
        page = pdf.new_page(width, height)
        if rotations and index in rotations:
            page.set_rotation(rotations[index])
    pdf.save(path)
    pdf.close()
    return path


def expected_pixels(points: float, dpi: int) -> float:
    return points * dpi / 72


# --- discover ------------------------------------------------------------------------------


def test_discover_expands_folders_skips_hidden_and_keeps_named_files(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    for name in ["b.PNG", "a.jpg", "sub/c.pdf", "sub/deep/d.TIFF", "sub/e.heic", "notes.txt",
                 ".hidden.png", ".git/objects/x.png", "sub/.cache/y.jpg"]:  # fmt: skip
        (inbox / name).parent.mkdir(parents=True, exist_ok=True)
        (inbox / name).write_bytes(b"x")
    misnamed = tmp_path / "scan.txt"
    misnamed.write_bytes(b"x")

    found = discover([inbox, misnamed, inbox / "a.jpg", inbox])

    assert found == sorted(
        [
            inbox / "a.jpg",
            inbox / "b.PNG",
            inbox / "sub/c.pdf",
            inbox / "sub/deep/d.TIFF",
            inbox / "sub/e.heic",
            misnamed,
        ]  # fmt: skip
    )


def test_discover_missing_path_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pdf"
    with pytest.raises(ConfigurationError) as caught:
        discover([missing])
    assert str(missing) in caught.value.message
    assert "\n" not in caught.value.message


# --- identify ------------------------------------------------------------------------------


def test_identify_names_by_content_and_sniffs_magic_bytes_not_the_name(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"  # really a PNG
    document().save(path, "PNG")
    data = path.read_bytes()

    source = identify(path)

    assert source.document_id == hashlib.sha256(data).hexdigest()
    assert source.size == len(data)
    assert source.media_type == "image/png"
    assert source.path == path


def test_identify_raises_input_error_only_when_the_file_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        identify(tmp_path)  # a folder cannot be read as a file
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert identify(empty).media_type == "application/octet-stream"


def test_same_bytes_at_two_paths_are_one_document(tmp_path: Path) -> None:
    first, second = tmp_path / "a.png", tmp_path / "copy-of-a.png"
    document().save(first)
    second.write_bytes(first.read_bytes())

    one, two = run(first, tmp_path), run(second, tmp_path)

    assert one.source.document_id == two.source.document_id
    assert one.pages[0].path == two.pages[0].path
    assert one.pages[0].sha256 == two.pages[0].sha256


# --- formats -------------------------------------------------------------------------------

FORMATS = [
    ("JPEG", "jpg", "image/jpeg", {"quality": 95}),
    ("PNG", "png", "image/png", {}),
    ("BMP", "bmp", "image/bmp", {}),
    ("TIFF", "tif", "image/tiff", {}),
    ("WEBP", "webp", "image/webp", {"lossless": True}),
    ("HEIF", "heic", "image/heic", {"quality": -1}),  # -1 is pillow_heif's lossless
]


AS_IS = {"JPEG": "jpg", "PNG": "png"}
"""Formats whose file is the page as it is: its bytes are kept, never decoded and encoded again."""


@pytest.mark.parametrize(
    ("pil_format", "suffix", "media_type", "params"), FORMATS, ids=[f[0] for f in FORMATS]
)
def test_every_supported_format_becomes_one_page_in_a_format_every_engine_reads(
    tmp_path: Path, pil_format: str, suffix: str, media_type: str, params: dict[str, int]
) -> None:
    path = tmp_path / f"page.{suffix}"
    original = document()
    try:
        original.save(path, pil_format, **params)
    except (KeyError, OSError, ValueError) as exc:  # pragma: no cover - depends on the codec build
        pytest.skip(f"this PIL build cannot write {pil_format}: {exc}")

    result = run(path, tmp_path)

    assert result.reasons == ()
    assert result.source.media_type == media_type
    assert result.page_count == 1
    (page,) = result.pages
    page_suffix = AS_IS.get(pil_format, "png")
    assert page.path == tmp_path / "work" / result.source.document_id / f"page-0001.{page_suffix}"
    if pil_format in AS_IS:
        assert page.path.read_bytes() == path.read_bytes()  # not re-encoded
    else:
        assert page.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.sha256 == hashlib.sha256(page.path.read_bytes()).hexdigest()
    assert (page.width, page.height) == (320, 200)
    assert page.to_original == IDENTITY
    written = np.asarray(Image.open(page.path).convert("RGB"), dtype=int)
    assert np.abs(written - np.asarray(original, dtype=int)).mean() < 4  # the same picture


def test_a_jpeg_that_had_to_change_is_written_as_png(tmp_path: Path) -> None:
    """Kept as is only when nothing changed it: here a CMYK JPEG becomes RGB."""
    path = tmp_path / "print.jpg"
    document().convert("CMYK").save(path, "JPEG", quality=95)

    (page,) = run(path, tmp_path).pages

    assert page.path.name == "page-0001.png"
    assert Image.open(page.path).mode == "RGB"
    assert "converted CMYK to RGB" in [s.detail for s in page.steps]


def test_a_source_changed_after_it_was_read_is_not_copied(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "scan.jpg"
    document().save(path, "JPEG", quality=95)
    decode = ingest_module._decode_frame

    def decode_then_change(*args, **kwargs):
        page = decode(*args, **kwargs)
        document((320, 200), "L").save(path, "JPEG")  # another upload lands under the same name
        return page

    monkeypatch.setattr(ingest_module, "_decode_frame", decode_then_change)
    result = run(path, tmp_path)
    (page,) = result.pages

    # The page is what was identified and decoded: written from the pixels, not the new file.
    assert page.path.name == "page-0001.png"
    assert Image.open(page.path).mode == "RGB"


def test_multi_page_tiff_makes_every_frame_a_page(tmp_path: Path) -> None:
    sixteen_bit = Image.fromarray(np.full((100, 120), 32768, dtype=np.uint16))
    frames = [document((300, 200)), sixteen_bit, document((150, 400)).convert("CMYK")]
    path = tmp_path / "fax.tif"
    frames[0].save(path, save_all=True, append_images=frames[1:])

    result = run(path, tmp_path)

    assert result.reasons == ()
    assert result.page_count == 3
    assert [(p.page_number, p.width, p.height) for p in result.pages] == [
        (1, 300, 200),
        (2, 120, 100),
        (3, 150, 400),
    ]
    assert [p.path.name for p in result.pages] == ["page-0001.png", "page-0002.png", "page-0003.png"]
    gray = Image.open(result.pages[1].path)
    assert gray.mode == "L"
    assert gray.getpixel((5, 5)) == 128  # 16-bit mid-grey scaled to 8-bit, not clipped to white
    assert "converted I;16 to 8-bit grayscale" in [s.detail for s in result.pages[1].steps]
    assert Image.open(result.pages[2].path).mode == "RGB"
    assert "converted CMYK to RGB" in [s.detail for s in result.pages[2].steps]


@pytest.mark.parametrize(
    ("mode", "transparent", "expected_mode"),
    [("RGBA", True, "RGB"), ("LA", True, "L"), ("P", True, "RGB"), ("P", False, "RGB"), ("1", False, "L")],
)
def test_modes_become_rgb_or_l_and_transparency_goes_onto_white(
    tmp_path: Path, mode: str, transparent: bool, expected_mode: str
) -> None:
    image = document((64, 32)).convert(mode)
    if mode in ("RGBA", "LA"):
        image.putpixel((0, 0), (0, 0, 0, 0) if mode == "RGBA" else (0, 0))
    elif transparent:
        image.info["transparency"] = image.getpixel((0, 0))
    path = tmp_path / f"{mode}.png"
    image.save(path)

    (page,) = run(path, tmp_path).pages

    written = Image.open(page.path)
    assert written.mode == expected_mode
    if transparent:
        assert written.getpixel((0, 0)) in (255, (255, 255, 255))
        assert any(s.detail.startswith("flattened") for s in page.steps)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = document((300, 200))  # red left half, blue right half, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=95)

    (page,) = run(path, tmp_path).pages

    assert (page.width, page.height) == (200, 300)
    upright = Image.open(page.path).convert("RGB")
    red, blue = upright.getpixel((100, 50)), upright.getpixel((100, 250))
    assert red[0] > 150 > red[2] and blue[2] > 150 > blue[0]  # the left half is now on top
    assert "applied EXIF orientation 6" in [s.detail for s in page.steps]


# --- PDF -----------------------------------------------------------------------------------


def test_pdf_pages_are_rendered_at_the_configured_dpi(tmp_path: Path) -> None:
    sizes = [(612, 792), (300, 400), (842, 595)]
    path = make_pdf(tmp_path / "doc.pdf", sizes, rotations={1: 90})

    result = run(path, tmp_path, pdf_dpi=150)

    assert result.source.media_type == "application/pdf"
    assert result.reasons == ()
    assert result.page_count == 3
    shown = [(612, 792), (400, 300), (842, 595)]  # page 2 carries /Rotate 90
    for page, (width_pt, height_pt) in zip(result.pages, shown, strict=True):
        assert page.width == pytest.approx(expected_pixels(width_pt, 150), abs=1)
        assert page.height == pytest.approx(expected_pixels(height_pt, 150), abs=1)
        assert page.to_original == IDENTITY
        assert [s.detail for s in page.steps] == ["rendered at 150 dpi"]
    assert [p.path.name for p in result.pages] == ["page-0001.png", "page-0002.png", "page-0003.png"]


def test_a_huge_pdf_page_is_rendered_smaller_and_maps_back_to_the_configured_dpi(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "poster.pdf", [(2000, 1500)])  # 5556x4167 px at 200 dpi: 23 MP

    (page,) = run(path, tmp_path, pdf_dpi=200).pages

    assert page.width * page.height <= MAX_PIXELS
    assert page.width / page.height == pytest.approx(2000 / 1500, rel=1e-3)
    to_original = np.array(page.to_original)
    corner = to_original @ [page.width, page.height, 1]
    assert corner == pytest.approx([expected_pixels(2000, 200), expected_pixels(1500, 200)], abs=2)
    assert "instead of 200" in page.steps[0].detail


def test_iter_pages_renders_lazily_and_keeps_no_page_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_pdf(tmp_path / "long.pdf", [(200, 300)] * 60)
    source = identify(path)
    loaded: list[int] = []
    get_page = pdfium.PdfDocument.get_page

    def counting_get_page(self: pdfium.PdfDocument, index: int) -> pdfium.PdfPage:
        loaded.append(index)
        return get_page(self, index)

    monkeypatch.setattr(pdfium.PdfDocument, "get_page", counting_get_page)
    earlier: list[weakref.ref[Image.Image]] = []
    for count, item in enumerate(iter_pages(source, IngestOptions(pdf_dpi=72)), start=1):
        assert isinstance(item, DecodedPage)
        assert loaded == list(range(count))  # one page decoded per page asked for, not ahead
        assert all(ref() is None for ref in earlier)  # nothing of earlier pages is kept
        earlier.append(weakref.ref(item.image))
        del item
    assert len(earlier) == 60


def test_ingesting_a_long_pdf_holds_about_one_page_in_memory(tmp_path: Path) -> None:
    # A fresh interpreter, warmed up on a one-page PDF, so its peak memory growth is this ingest's.
    long_pdf = make_pdf(tmp_path / "long.pdf", [(595, 842)] * 60)  # A4
    warm_up = make_pdf(tmp_path / "one.pdf", [(595, 842)])
    script = textwrap.dedent(
        f"""
        import json, resource
        from pathlib import Path
        from ocrflow.ingest import ingest
        from ocrflow.settings import IngestOptions
        options, work = IngestOptions(pdf_dpi=100), Path({str(tmp_path / "work")!r})
        ingest(Path({str(warm_up)!r}), work, options)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = ingest(Path({str(long_pdf)!r}), work, options)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"pages": len(result.pages), "grew_kib": after - before}}))
        """
    )
    report = json.loads(
        subprocess.run([sys.executable, "-c", script], check=True, capture_output=True).stdout
    )

    one_page_kib = expected_pixels(595, 100) * expected_pixels(842, 100) * 3 / 1024  # RGB
    assert report["pages"] == 60
    assert report["grew_kib"] < 10 * one_page_kib  # holding all 60 pages would take 60 pages' worth


# --- repairs to meet Qwen-OCR's limits -----------------------------------------------------


def test_a_huge_image_is_downscaled_below_the_limit_and_maps_back(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    document((6000, 4000), "L").save(path)

    (page,) = run(path, tmp_path).pages

    assert page.width * page.height <= MAX_PIXELS
    assert (page.width, page.height) == (4849, 3233)
    corner = np.array(page.to_original) @ [page.width, page.height, 1]
    assert corner == pytest.approx([6000, 4000])
    assert np.array(page.to_original) @ [0, 0, 1] == pytest.approx([0, 0])
    (step,) = page.steps
    assert step.step == "ingest" and step.applied
    assert step.detail == "downscaled 6000x4000 -> 4849x3233 to meet the 15.68 MP limit"


def test_a_page_too_big_as_png_is_saved_as_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "noisy.bmp"
    noise(2000, 2000).save(path)  # ~12 MB as PNG: noise does not compress

    result = run(path, tmp_path)
    (page,) = result.pages

    assert page.path.name == "page-0001.jpg"
    assert page.path.read_bytes()[:3] == b"\xff\xd8\xff"
    assert page.path.stat().st_size <= MAX_ENCODED_BYTES
    assert page.sha256 == hashlib.sha256(page.path.read_bytes()).hexdigest()
    assert (page.width, page.height) == (2000, 2000)
    assert page.steps[-1].detail.startswith("saved as JPEG quality 92")
    assert not page.path.with_suffix(".png").exists()


def test_a_page_too_big_even_as_jpeg_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_module, "MAX_ENCODED_BYTES", 20_000)
    path = tmp_path / "noisy.png"
    noise(400, 400).save(path)

    reason = only_reason(run(path, tmp_path))

    assert (reason.code, reason.page) == ("page_too_large", 1)


def test_a_re_ingest_that_now_needs_jpeg_removes_the_older_png(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "noisy.png"
    noise(200, 200).save(path)
    assert run(path, tmp_path).pages[0].path.name == "page-0001.png"

    monkeypatch.setattr(ingest_module, "MAX_ENCODED_BYTES", 100_000)
    (page,) = run(path, tmp_path).pages

    assert [p.name for p in page.path.parent.iterdir()] == ["page-0001.jpg"]


def test_re_ingesting_is_idempotent(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "two.pdf", [(300, 400), (400, 300)])

    first = run(path, tmp_path, pdf_dpi=100)
    before = {p.path: p.path.read_bytes() for p in first.pages}
    second = run(path, tmp_path, pdf_dpi=100)

    assert second == first
    assert {p.path: p.path.read_bytes() for p in second.pages} == before
    assert sorted(p.name for p in first.pages[0].path.parent.iterdir()) == ["page-0001.png", "page-0002.png"]


# --- bad input -----------------------------------------------------------------------------


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(b"")

    result = run(path, tmp_path)

    reason = only_reason(result)
    assert (reason.code, reason.page) == ("empty_file", None)
    assert result.page_count == 0
    assert not (tmp_path / "work").exists()


def test_unreadable_path_is_a_reason_not_an_exception(tmp_path: Path) -> None:
    folder = run(tmp_path, tmp_path)
    missing = run(tmp_path / "gone.png", tmp_path)

    assert (only_reason(folder).code, only_reason(missing).code) == ("not_a_regular_file", "unreadable_file")
    assert "a folder" in only_reason(folder).message
    assert "No such file" in only_reason(missing).message
    assert len(folder.source.document_id) == len(missing.source.document_id) == 64


def test_file_over_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    document().save(path)

    reason = only_reason(run(path, tmp_path, max_file_bytes=100))

    assert (reason.code, reason.page) == ("file_too_large", None)


def test_truncated_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    buffer = io.BytesIO()
    noise(400, 300).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 2 // 3])

    reason = only_reason(run(path, tmp_path))

    assert (reason.code, reason.page) == ("truncated_image", 1)
    assert "upload the complete file again" in reason.message


def test_damaged_but_complete_image_is_corrupt_not_truncated(tmp_path: Path) -> None:
    path = tmp_path / "bad.png"
    data = bytearray(_png_bytes(document()))
    idat = data.index(b"IDAT")
    data[idat + 4 : idat + 40] = b"\x00" * 36  # wreck the compressed pixels, keep IEND
    path.write_bytes(bytes(data))

    reason = only_reason(run(path, tmp_path))

    assert reason.code == "corrupt_image"


def test_text_named_png_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "invoice.png"
    path.write_text("Invoice 2024-001\nTotal: 12.50 EUR\n")

    result = run(path, tmp_path)

    reason = only_reason(result)
    assert (reason.code, reason.page) == ("not_an_image", None)
    assert reason.message.startswith("the file is not an image or PDF (it starts like text)")
    assert result.source.media_type == "application/octet-stream"


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        (b"PK\x03\x04" + b"\x00" * 40, "not_an_image", "ZIP archive"),
        (b"\x00\x01\x02\x03\xfe\xff" * 10, "not_an_image", "does not recognise"),
        (b"GIF89a" + b"\x00" * 40, "unsupported_format", "GIF image"),
    ],
)
def test_other_files_say_what_they_are(tmp_path: Path, content: bytes, code: str, words: str) -> None:
    path = tmp_path / "upload.jpg"
    path.write_bytes(content)

    reason = only_reason(run(path, tmp_path))

    assert reason.code == code
    assert words in reason.message


def test_tiny_image_is_refused_with_a_readable_message(tmp_path: Path) -> None:
    path = tmp_path / "dot.png"
    Image.new("RGB", (5, 5), "black").save(path)

    result = run(path, tmp_path)

    reason = only_reason(result)
    assert (reason.code, reason.page) == ("image_too_small", 1)
    assert reason.message.startswith("page 1 is 5x5 pixels; OCR needs each side longer than 10 pixels")
    assert result.page_count == 1


@pytest.mark.parametrize(("size", "accepted"), [((10, 10), False), ((11, 11), True)])
def test_the_smallest_side_limit_is_exclusive(tmp_path: Path, size: tuple[int, int], accepted: bool) -> None:
    path = tmp_path / "small.png"
    Image.new("L", size, 0).save(path)

    assert bool(run(path, tmp_path).pages) is accepted


@pytest.mark.parametrize(
    ("size", "code"), [((1, 3000), "extreme_aspect_ratio"), ((4020, 20), "extreme_aspect_ratio")]
)
def test_extreme_strips_are_refused(tmp_path: Path, size: tuple[int, int], code: str) -> None:
    path = tmp_path / "strip.png"
    Image.new("L", size, 0).save(path)

    reason = only_reason(run(path, tmp_path))

    assert (reason.code, reason.page) == (code, 1)
    assert f"{size[0]}x{size[1]}" in reason.message and "200:1" in reason.message


def test_a_long_strip_within_200_to_1_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "receipt.png"
    Image.new("L", (20, 4000), 255).save(path)

    assert run(path, tmp_path).pages[0].height == 4000


def test_one_bad_page_does_not_stop_the_others(tmp_path: Path) -> None:
    path = tmp_path / "mixed.tif"
    frames = [document((300, 200)), Image.new("RGB", (5, 5)), document((200, 300))]
    frames[0].save(path, save_all=True, append_images=frames[1:])

    result = run(path, tmp_path)

    assert [p.page_number for p in result.pages] == [1, 3]
    assert [(r.code, r.page) for r in result.reasons] == [("image_too_small", 2)]
    assert result.page_count == 3
    assert sorted(p.name for p in result.pages[0].path.parent.iterdir()) == ["page-0001.png", "page-0003.png"]


def test_encrypted_pdf(tmp_path: Path) -> None:
    path = tmp_path / "locked.pdf"
    path.write_bytes(_encrypted_pdf(user_password=b"secret"))
    # It is a real encrypted PDF: pdfium wants the password, and opens it with it.
    with pytest.raises(pdfium.PdfiumError):
        pdfium.PdfDocument(path)
    with pdfium.PdfDocument(path, password="secret") as unlocked:
        assert len(unlocked) == 1

    reason = only_reason(run(path, tmp_path))

    assert (reason.code, reason.page) == ("encrypted_pdf", None)
    assert "remove the password" in reason.message


def test_pdf_without_pages(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "empty.pdf", [])
    # pdfium keeps its last error across calls; a failure just before must not leak into this one.
    (tmp_path / "locked.pdf").write_bytes(_encrypted_pdf(user_password=b"secret"))
    assert run(tmp_path / "locked.pdf", tmp_path).reasons[0].code == "encrypted_pdf"

    reason = only_reason(run(path, tmp_path))

    assert (reason.code, reason.page) == ("empty_pdf", None)


def test_corrupt_pdf(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pa")

    reason = only_reason(run(path, tmp_path))

    assert (reason.code, reason.page) == ("unreadable_pdf", None)


def test_too_many_pages_is_refused_before_rendering(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "long.pdf", [(200, 300)] * 3)
    tiff = tmp_path / "long.tif"
    document().save(tiff, save_all=True, append_images=[document(), document()])

    # A PDF says how many pages it has; a TIFF's frames are counted only to one past the limit.
    for path, pages in ((pdf, "3 pages"), (tiff, "more than 2 pages")):
        result = run(path, tmp_path, max_pages=2)
        reason = only_reason(result)
        assert (reason.code, reason.page) == ("too_many_pages", None)
        assert f"the document has {pages}" in reason.message
        assert not (tmp_path / "work" / result.source.document_id).exists()


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))  # 10 gigapixels claimed in 60 bytes

    reason = only_reason(run(path, tmp_path))

    assert (reason.code, reason.page) == ("decompression_bomb", 1)
    assert "10,000,000,000 pixels" in reason.message


def test_small_file_with_huge_dimensions_is_refused_by_the_configured_limit(tmp_path: Path) -> None:
    pil_default = Image.MAX_IMAGE_PIXELS
    path = tmp_path / "blank.png"
    Image.new("L", (3000, 1000), 255).save(path)  # a few KB on disk, 3 MP decoded
    assert path.stat().st_size < 20_000

    reason = only_reason(run(path, tmp_path, max_decoded_pixels=1_000_000))

    assert (reason.code, reason.page) == ("decompression_bomb", 1)
    assert "3,000,000 pixels" in reason.message and "1,000,000" in reason.message
    assert run(path, tmp_path, max_decoded_pixels=3_000_000).pages  # the limit is the option's
    assert Image.MAX_IMAGE_PIXELS == pil_default  # and PIL's global is left as it was


def test_pils_own_bomb_guard_while_decoding_becomes_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "page.png"
    document().save(path)

    def refuse(self: Image.Image) -> None:
        raise Image.DecompressionBombError("too big")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    reason = only_reason(run(path, tmp_path))

    assert (reason.code, reason.page) == ("decompression_bomb", 1)


# --- real documents ------------------------------------------------------------------------


def test_real_receipt_scan(tmp_path: Path) -> None:
    path = EVAL_DEV / "receipts/sroie_000.jpg"
    if not path.exists():
        pytest.skip(f"{path} is not here")

    (page,) = run(path, tmp_path).pages

    with Image.open(path) as original:
        assert (page.width, page.height) == original.size


def test_real_scanned_pdf(tmp_path: Path) -> None:
    pdfs = sorted((EVAL_DEV / "pdf").glob("*.pdf"))
    if not pdfs:
        pytest.skip(f"no PDF in {EVAL_DEV / 'pdf'}")

    result = run(pdfs[0], tmp_path, pdf_dpi=100)

    assert result.reasons == ()
    with pdfium.PdfDocument(pdfs[0]) as pdf:
        assert result.page_count == len(pdf)
        width_pt, height_pt = pdf[0].get_size()
    assert result.pages[0].width == pytest.approx(expected_pixels(width_pt, 100), abs=1)
    assert result.pages[0].height == pytest.approx(expected_pixels(height_pt, 100), abs=1)


# --- hand-made files -----------------------------------------------------------------------


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )


_PASSWORD_PADDING = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def _rc4(key: bytes, data: bytes) -> bytes:
    state, j = list(range(256)), 0
    for i in range(256):
        j = (j + state[i] + key[i % len(key)]) % 256
        state[i], state[j] = state[j], state[i]
    out, i, j = bytearray(), 0, 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + state[i]) % 256
        state[i], state[j] = state[j], state[i]
        out.append(byte ^ state[(state[i] + state[j]) % 256])
    return bytes(out)


def _encrypted_pdf(user_password: bytes) -> bytes:
    """A one-page PDF locked with the standard security handler, revision 2 (PDF 1.7, 7.6.3).

    The page has no strings or streams, so only the /O and /U entries need computing.
    """

    def padded(password: bytes) -> bytes:
        return (password + _PASSWORD_PADDING)[:32]

    file_id, permissions = b"ocrflow-test-id!", -4
    owner = _rc4(hashlib.md5(padded(b"owner")).digest()[:5], padded(user_password))
    key_input = padded(user_password) + owner + permissions.to_bytes(4, "little", signed=True) + file_id
    user = _rc4(hashlib.md5(key_input).digest()[:5], _PASSWORD_PADDING)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 300] >>",
        b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P -4 >>"
        % (owner.hex().encode(), user.hex().encode()),
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    ids = b"<%s> <%s>" % (file_id.hex().encode(), file_id.hex().encode())
    out += b"trailer\n<< /Size %d /Root 1 0 R /Encrypt 4 0 R /ID [%s] >>\n" % (len(objects) + 1, ids)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


# --- one page at a time --------------------------------------------------------------------


def _page_by_page(path: Path, tmp_path: Path, **options: int) -> tuple[IngestResult, list]:
    opened = open_document(path, IngestOptions(**options))
    work = tmp_path / "work"
    pages = [
        ingest_page(opened.source, number, work, IngestOptions(**options))
        for number in range(1, opened.page_count + 1)
    ]
    return opened, pages


@pytest.mark.parametrize("kind", ["pdf", "tiff", "jpeg"])
def test_page_by_page_gives_what_ingest_gives(tmp_path: Path, kind: str) -> None:
    if kind == "pdf":
        path = make_pdf(tmp_path / "doc.pdf", [(300, 400), (400, 300), (200, 200)], rotations={1: 90})
    elif kind == "tiff":
        path = tmp_path / "fax.tif"
        document((300, 200)).save(path, save_all=True, append_images=[document((150, 400)).convert("CMYK")])
    else:
        path = tmp_path / "scan.jpg"
        document().save(path, "JPEG", quality=90)

    whole = run(path, tmp_path, pdf_dpi=100)
    opened, pages = _page_by_page(path, tmp_path, pdf_dpi=100)

    assert opened.pages == () and opened.reasons == ()
    assert opened.source == whole.source and opened.page_count == whole.page_count
    assert tuple(pages) == whole.pages  # the same files, hashes, sizes, steps


def test_open_document_decodes_nothing_and_refuses_the_whole_document(tmp_path: Path) -> None:
    too_long = make_pdf(tmp_path / "long.pdf", [(200, 300)] * 4)
    refused = open_document(too_long, IngestOptions(max_pages=3))
    assert (refused.page_count, refused.pages, [r.code for r in refused.reasons]) == (
        0,
        (),
        ["too_many_pages"],
    )

    text = tmp_path / "notes.txt"
    text.write_text("not a scan")
    assert [r.code for r in open_document(text, IngestOptions()).reasons] == ["not_an_image"]
    assert not (tmp_path / "work").exists()


def test_a_bad_page_is_a_reason_for_that_page_only(tmp_path: Path) -> None:
    path = tmp_path / "strip.png"
    Image.new("L", (3000, 1), 255).save(path)

    opened, pages = _page_by_page(path, tmp_path)

    assert opened.page_count == 1
    (reason,) = pages
    assert (reason.code, reason.page) == ("extreme_aspect_ratio", 1)
