"""Hostile inputs for ingest and a whole run: a seeded corpus generator and the checks it must pass.

:func:`build_corpus` writes ``count`` files into a folder, each made one way (:data:`KINDS`):
valid seeds (PNG, JPEG, BMP, WEBP, multi-page TIFF, two-page PDF) with bit flips, truncations
or header mutations; special files (a FIFO, a socket, links to ``/dev/zero``, ``/dev/urandom``
and ``/proc/self/environ``); links (inside the folder, outside it, broken, loops, a folder link
that loops); odd names (newlines, bytes that are not UTF-8, 255 bytes, a leading dash); and
page-count bombs (a TIFF of thousands of frames, a TIFF whose frames loop, a PDF whose page
tree claims a billion pages or points back at itself, a PNG claiming 100k x 100k pixels).

The same seed gives the same corpus. ``tests/test_hostile_inputs.py`` runs a sample of it and
``bench/fuzz_inputs.py`` a few hundred files; both check what :func:`problems` lists: every
file ends with a reason a person can act on, never an internal error.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium
from PIL import Image, ImageDraw, ImageFont

from ocrflow.ingest import discover, ingest
from ocrflow.models import IngestResult
from ocrflow.settings import IngestOptions


@dataclass(frozen=True)
class Case:
    name: str
    """The file's name in the corpus folder (``str``, with non-UTF-8 bytes as surrogates)."""
    kind: str


# --- seeds: small valid documents --------------------------------------------------------------


def page_image(rng: random.Random, size: tuple[int, int] = (360, 240)) -> Image.Image:
    """A small page with a few lines of text, so what still decodes goes through OCR quickly."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=22)
    for line in range(3):
        text = f"TOTAL {rng.randint(1, 999)}.{rng.randint(0, 99):02d}"
        draw.text((20, 30 + 60 * line), text, fill="black", font=font)
    return image


def _encoded(image: Image.Image, pil_format: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, pil_format, **params)
    return buffer.getvalue()


def seed_bytes(kind: str, rng: random.Random) -> bytes:
    if kind == "tiff":
        frames = [page_image(rng) for _ in range(3)]
        return _encoded(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    if kind == "pdf":
        return pdf_bytes([page_image(rng), page_image(rng)])
    pil_format = {"png": "PNG", "jpg": "JPEG", "bmp": "BMP", "webp": "WEBP"}[kind]
    return _encoded(page_image(rng), pil_format)


def pdf_bytes(images: list[Image.Image]) -> bytes:
    pdf = pdfium.PdfDocument.new()
    for image in images:
        page = pdf.new_page(image.width * 0.75, image.height * 0.75)
        picture = pdfium.PdfImage.new(pdf)
        picture.set_bitmap(pdfium.PdfBitmap.from_pil(image))
        picture.set_matrix(pdfium.PdfMatrix().scale(image.width * 0.75, image.height * 0.75))
        page.insert_obj(picture)
        page.gen_content()
    buffer = io.BytesIO()
    pdf.save(buffer)
    pdf.close()
    return buffer.getvalue()


SEED_KINDS = ("png", "jpg", "bmp", "webp", "tiff", "pdf")

# --- mutations -------------------------------------------------------------------------------


def bit_flips(data: bytes, rng: random.Random) -> bytes:
    mutable = bytearray(data)
    for _ in range(rng.choice((1, 2, 8, 64))):
        position = rng.randrange(len(mutable))
        mutable[position] ^= 1 << rng.randrange(8)
    return bytes(mutable)


def truncation(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(1, len(data))]


def header_mutation(data: bytes, rng: random.Random) -> bytes:
    """Overwrite a few bytes near the start (dimensions, offsets, counts) with extreme values."""
    mutable = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(min(len(mutable) - 4, 160))
        value = rng.choice(
            (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x01\x00\x00")
        )
        mutable[position : position + 4] = value
    return bytes(mutable)


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "bit_flips": bit_flips,
    "truncation": truncation,
    "header_mutation": header_mutation,
}

# --- page-count and pixel bombs -------------------------------------------------------------


def tiff_of_frames(count: int, *, loop: bool = False) -> bytes:
    """A little-endian TIFF of ``count`` 16x16 grey frames sharing one strip; ``loop``: the last
    frame's next-frame offset points back at the first."""
    header = b"II*\x00" + struct.pack("<I", 8 + 256)
    strip = bytes(range(256))  # 16x16 pixels, 8 bits
    strip_offset = 8
    entries = [
        (256, 3, 1, 16),  # ImageWidth
        (257, 3, 1, 16),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: black is zero
        (273, 4, 1, strip_offset),  # StripOffsets
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 3, 1, 16),  # RowsPerStrip
        (279, 4, 1, 256),  # StripByteCounts
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    first = 8 + 256
    body = bytearray()
    for index in range(count):
        offset = first + index * ifd_size
        following = offset + ifd_size if index < count - 1 else (first if loop else 0)
        body += struct.pack("<H", len(entries))
        for tag, kind, n, value in entries:
            body += struct.pack("<HHII", tag, kind, n, value)
        body += struct.pack("<I", following)
    return header[:4] + struct.pack("<I", first) + strip + bytes(body)


