"""Page preprocessing: noise, lighting, orientation and skew, each decided from a measurement.

:func:`preprocess` reads one page image, runs five steps and, if any of them changed
the page, writes the result beside it (or into ``work_dir``) as ``<stem>.pre.png``.
Every step measures the page first and changes it only when the measurement says it
should, so clean scans pass through untouched; its :class:`StepRecord` says what was
measured and what was decided. The steps run in this order:

- ``rescale``: measures the height of the characters and scales a page whose characters
  are far taller than the recognizer reads well (a receipt scanned at 600 dpi: 32-41 px)
  down to about 12 px, averaging pixels (area interpolation). The engine's detector sees
  such a page at a fifth of its size and the recognizer resamples each line from 100 px
  to its 48 without averaging; the thin dotted strokes of thermal print then read as
  other characters (``2C18``, ``$e.70``, ``Jchor``). It runs first, so every later step
  works on the smaller page.
- ``denoise``: estimates Gaussian noise (robust sigma of a Laplacian high-pass) and the
  share of isolated specks, both on blank parts of the page only, never on text; above a
  threshold, grain gets a median or non-local-means filter, specks alone a switching
  median that changes only the speck pixels.
  It runs first because every later measurement, and CLAHE, would amplify the noise.
- ``clahe``: measures the paper brightness and ink contrast of the lightness channel and
  equalises it locally (CLAHE on L of LAB) only when the paper is dark or the text faint.
- ``orientation``: decides 0/90/180/270. Whether text lines run across or down the page
  comes from the nearest-neighbour directions between character-sized blobs (cheap, and
  unambiguous even for a single line); whether they are upside down comes from RapidOCR's
  text-direction classifier run on a few word crops. Rotations are lossless.
- ``deskew``: a projection-profile search over small angles on a binarised, downscaled
  copy; the page is rotated onto an enlarged canvas so no content is cut off. It is left
  alone when the top, middle and bottom of the text disagree on the angle (bent lines).

Orientation and deskew measure one grey analysis copy of the page: its character blobs and
its skew are found once (orientation needs the skew to straighten its word crops) and handed
on, turned with the page where orientation turns it (bench/RESULTS-preprocess.md).

Geometric steps compose into :attr:`PageRef.to_original`, so a point in the output maps
back to the original page exactly.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ocrflow.errors import InputError
from ocrflow.models import PageRef, StepRecord
from ocrflow.settings import PreprocessOptions

if TYPE_CHECKING:
    from collections.abc import Callable

    import onnxruntime

# Analysis runs on a copy whose long side is at most this; text stays legible, and it
# keeps a 35-megapixel scan as cheap to measure as a phone photo.
_ANALYSIS_SIDE = 1600
_GEOMETRY_SIDE = 1600
"""The same for orientation and skew, measured on one grey copy. Smaller copies measure faster
but decide differently: at 1200 px two eval-dev pages, at 1000 px five (bench/RESULTS-preprocess.md)."""

# denoise
_NOISE_SIGMA_MIN = 4.0
"""Estimated Gaussian sigma (grey levels) above which a page is denoised; clean scans measure <= 1."""
_IMPULSE_SHARE_MIN = 0.002
"""Share of blank pixels holding an isolated speck above which a page is denoised. Every
eval-dev page measures <= 0.0008 (clean scans, FUNSD's speckled forms, rendered tables,
small rendered text 7-14 px), 0.3% salt-and-pepper 0.0011-0.0018, 1% about 0.0045."""
_IMPULSE_STEP = 50
"""Grey levels a pixel must stand out from all eight neighbours to count as an impulse."""
_NOISE_SAMPLE_PIXELS = 4_000_000
"""Noise is measured at full resolution, on a grid of tiles covering about this many pixels."""
_NOISE_TILE = 256

# clahe
_PAPER_DARK_MAX = 150.0
"""Paper lightness (L, 0-255) below which the page counts as underexposed."""
_INK_CONTRAST_MIN = 30.0
"""Paper-minus-ink lightness below which text counts as faint. Faded thermal print measures
about 36; CLAHE on it made RapidOCR read worse on eval-dev, so only fainter text is equalised."""
_CLAHE_CLIP = 2.0
_CLAHE_TILES = (8, 8)

# rescale
_CHAR_HEIGHT_MAX = 30.0
"""Median character height (page pixels) above which a page is scaled down. eval-dev's 600 dpi
receipt scans measure 32-41 px; its 200-300 dpi receipts 13-29 px (bench/RESULTS-quality.md)."""
_CHAR_HEIGHT_TARGET = 12.0
"""Character height a scaled page gets: on the tune half's 600 dpi receipts, 8-12 px read
right where 16-18 px still misread (``Joher``, ``S8.70``)."""

# orientation
_MIN_BLOBS = 10
"""Character-sized blobs needed before orientation or skew are measured at all."""
_VERTICAL_SHARE_MIN = 0.5
"""Share of vertical nearest-neighbour links above which text may run down the page (the
classifier must then also be sure of the direction); upright eval-dev pages measure <= 0.32."""
_FLIP_PROBABILITY_MIN = 0.75
"""Median 180-degree probability of the word crops above which the page is upside down."""
_FEW_CROPS = 8
_FLIP_PROBABILITY_MIN_FEW = 0.9
"""The same, from fewer than ``_FEW_CROPS`` crops, whose median is less sure: eval-dev's pages
turned over read 0.907-1.0 from 2-7 crops; an upright 264x58 table crop read 0.766 from 5."""
_CLS_CROPS = 16
_UPSIDE_DOWN_SIDE = 1000
"""Long side of the copy whose word crops the classifier reads (the crops become 48 px high
anyway). On all 167 eval-dev images 1000 px turns the same pages as the 1600 px analysis copy,
probabilities moving by at most 0.1 (none near a threshold), for 20% less CPU in this check;
at 800 px they drift up to 0.37 (bench/RESULTS-overhead.md)."""
_CLS_HEIGHT = 48
_CLS_WIDTH = 192
_CLS_MODEL = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"

# deskew
_SKEW_MIN = 1.2
"""Degrees below which a page is left as it is: RapidOCR reads such pages unharmed, and on
eval-dev the pages rotated by about 1 degree read slightly worse than before."""
_SKEW_BEND_MAX = 1.5
"""Degrees by which the skews of the top, middle and bottom of the text may differ. More
means the lines bend (a curled receipt, a photo taken at a slant): no single rotation
straightens them, and on eval-dev rotating such a photo cost it 10 points of CER."""
_SKEW_MAX = 15.0
_SKEW_COARSE_STEP = 0.5
_SKEW_FINE_STEP = 0.05
_SKEW_PEAK_MIN = 1.1
"""Best profile score over the median of the search: below it the page has no clear lines."""
_SKEW_TEXT_WIDTH_MIN = 200
"""Analysis pixels of text extent needed before an angle is trusted: a short word's
profile peaks at several angles."""
_SKEW_MAX_POINTS = 150_000


@dataclass(frozen=True)
class _Outcome:
    """What one step did.

    The image after it, its record, for a geometric step the 3x3 matrix mapping the new
    image's pixels to the old one's, and what is known of the new image's analysis copy.
    """

    image: np.ndarray
    record: StepRecord
    new_to_old: np.ndarray | None = None
    analysis: _Analysis | None = None


class _Analysis:
    """A page's grey analysis copy and what has been measured on it, so no step measures twice.

    Orientation and deskew both need the character blobs and the skew of the same copy;
    orientation passes on what it measured (turned with the page, where it turned it).
    """

    def __init__(self, gray: np.ndarray, skew: tuple[float, float] | None = None) -> None:
        self.gray = gray
        self._blobs: _Blobs | None = None
        self._skew = skew

    @classmethod
    def of(cls, image: np.ndarray) -> _Analysis:
        return cls(_downscale(_gray(image), _GEOMETRY_SIDE))

    @property
    def blobs(self) -> _Blobs:
        if self._blobs is None:
            self._blobs = _text_blobs(self.gray)
        return self._blobs

    @property
    def skew(self) -> tuple[float, float]:
        if self._skew is None:
            self._skew = measure_skew(self.gray, self.blobs)
        return self._skew

    def turned(self, rotation: int) -> _Analysis:
        """The analysis of the page turned by a ``cv2.ROTATE_*`` code.

        A line keeps its slope when the page turns 180 degrees, so the skew carries over.
        """
        skew = self._skew if rotation == cv2.ROTATE_180 else None
        return _Analysis(cv2.rotate(self.gray, rotation), skew)


def preprocess(page: PageRef, options: PreprocessOptions, work_dir: Path | None = None) -> PageRef:
    """Run the preprocessing steps on one page and return a reference to the result.

    If no step changes the page, the input reference comes back with the step records
    appended and no file is written.
    """
    image = _read(page.path)
    to_original = np.vstack([np.asarray(page.to_original, dtype=np.float64), [0.0, 0.0, 1.0]])
    records: list[StepRecord] = []
    analysis: _Analysis | None = None
    for name, step in _STEPS:
        if not getattr(options, name):
            records.append(StepRecord(step=name, applied=False, detail="switched off in the options"))
            continue
        outcome = step(image, options, analysis)
        records.append(outcome.record)
        # What was measured on the page stays valid while no step changes it.
        analysis = outcome.analysis
        if outcome.record.applied:
            image = outcome.image
            if outcome.new_to_old is not None:
                to_original = to_original @ outcome.new_to_old
    steps = page.steps + tuple(records)
    if not any(record.applied for record in records):
        return page.model_copy(update={"steps": steps})
    path = prepared_path(page, work_dir)
    sha256 = _write_png(image, path)
    return PageRef(
        document_id=page.document_id,
        page_number=page.page_number,
        path=path,
        sha256=sha256,
        width=image.shape[1],
        height=image.shape[0],
        to_original=[[float(v) for v in row] for row in to_original[:2]],
        steps=steps,
    )


def prepared_path(page: PageRef, work_dir: Path | None = None) -> Path:
    """Where :func:`preprocess` writes a page it changes (an unchanged page keeps its own path)."""
    return (work_dir or page.path.parent) / f"{page.path.stem}.pre.png"


def _read(path: Path) -> np.ndarray:
    # IMREAD_COLOR applies the EXIF orientation, as ingest and RapidOCR do when they decode.
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"page image {path} cannot be read", code="unreadable_page_image")
    return image


def _write_png(image: np.ndarray, path: Path) -> str:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise InputError(f"cannot encode the preprocessed page {path}", code="unwritable_page_image")
    data = encoded.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a retried task never sees half a file under the final name.
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)
    return hashlib.sha256(data).hexdigest()


# --- denoise -------------------------------------------------------------------------

_LAPLACIAN = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
"""Immerkaer's noise kernel: it cancels flat areas and linear ramps; its L2 norm is 6."""
_RING = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.uint8)
_EDGE_SLOPE = 8.0
"""Grey levels per pixel of the smoothed page above which a pixel is on an edge (text, rules).
Sigma-10 grain smoothed slopes about 2; a printed stroke, smoothed, 30 and more."""
_FLAT_PIXELS_MIN = 500
"""Flat pixels needed to estimate the grain at all; a page all text and edges has none to show."""
_INK_CLEARANCE = 9
"""Side of the square around a speck that must hold no ink for it to count as noise."""


