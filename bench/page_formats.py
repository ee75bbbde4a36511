"""Which file format should a page have between stages? CPU to write it, to read it back, and its size.

A page ingest writes is read again by preprocessing (OpenCV) and by the engine (RapidOCR
reads the file; the API engines send its bytes when they are PNG or JPEG). For each
candidate it measures, per page, the CPU seconds to encode the decoded page, to decode the
file with OpenCV (``cv2.imread``, as preprocessing does), and the file's size:

- PNG at zlib levels 6 (PIL's default, what ingest wrote), 3 and 1, and 0 (stored, no compression);
- BMP (uncompressed; not a format the API engines take without re-encoding);
- the source file itself, for JPEG and PNG sources: copied, not re-encoded (encode = 0).

Pages: eval-dev's receipt scans and photos (JPEG) and the pages of a PDF rendered at 200 dpi
(``--pdf``, default the first 4 pages of eval-dev's worksheet scan and 4 receipt pages).
Each figure is the median over ``--repeat`` runs, CPU time of this process (one thread).

    .venv/bin/python bench/page_formats.py [--repeat 5]

Results: bench/RESULTS-overhead.md ("Page format").
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EVAL_DEV = Path(os.environ.get("OCRFLOW_EVAL_DEV", ROOT.parent / "shared" / "eval-dev"))
CANDIDATES = {
    "png-6": ("PNG", {"compress_level": 6}),
    "png-3": ("PNG", {"compress_level": 3}),
    "png-1": ("PNG", {"compress_level": 1}),
    "png-0": ("PNG", {"compress_level": 0}),
    "bmp": ("BMP", {}),
}


def cpu(function, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.process_time()
        result = function()
        times.append(time.process_time() - started)
    return statistics.median(times), result


def pages(pdf_pages: int) -> list[tuple[str, object, Path | None]]:
    """(kind, decoded PIL image, source file if it is a JPEG or PNG) for each test page."""
    import pypdfium2 as pdfium
    from PIL import Image

    found = []
    receipts = sorted((EVAL_DEV / "receipts").glob("sroie_*.jpg"))[:6]
    photos = sorted((EVAL_DEV / "receipts").glob("wildreceipt_*.jpeg"))[:4]
    for path in receipts + photos:
        with Image.open(path) as image:
            found.append(("jpeg scan" if "sroie" in path.name else "jpeg photo", image.convert("RGB"), path))
    with tempfile.TemporaryDirectory() as tmp:
        scans = [Image.open(p).convert("RGB") for p in receipts[:pdf_pages]]
        receipt_pdf = Path(tmp) / "receipts.pdf"
        scans[0].save(receipt_pdf, "PDF", save_all=True, append_images=scans[1:], resolution=200.0)
        for pdf_path in (EVAL_DEV / "pdf" / "dyslexia_dictee_scan.pdf", receipt_pdf):
            pdf = pdfium.PdfDocument(pdf_path)
            for number in range(min(pdf_pages, len(pdf))):
                bitmap = pdf[number].render(scale=200 / 72)
                found.append(("pdf page, 200 dpi", bitmap.to_pil(), None))
            pdf.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pdf", type=int, default=4, help="pages of each PDF")
    args = parser.parse_args()

    import cv2

    cv2.setNumThreads(1)
    rows: dict[tuple[str, str], list[tuple[float, float, int, int]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "page"
        for kind, image, source in pages(args.pdf):
            megapixels = image.width * image.height / 1e6
            for name, (fmt, params) in CANDIDATES.items():

                def encode(image=image, fmt=fmt, params=params) -> bytes:
                    buffer = io.BytesIO()
                    image.save(buffer, fmt, **params)
                    return buffer.getvalue()

                encode_s, data = cpu(encode, args.repeat)
                target.write_bytes(data)
                decode_s, _ = cpu(lambda: cv2.imread(str(target), cv2.IMREAD_COLOR), args.repeat)
                rows.setdefault((kind, name), []).append((encode_s, decode_s, len(data), megapixels))
            if source is not None:
                read = str(source)
                decode_s, _ = cpu(lambda read=read: cv2.imread(read, cv2.IMREAD_COLOR), args.repeat)
                rows.setdefault((kind, "source, copied"), []).append(
                    (0.0, decode_s, source.stat().st_size, megapixels)
                )

    print("| pages | format | n | MP/page | encode ms/page | cv2 decode ms/page | MB/page |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (kind, name), values in rows.items():
        n = len(values)
        mean = [sum(v[i] for v in values) / n for i in range(4)]
        print(
            f"| {kind} | {name} | {n} | {mean[3]:.1f} | {1000 * mean[0]:.0f} | {1000 * mean[1]:.0f} "
            f"| {mean[2] / 1e6:.2f} |"
        )


if __name__ == "__main__":
    main()