def pdf_claiming_pages(count: int, *, loop: bool = False) -> bytes:
    """A one-page PDF whose page tree says it has ``count`` pages, or whose page lists itself as a kid."""
    kids = "3 0 R 2 0 R" if loop else "3 0 R"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header claiming ``width`` x ``height`` pixels, with one tiny compressed chunk."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


BOMBS: dict[str, Callable[[], bytes]] = {
    "tiff_5000_frames": lambda: tiff_of_frames(5000),
    "tiff_frame_loop": lambda: tiff_of_frames(3, loop=True),
    "pdf_billion_pages": lambda: pdf_claiming_pages(1_000_000_000),
    "pdf_page_tree_loop": lambda: pdf_claiming_pages(2, loop=True),
    "png_100k_square": lambda: png_claiming(100_000, 100_000),
}

# --- names and special files -------------------------------------------------------------------

ODD_NAMES = (
    "line\nbreak.png",
    "tab\there.jpg",
    os.fsdecode(b"latin1-\xe9t\xe9.png"),  # not UTF-8: the name holds a surrogate
    "-leading-dash.png",
    "  spaces  .png",
    "\u202eRTL-override.png",
    "emoji-\U0001f4c4.png",
    "x" * 246 + ".png",  # with the "NNNN-" prefix, 255 bytes: the longest name most file systems allow
    "back\\slash.png",
    "quote'\"name.png",
    "UPPER.PNG",
    "no-dot-png",
)

SPECIAL = ("fifo", "socket", "link_dev_zero", "link_dev_urandom", "link_proc_environ")
LINKS = ("link_inside", "link_outside", "link_broken", "link_self_loop", "link_pair_loop", "folder_link_loop")

KINDS = (
    *(f"{mutation}:{seed}" for mutation in MUTATIONS for seed in SEED_KINDS),
    *(f"bomb:{bomb}" for bomb in BOMBS),
    *(f"special:{kind}" for kind in SPECIAL),
    *(f"link:{kind}" for kind in LINKS),
    "odd_name",
    "empty",
    "random_bytes",
)


def build_corpus(folder: Path, count: int, seed: int = 0, *, outside: Path | None = None) -> list[Case]:
    """Write ``count`` hostile files into ``folder`` (every kind at least once when ``count`` allows).

    ``outside`` is a folder beside the corpus that links may point into; it is created.
    Returns what was made, in order. Sockets stay bound by nobody: the file stays behind.
    """
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    outside = outside or folder.parent / f"{folder.name}-outside"
    outside.mkdir(parents=True, exist_ok=True)
    kinds = list(KINDS) + [rng.choice(_WEIGHTED) for _ in range(max(0, count - len(KINDS)))]
    cases = []
    for index, kind in enumerate(kinds[:count]):
        cases.append(_make(folder, outside, index, kind, rng))
    return cases


# Mutated seeds are most of a fuzz run; special files and links a few each.
_WEIGHTED = tuple(k for k in KINDS if ":" in k and k.split(":")[0] in MUTATIONS) * 6 + KINDS


def _make(folder: Path, outside: Path, index: int, kind: str, rng: random.Random) -> Case:
    group, _, detail = kind.partition(":")
    prefix = f"{index:04d}-"
    if group in MUTATIONS:
        name = f"{prefix}{group}.{detail}"
        (folder / name).write_bytes(MUTATIONS[group](seed_bytes(detail, rng), rng))
    elif group == "bomb":
        suffix = {"tiff": "tif", "pdf": "pdf", "png": "png"}[detail.split("_")[0]]
        name = f"{prefix}{detail}.{suffix}"
        (folder / name).write_bytes(BOMBS[detail]())
    elif group == "special":
        name = f"{prefix}{detail}.png"
        _special(folder / name, detail)
    elif group == "link":
        name = f"{prefix}{detail}.png"
        _link(folder, outside, name, detail, rng)
    elif kind == "odd_name":
        name = prefix + rng.choice(ODD_NAMES)
        (folder / name).write_bytes(seed_bytes("png", rng))
    elif kind == "empty":
        name = f"{prefix}empty.pdf"
        (folder / name).write_bytes(b"")
    else:
        name = f"{prefix}random.{rng.choice(('png', 'jpg', 'pdf', 'tif'))}"
        (folder / name).write_bytes(rng.randbytes(rng.randint(1, 4096)))
    return Case(name=name, kind=kind)


