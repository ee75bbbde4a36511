"""Preprocessing on real images: each step measures, decides, records, and can be switched off."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ocrflow.ingest import ingest
from ocrflow.models import PageRef
from ocrflow.ocr import recognize
from ocrflow.preprocess import measure_skew, preprocess
from ocrflow.settings import IngestOptions, PreprocessOptions
from tests.conftest import EXAMPLES, eval_dev

ALL_OFF = PreprocessOptions(rescale=False, denoise=False, clahe=False, orientation=False, deskew=False)


def _page(path: Path) -> PageRef:
    image = cv2.imread(str(path))
    return PageRef(
        document_id=path.stem,
        page_number=1,
        path=path,
        sha256="",
        width=image.shape[1],
        height=image.shape[0],
    )


def _save(image: np.ndarray, path: Path) -> PageRef:
    cv2.imwrite(str(path), image)
    return _page(path)


def _steps(page: PageRef) -> dict[str, object]:
    return {record.step: record for record in page.steps}


def _rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate counter-clockwise onto a white canvas large enough for the whole page."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    size = (int(width * cos + height * sin), int(width * sin + height * cos))
    matrix[:, 2] += (np.array(size) - (width, height)) / 2
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_CUBIC, borderValue=(255, 255, 255))


def _analysis_skew(path: Path) -> float:
    gray = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY)
    scale = min(1.0, 1600 / max(gray.shape))
    return measure_skew(cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))[0]


@pytest.mark.parametrize(
    ("source", "turn", "expected"),
    [
        ("receipts/sroie_000.jpg", cv2.ROTATE_90_CLOCKWISE, 270),
        ("receipts/sroie_000.jpg", cv2.ROTATE_180, 180),
        ("photos/wildreceipt_skew_12998d6f0939.jpeg", cv2.ROTATE_90_COUNTERCLOCKWISE, 90),
        ("examples/invoice_valid.png", cv2.ROTATE_90_CLOCKWISE, 270),
    ],
)
def test_a_turned_page_is_turned_back_upright(tmp_path, source, turn, expected):
    path = EXAMPLES / Path(source).name if source.startswith("examples/") else eval_dev(source)
    upright = cv2.imread(str(path))
    page = _save(cv2.rotate(upright, turn), tmp_path / "turned.png")

    done = preprocess(page, PreprocessOptions(deskew=False), work_dir=tmp_path)

    orientation = _steps(done)["orientation"]
    assert orientation.applied, orientation.detail
    assert orientation.measurements["angle"] == expected
    # Quarter turns are lossless: the page comes back pixel for pixel.
    assert np.array_equal(cv2.imread(str(done.path)), upright)


@pytest.mark.parametrize(
    ("source", "turn"),
    [
        ("receipts/sroie_000.jpg", cv2.ROTATE_180),
        ("photos/sroie_skew_288.jpg", None),  # 0.37 closer to turning at 800 px
        ("photos/wildreceipt_dark_887ce47e5f76.jpeg", None),  # the largest drift at 1000 px
    ],
)
def test_the_upside_down_check_on_its_smaller_copy_reads_as_the_analysis_copy(source, turn):
    from ocrflow import preprocess as steps

    image = cv2.imread(str(eval_dev(source)))
    analysis = steps._Analysis.of(image if turn is None else cv2.rotate(image, turn))
    skew = analysis.skew[0]

    full, _ = steps.measure_upside_down(analysis.gray, skew)
    smaller, crops = steps.measure_upside_down(steps._downscale(analysis.gray, steps._UPSIDE_DOWN_SIDE), skew)

    sure = steps._FLIP_PROBABILITY_MIN
    assert crops == steps._CLS_CROPS
    assert (smaller >= sure) == (turn is not None) == (full >= sure)
    assert smaller == pytest.approx(full, abs=0.15)


def test_a_small_skew_is_measured_and_straightened(tmp_path):
    receipt = eval_dev("receipts/sroie_041.jpg")
    page = _save(_rotate(cv2.imread(str(receipt)), 3.0), tmp_path / "skewed.png")
    assert _analysis_skew(page.path) == pytest.approx(3.0, abs=0.5)

    done = preprocess(page, PreprocessOptions(), work_dir=tmp_path)

    deskew = _steps(done)["deskew"]
    assert deskew.applied, deskew.detail
    # sroie_041 itself measures -0.25 degrees, so the page reads about 2.75 once turned.
    assert deskew.measurements["angle"] == pytest.approx(2.75, abs=0.3)
    assert abs(_analysis_skew(done.path)) < 0.4
    assert not _steps(done)["orientation"].applied


def test_a_photo_whose_lines_bend_is_not_rotated(tmp_path):
    # A crumpled receipt: the bottom lines slope 2 degrees, the top ones hardly at all.
    page = _page(eval_dev("photos/wildreceipt_dark_887ce47e5f76.jpeg"))

    deskew = _steps(preprocess(page, PreprocessOptions(), work_dir=tmp_path))["deskew"]

    assert not deskew.applied
    assert abs(deskew.measurements["angle"]) > 1.2
    assert deskew.measurements["band_spread"] > 1.5
    assert "bend" in deskew.detail


@pytest.mark.parametrize("source", ["receipts/sroie_020.jpg", "text_lines/uw3_test_010001.png", "examples"])
def test_a_clean_scan_is_left_alone(tmp_path, source):
    path = EXAMPLES / "receipt_valid.png" if source == "examples" else eval_dev(source)
    page = _page(path)

    done = preprocess(page, PreprocessOptions(), work_dir=tmp_path)

    assert done.path == path and done.to_original == page.to_original
    assert list(tmp_path.iterdir()) == []
    steps = _steps(done)
    assert list(steps) == ["rescale", "denoise", "clahe", "orientation", "deskew"]
    assert not any(record.applied for record in steps.values())
    # "Not needed" is a decision from a measurement, and the measurement is kept.
    assert 0 < steps["rescale"].measurements["char_height"] <= 30
    assert steps["denoise"].measurements["noise_sigma"] < 4
    assert steps["clahe"].measurements["paper_lightness"] >= 150
    assert steps["orientation"].measurements["vertical_share"] < 0.5
    assert abs(steps["deskew"].measurements["angle"]) < 0.8


def test_a_600_dpi_scan_is_read_at_a_smaller_scale(tmp_path, engine):
    # A receipt scanned at 600 dpi (eval-dev tune half), as ingest gives it: characters about
    # 32 px tall, thermal print in thin dotted strokes.
    (page,) = ingest(eval_dev("receipts/sroie_459.jpg"), tmp_path, IngestOptions()).pages

    before = " ".join(line.text for line in recognize(page, engine).lines)
    done = preprocess(page, PreprocessOptions(), work_dir=tmp_path)
    result = recognize(done, engine)
    after = " ".join(line.text for line in result.lines)

    rescale = _steps(done)["rescale"]
    assert rescale.applied, rescale.detail
    assert rescale.measurements["char_height"] > 30
    assert done.width == pytest.approx(page.width * rescale.measurements["scale"], abs=1)
    for value in ("13 May 2018", "Tampoi", "$8.70"):
        assert value in after and value not in before
    # Boxes come back in the scan's own pixels (4961 x 7016), where the name is at about y 1650.
    company = next(line for line in result.lines if "UNIHAKKA" in line.text)
    assert 1500 < min(y for _, y in company.box) < max(y for _, y in company.box) < 1850


def _underexposed(image: np.ndarray) -> np.ndarray:
    """The photo as a camera would take it with a third of the light."""
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)
    lab[:, :, 0] = (lab[:, :, 0].astype(np.float32) * 0.35).astype(np.uint8)
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


def test_a_dark_photo_gets_clahe_with_contrast_before_and_after(tmp_path):
    photo = cv2.imread(str(eval_dev("photos/wildreceipt_dark_e4a3117f4d44.jpeg")))
    page = _save(_underexposed(photo), tmp_path / "dark.png")

    done = preprocess(page, PreprocessOptions(), work_dir=tmp_path)

    clahe = _steps(done)["clahe"]
    assert clahe.applied, clahe.detail
    m = clahe.measurements
    assert m["paper_lightness"] < 150
    assert m["paper_lightness_after"] > m["paper_lightness"]
    assert m["ink_contrast_after"] > m["ink_contrast"]
    assert "contrast" in clahe.detail


def test_a_noisy_scan_is_denoised_and_the_noise_recorded(tmp_path):
    scan = cv2.imread(str(eval_dev("receipts/sroie_020.jpg")))
    rng = np.random.default_rng(7)
    noisy = scan.copy()
    where = rng.random(scan.shape[:2])
    noisy[where < 0.005] = 0
    noisy[where > 0.995] = 255
    page = _save(noisy, tmp_path / "noisy.png")

    denoise = _steps(preprocess(page, PreprocessOptions(), work_dir=tmp_path))["denoise"]

    assert denoise.applied, denoise.detail
    assert denoise.measurements["impulse_share"] > 0.004
    assert denoise.measurements["impulse_share_after"] < 0.1 * denoise.measurements["impulse_share"]
    switched_off = _steps(preprocess(page, PreprocessOptions(denoise=False), work_dir=tmp_path))["denoise"]
    assert not switched_off.applied


@pytest.mark.parametrize("method", ["median", "nlmeans"])
def test_sensor_noise_is_measured_and_filtered_by_the_chosen_method(tmp_path, method):
    scan = cv2.imread(str(eval_dev("receipts/sroie_020.jpg")))
    grain = np.random.default_rng(7).normal(0, 10, scan.shape[:2])[..., None]
    page = _save(np.clip(scan + grain, 0, 255).astype(np.uint8), tmp_path / "grainy.png")

    denoise = _steps(preprocess(page, PreprocessOptions(denoise_method=method), work_dir=tmp_path))["denoise"]

    assert denoise.applied, denoise.detail
    assert denoise.detail.startswith(method)
    # Paper at 255 clips half the grain, so the estimate reads below the added 10.
    assert denoise.measurements["noise_sigma"] > 4
    assert denoise.measurements["noise_sigma_after"] < 0.5 * denoise.measurements["noise_sigma"]


def test_every_step_can_be_switched_off(tmp_path):
    dark_skewed = _underexposed(cv2.imread(str(eval_dev("photos/wildreceipt_skew_03dd7bee9110.jpeg"))))
    page = _save(cv2.rotate(dark_skewed, cv2.ROTATE_90_CLOCKWISE), tmp_path / "input.png")
    everything = _steps(preprocess(page, PreprocessOptions(), work_dir=tmp_path / "on"))
    assert all(everything[step].applied for step in ("clahe", "orientation", "deskew"))

    for step in ("rescale", "clahe", "orientation", "deskew"):
        without = _steps(preprocess(page, PreprocessOptions(**{step: False}), work_dir=tmp_path / step))
        assert not without[step].applied
        assert without[step].detail == "switched off in the options"

    nothing = preprocess(page, ALL_OFF, work_dir=tmp_path / "off")
    assert nothing.path == page.path
    assert all(record.detail == "switched off in the options" for record in nothing.steps)


def test_the_recorded_transform_maps_output_pixels_back_to_the_input(tmp_path):
    upright = cv2.imread(str(eval_dev("receipts/sroie_041.jpg")))
    turned = cv2.rotate(_rotate(upright, 4.0), cv2.ROTATE_90_COUNTERCLOCKWISE)
    page = _save(turned, tmp_path / "input.png")

    done = preprocess(page, PreprocessOptions(), work_dir=tmp_path)

    assert [r.step for r in done.steps if r.applied] == ["orientation", "deskew"]
    output = cv2.cvtColor(cv2.imread(str(done.path)), cv2.COLOR_BGR2GRAY)
    source = cv2.cvtColor(turned, cv2.COLOR_BGR2GRAY)

    def resampled(affine: list[list[float]]) -> np.ndarray:
        # Each output pixel fetched from the input at to_original(x, y).
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        return cv2.warpAffine(source, np.array(affine), output.shape[::-1], flags=flags, borderValue=255)

    error = np.abs(resampled(done.to_original).astype(np.int16) - output).mean()
    wrong = np.abs(resampled([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).astype(np.int16) - output).mean()
    assert error < 1.5 < wrong


def test_ocr_reads_a_page_turned_over_after_preprocessing(tmp_path, engine):
    receipt = eval_dev("receipts/sroie_000.jpg")
    page = _save(cv2.rotate(cv2.imread(str(receipt)), cv2.ROTATE_180), tmp_path / "upside_down.png")

    before = " ".join(line.text for line in recognize(page, engine).lines)
    done = preprocess(page, PreprocessOptions(), work_dir=tmp_path)
    result = recognize(done, engine)
    after = " ".join(line.text for line in result.lines)

    for value in ("9.00", "25/12/2018", "SDN BHD"):
        assert value in after and value not in before
    # Boxes come back in the pixels of the page as given, which is upside down: the
    # company name at the top of the receipt sits at the bottom of the input.
    company = next(line for line in result.lines if "SDN BHD" in line.text)
    assert min(y for _, y in company.box) > 0.5 * page.height
    assert all(
        -2 <= x <= page.width + 2 and -2 <= y <= page.height + 2 for line in result.lines for x, y in line.box
    )


def _rendered_table(size: int, margin: int = 2, rows: int = 8) -> np.ndarray:
    """Small, dense, anti-aliased text as a PDF renderer or a screenshot gives it."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    texts = [
        "Condition | Pre Well-Being | Post | Change",
        "TP (handler & dog) | 46.33 ± 7.41 | 48.69 | +2.36",
    ]
    texts = (texts * rows)[:rows]
    width = int(max(font.getlength(text) for text in texts)) + 2 * margin
    image = Image.new("L", (width, len(texts) * size + 2 * margin), 255)
    draw = ImageDraw.Draw(image)
    for i, text in enumerate(texts):
        draw.text((margin, margin + i * size), text, fill=0, font=font)
    return cv2.cvtColor(np.array(image), cv2.COLOR_GRAY2BGR)