def measure_noise(gray: np.ndarray) -> tuple[float, float]:
    """Return (Gaussian sigma estimate, share of impulse pixels) of a greyscale image.

    Both are measured where the page is blank, never on text: on clean rendered text
    (small, anti-aliased, densely set) the high-pass responds to every stroke and thin
    strokes and dots stand out from their neighbours like specks, so measured anywhere
    such a page looked noisy and the median filter then erased its text.

    - sigma: the median absolute high-pass response over flat pixels (away from any edge
      of the lightly smoothed page), scaled to a standard deviation; 0 when the page has
      too few flat pixels to tell.
    - impulse share: pixels that stand out from all eight neighbours with no ink anywhere
      around them (specks on blank paper, or light specks on a dark ground), as a share of
      such blank pixels. Salt-and-pepper noise puts specks everywhere; clean text has none
      away from its strokes.
    """
    tiles = _noise_tiles(gray)
    flat_responses = []
    for tile in tiles:
        image = tile.astype(np.float32)
        response = np.abs(cv2.filter2D(image, -1, _LAPLACIAN, borderType=cv2.BORDER_REFLECT))
        flat_responses.append(response[_flat(image)])
    flat = np.concatenate(flat_responses)
    sigma = 1.4826 * float(np.median(flat)) / 6.0 if flat.size >= _FLAT_PIXELS_MIN else 0.0
    shares = []
    for invert in (False, True):  # dark specks on paper, light specks on a dark ground
        counts = [_isolated_specks(255 - tile if invert else tile) for tile in tiles]
        shares.append(sum(found for found, _ in counts) / max(sum(room for _, room in counts), 1))
    return sigma, max(shares)