def _special(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(path))
    else:
        target = {"link_dev_zero": "/dev/zero", "link_dev_urandom": "/dev/urandom"}.get(
            kind, "/proc/self/environ"
        )
        path.symlink_to(target)


def _link(folder: Path, outside: Path, name: str, kind: str, rng: random.Random) -> None:
    path = folder / name
    if kind == "link_inside":
        target = folder / f"target-of-{name}"
        target.write_bytes(seed_bytes("png", rng))
        path.symlink_to(target.name)
    elif kind == "link_outside":
        target = outside / f"secret-{name}"
        target.write_bytes(seed_bytes("png", rng))
        path.symlink_to(target)
    elif kind == "link_broken":
        path.symlink_to(folder / "nothing-here.png")
    elif kind == "link_self_loop":
        path.symlink_to(name)
    elif kind == "link_pair_loop":
        partner = f"partner-of-{name}"
        path.symlink_to(partner)
        (folder / partner).symlink_to(name)
    else:  # a folder holding a link to its own parent: a walk that followed it would never end
        sub = folder / name.removesuffix(".png")
        sub.mkdir()
        (sub / "up").symlink_to("..")
        (sub / f"inner-{name}").write_bytes(seed_bytes("png", rng))


# --- running it ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ingested:
    path: Path
    seconds: float
    result: IngestResult | None
    """None: still running at the deadline (the thread is left behind)."""


def ingest_each(folder: Path, work_dir: Path, options: IngestOptions, deadline: float) -> list[Ingested]:
    """Ingest every file a run over ``folder`` would, each in its own thread given ``deadline`` seconds."""
    records = []
    for path in discover([folder], follow_links_outside=options.follow_links_outside):
        box: list[IngestResult] = []
        worker = threading.Thread(target=_ingest_into, args=(box, path, work_dir, options), daemon=True)
        started = time.perf_counter()
        worker.start()
        worker.join(deadline)
        records.append(Ingested(path, time.perf_counter() - started, box[0] if box else None))
    return records


def _ingest_into(box: list[IngestResult], path: Path, work_dir: Path, options: IngestOptions) -> None:
    box.append(ingest(path, work_dir, options))


def run_cli(folder: Path, out: Path, timeout: float) -> subprocess.CompletedProcess:
    """``ocrflow run folder --out out`` in its own process, inline (no Prefect server), within ``timeout``."""
    command = [Path(sys.executable).parent / "ocrflow", "run", folder, "--out", out, "--runner", "inline"]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def outcomes(out: Path) -> list[dict]:
    """Every document result in an output folder (``<sha256>.json``)."""
    return [json.loads(path.read_text()) for path in out.glob("*.json") if len(path.stem) == 64]


# --- what a run over the corpus must show ------------------------------------------------------

NOT_A_REASON = ("internal_error", "ingest_failed", "preprocess_failed", "ocr_failed", "route_failed")
"""Codes that mean code failed, not the input: a generic exception turned into a reason."""
_TECHNICAL = re.compile(r"\b\w*(Error|Exception|Warning)\b|Traceback|\[Errno|<[a-z]\w* object")
"""What a programmer's message shows: exception names, tracebacks, raw OS errors, object reprs."""


def problems(outcomes: Iterable[dict]) -> list[str]:
    """What is wrong with outcomes (result JSON as dicts, or just ``source`` and ``reasons``):
    each rejected one has a reason a person can act on (a message without exception names),
    and none is an internal error."""
    found = []
    for outcome in outcomes:
        where = outcome.get("source", "?")
        if "status" in outcome and outcome["status"] not in ("accepted", "needs_review", "rejected"):
            found.append(f"{where}: status {outcome['status']!r}")
        reasons = outcome.get("reasons") or []
        if outcome.get("status") == "rejected" and not reasons:
            found.append(f"{where}: rejected without a reason")
        for reason in reasons:
            message = reason.get("message") or ""
            if reason.get("code") in NOT_A_REASON or _TECHNICAL.search(message) or not message:
                found.append(f"{where}: {reason.get('code')}: {message!r}")
    return found