@pytest.mark.parametrize("size", [7, 9, 12])
def test_clean_rendered_text_is_not_denoised(tmp_path, size):
    # Thin strokes and dots of small text stand out from their neighbours like specks, and a
    # high-pass responds to every stroke: measured on the text, such a page looked noisy.
    page = _save(_rendered_table(size), tmp_path / "table.png")
    denoise = _steps(preprocess(page, PreprocessOptions(), work_dir=tmp_path))["denoise"]
    assert not denoise.applied, denoise.detail
    assert denoise.measurements["noise_sigma"] < 1
    assert denoise.measurements["impulse_share"] < 0.0005


def test_eval_dev_table_crops_are_not_denoised(tmp_path):
    for name in ("pubtabnet_minival_PMC5451934_004_00.png", "pubtabnet_PMC5402779_004_00.png"):
        page = _page(eval_dev(f"tables/{name}"))
        denoise = _steps(preprocess(page, PreprocessOptions(), work_dir=tmp_path))["denoise"]
        assert not denoise.applied, (name, denoise.detail)


@pytest.mark.parametrize(
    ("name", "was"),
    [
        # yes/no stacked in tight columns: nearest neighbours below, not beside (vertical share 0.76)
        ("pubtabnet_PMC2759935_007_01.png", "turned 270 degrees"),
        # a 264x58 crop: 5 word crops, upside-down probability 0.77
        ("pubtabnet_minival_PMC4969833_016_01.png", "turned 180 degrees"),
    ],
)
def test_upright_table_crops_are_not_turned(tmp_path, name, was):
    orientation = _steps(
        preprocess(_page(eval_dev(f"tables/{name}")), PreprocessOptions(), work_dir=tmp_path)
    )["orientation"]
    assert not orientation.applied, (was, orientation.detail)
    assert orientation.measurements["angle"] == 0


def test_specks_on_rendered_text_are_removed_without_touching_the_strokes(tmp_path):
    clean = _rendered_table(9, margin=40, rows=30)
    noisy = clean.copy()
    where = np.random.default_rng(7).random(clean.shape[:2])
    noisy[where < 0.002] = 0
    noisy[where > 0.998] = 255
    page = _save(noisy, tmp_path / "specks.png")

    done = preprocess(page, PreprocessOptions(deskew=False, orientation=False), work_dir=tmp_path)

    denoise = _steps(done)["denoise"]
    assert denoise.applied and denoise.detail.startswith("speck"), denoise.detail
    assert denoise.measurements["impulse_share_after"] < 0.2 * denoise.measurements["impulse_share"]
    result = cv2.imread(str(done.path))
    changed = np.any(result != noisy, axis=2)
    # Only speck pixels change: under 1% of the page, where a median over it changes far more.
    assert changed.mean() < 0.01
    assert np.any(cv2.medianBlur(noisy, 3) != noisy, axis=2).mean() > 3 * changed.mean()