def _flat(image: np.ndarray) -> np.ndarray:
    smooth = cv2.GaussianBlur(image, (5, 5), 1.0)
    slope = np.hypot(
        cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    )
    edges = (slope > 8 * _EDGE_SLOPE).astype(np.uint8)  # a 3x3 Sobel weighs a slope by 8
    return ~cv2.dilate(edges, np.ones((5, 5), np.uint8)).astype(bool)


def _impulses(gray: np.ndarray) -> np.ndarray:
    """Pixels darker than all eight neighbours by more than ``_IMPULSE_STEP``."""
    return gray.astype(np.int16) < cv2.erode(gray, _RING).astype(np.int16) - _IMPULSE_STEP


def _speck_mask(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dark impulses with no ink around them, pixels with no ink around them), as masks."""
    impulses = _impulses(gray)
    lighter_around = cv2.dilate(gray, np.ones((5, 5), np.uint8)).astype(np.int16) - _IMPULSE_STEP
    ink = ((gray.astype(np.int16) < lighter_around) & ~impulses).astype(np.uint8)
    clear = ~cv2.dilate(ink, np.ones((_INK_CLEARANCE, _INK_CLEARANCE), np.uint8)).astype(bool)
    return impulses & clear, clear


def _isolated_specks(gray: np.ndarray) -> tuple[int, int]:
    """(dark impulses with no ink around them, pixels with no ink around them)."""
    specks, clear = _speck_mask(gray)
    return int(np.count_nonzero(specks)), int(np.count_nonzero(clear))


def _noise_tiles(gray: np.ndarray) -> list[np.ndarray]:
    # Downscaling would average the noise away, so a large page is sampled by a regular
    # grid of full-resolution tiles instead: a 35-megapixel scan then costs as much as a photo.
    if gray.size <= _NOISE_SAMPLE_PIXELS:
        return [gray]
    stride = round(_NOISE_TILE * np.sqrt(gray.size / _NOISE_SAMPLE_PIXELS))
    height, width = gray.shape
    return [
        gray[y : y + _NOISE_TILE, x : x + _NOISE_TILE]
        for y in range(0, height - _NOISE_TILE // 2, stride)
        for x in range(0, width - _NOISE_TILE // 2, stride)
    ]


def _remove_specks(image: np.ndarray) -> np.ndarray:
    """Replace only the isolated specks (as measured) by the 3x3 median.

    A switching median: every other pixel keeps its value, so strokes one or two pixels
    wide, and the dots of small text (a decimal point), survive where a median over the
    whole page, or over every pixel unlike its neighbours, would thin or erase them.
    """
    gray = _gray(image)
    specks = _speck_mask(gray)[0] | _speck_mask(255 - gray)[0]
    result = image.copy()
    result[specks] = cv2.medianBlur(image, 3)[specks]
    return result


def _denoise(image: np.ndarray, options: PreprocessOptions, analysis: _Analysis | None) -> _Outcome:
    sigma, impulses = measure_noise(_gray(image))
    measurements = {"noise_sigma": round(sigma, 3), "impulse_share": round(impulses, 6)}
    if sigma < _NOISE_SIGMA_MIN and impulses < _IMPULSE_SHARE_MIN:
        detail = f"noise sigma {sigma:.1f} and impulse share {impulses:.4f} are below the thresholds"
        return _Outcome(
            image,
            StepRecord(step="denoise", applied=False, detail=detail, measurements=measurements),
            analysis=analysis,
        )
    if sigma < _NOISE_SIGMA_MIN:
        method = "speck"
        result = _remove_specks(image)
    elif options.denoise_method == "median":
        method = "median"
        result = cv2.medianBlur(image, 3)
    else:
        method = "nlmeans"
        # h a little above sigma removes the grain but keeps strokes.
        strength = float(np.clip(1.2 * sigma, 3.0, 20.0))
        result = cv2.fastNlMeansDenoisingColored(image, None, strength, strength, 7, 21)
    after_sigma, after_impulses = measure_noise(_gray(result))
    measurements |= {
        "noise_sigma_after": round(after_sigma, 3),
        "impulse_share_after": round(after_impulses, 6),
    }
    detail = f"{method} filter: noise sigma {sigma:.1f}, impulse share {impulses:.4f}"
    return _Outcome(
        result, StepRecord(step="denoise", applied=True, detail=detail, measurements=measurements)
    )


# --- clahe ---------------------------------------------------------------------------


def measure_lighting(image: np.ndarray) -> tuple[float, float]:
    """Return (paper lightness, ink contrast) of the LAB lightness channel.

    Paper is the 90th percentile of L where text is (character-sized blobs and their
    surroundings); ink contrast is paper minus the 5th percentile there. Measuring only
    around the text ignores dark tables behind a photographed receipt.
    """
    lightness = cv2.cvtColor(_downscale(image), cv2.COLOR_BGR2LAB)[:, :, 0]
    blobs = _text_blobs(lightness)
    if blobs.height:
        size = int(2 * blobs.height) | 1
        near_text = cv2.dilate(blobs.mask, cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))) > 0
        values = lightness[near_text] if np.count_nonzero(near_text) > 100 else lightness.ravel()
    else:
        values = lightness.ravel()
    ink, paper = np.percentile(values, [5, 90])
    return float(paper), float(paper - ink)


def _clahe(image: np.ndarray, options: PreprocessOptions, analysis: _Analysis | None) -> _Outcome:
    paper, contrast = measure_lighting(image)
    measurements = {"paper_lightness": round(paper, 1), "ink_contrast": round(contrast, 1)}
    if paper >= _PAPER_DARK_MAX and contrast >= _INK_CONTRAST_MIN:
        detail = f"paper lightness {paper:.0f} and ink contrast {contrast:.0f} need no correction"
        return _Outcome(
            image,
            StepRecord(step="clahe", applied=False, detail=detail, measurements=measurements),
            analysis=analysis,
        )
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)
    clahe = cv2.createCLAHE(clipLimit=_CLAHE_CLIP, tileGridSize=_CLAHE_TILES)
    lab[:, :, 0] = clahe.apply(lab[:, :, 0])
    result = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    paper_after, contrast_after = measure_lighting(result)
    measurements |= {
        "paper_lightness_after": round(paper_after, 1),
        "ink_contrast_after": round(contrast_after, 1),
    }
    why = "dark paper" if paper < _PAPER_DARK_MAX else "faint text"
    detail = (
        f"{why}: ink contrast {contrast:.0f} -> {contrast_after:.0f}, paper {paper:.0f} -> {paper_after:.0f}"
    )
    return _Outcome(result, StepRecord(step="clahe", applied=True, detail=detail, measurements=measurements))


# --- rescale -------------------------------------------------------------------------


def measure_char_height(image: np.ndarray, analysis: _Analysis) -> float:
    """Median height of the character-sized blobs, in the page's pixels (0 without enough of them)."""
    blobs = analysis.blobs
    if len(blobs.centroids) < _MIN_BLOBS:
        return 0.0
    return blobs.height * max(image.shape[:2]) / max(analysis.gray.shape[:2])


def _rescale(image: np.ndarray, options: PreprocessOptions, analysis: _Analysis | None) -> _Outcome:
    analysis = analysis or _Analysis.of(image)
    height = measure_char_height(image, analysis)
    measurements = {"char_height": round(height, 1)}
    if height <= _CHAR_HEIGHT_MAX:
        detail = f"characters {height:.0f} px tall: read as they are"
        record = StepRecord(step="rescale", applied=False, detail=detail, measurements=measurements)
        return _Outcome(image, record, analysis=analysis)
    scale = _CHAR_HEIGHT_TARGET / height
    smaller = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    measurements["scale"] = round(scale, 4)
    detail = (
        f"characters {height:.0f} px tall: scaled to {smaller.shape[1]}x{smaller.shape[0]} "
        f"(x{scale:.2f}) for characters of about {_CHAR_HEIGHT_TARGET:.0f} px"
    )
    record = StepRecord(step="rescale", applied=True, detail=detail, measurements=measurements)
    # As ingest scales: a plain ratio per axis (the sides are rounded to whole pixels).
    new_to_old = np.diag([image.shape[1] / smaller.shape[1], image.shape[0] / smaller.shape[0], 1.0])
    return _Outcome(smaller, record, new_to_old)


# --- orientation ---------------------------------------------------------------------


def measure_vertical_share(gray: np.ndarray, blobs: _Blobs | None = None) -> tuple[float, int]:
    """Return (share of vertical nearest-neighbour links, number of blobs) of an analysis image.

    A character's nearest neighbour sits beside it on the same line, so on an upright
    page almost all links are horizontal; on a sideways page they are vertical.
    """
    centroids = (blobs or _text_blobs(gray)).centroids
    if len(centroids) < _MIN_BLOBS:
        return 0.0, len(centroids)
    nearest = np.empty(len(centroids), dtype=np.int64)
    for start in range(0, len(centroids), 512):  # chunks keep the distance matrix small
        chunk = centroids[start : start + 512]
        distances = ((chunk[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=-1)
        distances[np.arange(len(chunk)), np.arange(start, start + len(chunk))] = np.inf
        nearest[start : start + len(chunk)] = distances.argmin(axis=1)
    links = np.abs(centroids[nearest] - centroids)
    angles = np.degrees(np.arctan2(links[:, 1], links[:, 0]))
    horizontal, vertical = np.count_nonzero(angles < 30), np.count_nonzero(angles > 60)
    return vertical / max(horizontal + vertical, 1), len(centroids)


def measure_upside_down(gray: np.ndarray, skew: float) -> tuple[float, int]:
    """Return (median probability that the text is upside down, number of word crops).

    ``gray`` is an analysis image whose lines run across; ``skew`` is straightened out
    of the crops first, since the classifier was trained on level text.
    """
    if abs(skew) >= _SKEW_FINE_STEP:
        gray, _ = _rotate_expanded(gray, -skew, 255)
    blobs = _text_blobs(gray)
    if not blobs.height:
        return 0.0, 0
    crops = [gray[y0:y1, x0:x1] for x0, y0, x1, y1 in _word_boxes(blobs)]
    if not crops:
        return 0.0, 0
    session = _angle_classifier()
    batch = np.stack([_classifier_input(crop) for crop in crops])
    probabilities = session.run(None, {session.get_inputs()[0].name: batch})[0]
    # The median ignores the odd crop of a logo or a rule that the classifier cannot read.
    return float(np.median(probabilities[:, 1])), len(crops)


def _word_boxes(blobs: _Blobs) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1) of up to ``_CLS_CROPS`` words, largest first.

    Characters are joined across gaps up to 0.8 of their height. A group made of short
    blobs (dashes, dotted rules) is not a word; a long one is cut into pieces about as
    wide as the classifier's 4:1 input, so its letters are not squeezed flat.
    """
    height = blobs.height
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (max(3, round(0.8 * height)), 1))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        cv2.morphologyEx(blobs.mask, cv2.MORPH_CLOSE, kernel)
    )
    ink = blobs.mask > 0
    words = labels[ink]
    member_height = np.bincount(words, weights=blobs.heights[blobs.labels[ink]], minlength=count)
    member_height /= np.maximum(np.bincount(words, minlength=count), 1)
    boxes = []
    for word in range(1, count):
        x, y, w, h = stats[word, :4]
        if not (0.6 * height <= h <= 2.5 * height and w >= 2 * h and member_height[word] >= 0.6 * height):
            continue
        pad, piece = round(0.2 * h), 5 * h
        for start in range(x, x + min(w, 3 * piece), piece):
            end = min(start + piece, x + w)
            if end - start >= 2 * h:
                boxes.append((max(0, start - pad), max(0, y - pad), end + pad, y + h + pad))
    boxes.sort(key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
    return boxes[:_CLS_CROPS]


def _classifier_input(crop: np.ndarray) -> np.ndarray:
    # The same resizing and normalisation as rapidocr's TextClassifier: height 48, width at
    # most 192 (longer crops are squeezed), right-padded with zeros, values in [-1, 1].
    width = min(_CLS_WIDTH, int(np.ceil(_CLS_HEIGHT * crop.shape[1] / crop.shape[0])))
    resized = cv2.resize(crop, (width, _CLS_HEIGHT), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    tensor = np.zeros((3, _CLS_HEIGHT, _CLS_WIDTH), dtype=np.float32)
    tensor[:, :, :width] = resized / 127.5 - 1.0
    return tensor


@lru_cache(maxsize=1)
def _angle_classifier() -> onnxruntime.InferenceSession:
    import onnxruntime
    import rapidocr

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # a batch of 16 small crops; more threads only contend
    model = Path(rapidocr.__file__).parent / "models" / _CLS_MODEL
    return onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


_ROTATIONS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def _orientation(image: np.ndarray, options: PreprocessOptions, analysis: _Analysis | None) -> _Outcome:
    analysis = analysis or _Analysis.of(image)
    vertical_share, blobs = measure_vertical_share(analysis.gray, analysis.blobs)
    measurements = {"vertical_share": round(vertical_share, 3), "blobs": float(blobs)}
    if blobs < _MIN_BLOBS:
        detail = f"only {blobs} character-sized blobs: too little text to judge"
        record = StepRecord(step="orientation", applied=False, detail=detail, measurements=measurements)
        return _Outcome(image, record, analysis=analysis)
    sideways = vertical_share >= _VERTICAL_SHARE_MIN
    across = analysis.turned(cv2.ROTATE_90_CLOCKWISE) if sideways else analysis
    if sideways and _lines_only_across(analysis, across):
        # Short words stacked in tight columns (a table of yes/no, of digits) link vertically,
        # but a page this low cannot hold the lines of text running down it.
        sideways, across = False, analysis
        measurements["lines_across_only"] = 1.0
    skew, _ = across.skew
    flipped, crops = measure_upside_down(_downscale(across.gray, _UPSIDE_DOWN_SIDE), skew)
    measurements |= {"upside_down_probability": round(flipped, 3), "crops": float(crops)}
    sure = _FLIP_PROBABILITY_MIN if crops >= _FEW_CROPS else _FLIP_PROBABILITY_MIN_FEW
    confident = flipped >= sure or flipped <= 1.0 - sure
    if sideways and not confident:
        angle = 0
        detail = f"text runs down the page (vertical share {vertical_share:.2f}) but its direction is unclear"
    elif sideways:
        angle = 270 if flipped >= sure else 90
        detail = f"text runs down the page (vertical share {vertical_share:.2f})"
    else:
        angle = 180 if flipped >= sure else 0
        detail = f"text runs across the page (vertical share {vertical_share:.2f})"
    measurements["angle"] = float(angle)
    if not angle:
        record = StepRecord(step="orientation", applied=False, detail=detail, measurements=measurements)
        return _Outcome(image, record, analysis=analysis)
    detail += f"; turned {angle} degrees clockwise (upside-down probability {flipped:.2f})"
    record = StepRecord(step="orientation", applied=True, detail=detail, measurements=measurements)
    # The turned page's analysis copy is the one its skew was measured on, turned 0 or 180 degrees.
    turned = across if angle == 90 else across.turned(cv2.ROTATE_180)
    return _Outcome(
        cv2.rotate(image, _ROTATIONS[angle]), record, _rotation_new_to_old(angle, image.shape), turned
    )


def _lines_only_across(analysis: _Analysis, across: _Analysis) -> bool:
    """Whether the page shows clear text lines as it is and none could run down it.

    Turned, a page whose text ran down it would show lines across; a page too low for any
    (its text spans under ``_SKEW_TEXT_WIDTH_MIN`` px turned) with clear rows as it is, is upright.
    """
    return across.skew[1] == 0.0 and analysis.skew[1] >= _SKEW_PEAK_MIN


def _rotation_new_to_old(angle: int, shape: tuple[int, ...]) -> np.ndarray:
    """Map pixel indices of the image turned ``angle`` degrees clockwise back to the original."""
    height, width = shape[:2]
    matrix = {
        90: [[0, 1, 0], [-1, 0, height - 1]],
        180: [[-1, 0, width - 1], [0, -1, height - 1]],
        270: [[0, -1, width - 1], [1, 0, 0]],
    }[angle]
    return np.array([*matrix, [0, 0, 1]], dtype=np.float64)


# --- deskew --------------------------------------------------------------------------


def measure_skew(gray: np.ndarray, blobs: _Blobs | None = None) -> tuple[float, float]:
    """Return (skew in degrees, counter-clockwise positive; peak ratio) of an analysis image.

    The angle maximises the sum of squares of the ink's projection profile (lines then
    fall into few rows); the peak ratio, best score over the median one, says how clear
    the answer is. Pages with too little text return (0.0, 0.0). ``blobs`` are
    ``gray``'s, if already found.
    """
    ys, xs = np.nonzero((blobs or _text_blobs(gray)).mask)
    if len(xs) == 0 or np.subtract(*np.percentile(xs, [99, 1])) < _SKEW_TEXT_WIDTH_MIN:
        return 0.0, 0.0
    if len(xs) > _SKEW_MAX_POINTS:
        keep = np.random.default_rng(0).choice(len(xs), _SKEW_MAX_POINTS, replace=False)
        ys, xs = ys[keep], xs[keep]
    ys, xs = ys.astype(np.float64), xs.astype(np.float64)

    def score(angle: float) -> float:
        theta = np.radians(angle)
        rows = ys * np.cos(theta) + xs * np.sin(theta)  # constant along a line at this angle
        profile = np.bincount(np.round(rows - rows.min()).astype(np.int64)).astype(np.float64)
        return float(profile @ profile)

    coarse = np.arange(-_SKEW_MAX, _SKEW_MAX + 1e-9, _SKEW_COARSE_STEP)
    coarse_scores = np.array([score(a) for a in coarse])
    best = coarse[coarse_scores.argmax()]
    fine = np.arange(best - _SKEW_COARSE_STEP, best + _SKEW_COARSE_STEP + 1e-9, _SKEW_FINE_STEP)
    fine_scores = np.array([score(a) for a in fine])
    return float(fine[fine_scores.argmax()]), float(fine_scores.max() / np.median(coarse_scores))


def _deskew(image: np.ndarray, options: PreprocessOptions, analysis: _Analysis | None) -> _Outcome:
    analysis = analysis or _Analysis.of(image)
    skew, peak = analysis.skew
    measurements = {"angle": round(skew, 2), "peak_ratio": round(peak, 3)}
    if peak < _SKEW_PEAK_MIN:
        detail = "no clear text lines to measure the skew on"
    elif abs(skew) < _SKEW_MIN:
        detail = f"skew {skew:.2f} degrees is below {_SKEW_MIN}"
    elif abs(skew) > _SKEW_MAX - _SKEW_COARSE_STEP:
        detail = f"skew {skew:.2f} degrees is at the edge of the search: not a small skew"
    else:
        bands = measure_band_skews(analysis.gray, analysis.blobs)
        spread = max(bands) - min(bands) if len(bands) >= 2 else 0.0
        measurements["band_spread"] = round(spread, 2)
        if spread > _SKEW_BEND_MAX:
            detail = (
                f"skew {skew:.2f} degrees, but the lines bend: their parts differ by {spread:.1f} degrees"
            )
        else:
            result, new_to_old = _rotate_expanded(image, -skew, _border_colour(image))
            canvas = f"{result.shape[1]}x{result.shape[0]}"
            detail = f"rotated {-skew:.2f} degrees (counter-clockwise positive) onto a {canvas} canvas"
            record = StepRecord(step="deskew", applied=True, detail=detail, measurements=measurements)
            return _Outcome(result, record, new_to_old)
    return _Outcome(image, StepRecord(step="deskew", applied=False, detail=detail, measurements=measurements))


def measure_band_skews(gray: np.ndarray, blobs: _Blobs | None = None) -> list[float]:
    """Return the skew of the top, middle and bottom third of the text, where each has enough to measure."""
    rows = np.nonzero((blobs or _text_blobs(gray)).mask)[0]
    if len(rows) == 0:
        return []
    cuts = np.linspace(*np.percentile(rows, [2, 98]), 4).astype(int)
    bands = [measure_skew(gray[top:bottom]) for top, bottom in zip(cuts[:-1], cuts[1:], strict=True)]
    return [angle for angle, peak in bands if peak >= _SKEW_PEAK_MIN]


def _rotate_expanded(
    image: np.ndarray, angle: float, fill: float | tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate ``angle`` degrees counter-clockwise onto a canvas that holds all of the image.

    Returns the rotated image and the 3x3 matrix mapping its pixels back to the input's.
    """
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_width, new_height = int(np.ceil(width * cos + height * sin)), int(np.ceil(width * sin + height * cos))
    matrix[0, 2] += (new_width - width) / 2
    matrix[1, 2] += (new_height - height) / 2
    rotated = cv2.warpAffine(
        image,
        matrix,
        (new_width, new_height),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill,
    )
    return rotated, np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))


def _border_colour(image: np.ndarray) -> tuple[float, ...]:
    # The new corners get the page's own edge colour: white on a scan, the table on a photo.
    edge = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return tuple(float(v) for v in np.median(edge, axis=0))


# --- shared helpers ------------------------------------------------------------------


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def _downscale(image: np.ndarray, side: int = _ANALYSIS_SIDE) -> np.ndarray:
    scale = side / max(image.shape[:2])
    if scale >= 1.0:
        return image
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class _Blobs:
    """The character-sized dark blobs of an analysis image."""

    mask: np.ndarray
    labels: np.ndarray
    """Connected-component labels of the ink, before the size filter."""
    heights: np.ndarray
    """Height of each label."""
    centroids: np.ndarray
    """Centroids of the kept blobs only."""
    height: float
    """Median blob height, 0 when there is no ink."""


def _text_blobs(gray: np.ndarray) -> _Blobs:
    """Find the character-sized dark blobs of an analysis image.

    Rules, pictures and the edges of a dark background are far larger than a character and
    specks far smaller, so a size window around the median height keeps mostly characters.
    """
    ink = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 31, 15)
    _, labels, stats, centroids = cv2.connectedComponentsWithStats(ink, connectivity=8)
    widths, heights, areas = (
        stats[:, cv2.CC_STAT_WIDTH],
        stats[:, cv2.CC_STAT_HEIGHT],
        stats[:, cv2.CC_STAT_AREA],
    )
    candidate = areas >= 4
    candidate[0] = False  # the background
    if not candidate.any():
        return _Blobs(np.zeros_like(ink), labels, heights, np.empty((0, 2)), 0.0)
    # Specks of paper grain are many but tiny; they must not set the character height.
    sized = candidate & (heights >= 5)
    height = float(np.median(heights[sized if sized.any() else candidate]))
    keep = candidate & (heights >= 0.3 * height) & (heights <= 3 * height) & (widths <= 3 * height)
    keep &= areas >= 0.05 * height**2
    mask = np.where(keep[labels], 255, 0).astype(np.uint8)
    return _Blobs(mask, labels, heights, centroids[keep], height)


_STEPS: tuple[tuple[str, Callable[[np.ndarray, PreprocessOptions, _Analysis | None], _Outcome]], ...] = (
    ("rescale", _rescale),
    ("denoise", _denoise),
    ("clahe", _clahe),
    ("orientation", _orientation),
    ("deskew", _deskew),
)
