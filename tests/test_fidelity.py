"""Held to the vendor documentation in ../shared/reference (read by tests/reference.py).

Limits, region lists, where the pixel bounds go, streaming of long answers, and how a
large page image is sent (the SDK's local-file upload; lossless before lossy).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ocrflow.engines._images import MAX_DATA_URL_CHARS, MAX_FILE_BYTES, UPLOAD_FROM_BYTES, encode_image
from ocrflow.engines.catalog import DOCUMENTED_LIMITS, REGION_MODELS, model_limits, region_warning
from ocrflow.engines.dashscope import DashScopeEngine
from ocrflow.engines.openai_compat import OpenAICompatEngine
from ocrflow.errors import TransientError
from ocrflow.models import OcrTask
from ocrflow.settings import DashScopeOptions, OpenAIOptions
from tests import reference
from tests.conftest import blank_page
from tests.fake_dashscope import COMPAT_PATH, NATIVE_PATH

KEY = "sk-test-fidelity-0123456789"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)


def test_token_limits_are_the_documented_ones():
    documented = reference.qwen_ocr_limits()
    assert set(documented) == set(DOCUMENTED_LIMITS)
    for model, limits in documented.items():
        assert model_limits(model).__dict__ == limits
    assert (
        model_limits("qwen-vl-ocr").max_input
        == DashScopeOptions().max_input_tokens
        == OpenAIOptions().max_input_tokens
    )


def test_region_lists_are_the_documented_ones():
    assert {region: set(models) for region, models in REGION_MODELS.items()} == reference.region_ocr_models()


def test_a_region_that_does_not_list_the_model_warns_before_anything_is_sent(fake_dashscope, caplog):
    with caplog.at_level(logging.WARNING, logger="ocrflow"):
        DashScopeEngine(DashScopeOptions(region="virginia", model="qwen-vl-ocr"))
        OpenAICompatEngine(OpenAIOptions(region="singapore", model="qwen-vl-ocr-latest"))
    messages = [record.getMessage() for record in caplog.records]
    assert any(
        "virginia region does not list model 'qwen-vl-ocr'" in m and "singapore" in m for m in messages
    )
    assert any("singapore region does not list model 'qwen-vl-ocr-latest'" in m for m in messages)
    assert fake_dashscope.requests == []
    assert region_warning("beijing", "qwen-vl-ocr-latest") is None
    assert "no region in the reference lists it" in region_warning("beijing", "qwen3.5-ocr")


def test_pixel_bounds_sit_beside_image_url_as_the_qwen_ocr_page_shows(fake_dashscope, tmp_path):
    """001 (every OpenAI example) puts them beside ``image_url``; 000 inside it. ocrflow follows 001."""
    task_page = reference.text(reference.QWEN_OCR)
    beside = re.compile(r'"image_url": \{"url":[^}]*\},\s*(?:#[^\n]*\n\s*)*"min_pixels"')
    inside = re.compile(r'"image_url": \{\s*"url": "[^"]*",\s*"min_pixels"')
    assert len(beside.findall(task_page)) >= 2 and not inside.search(task_page)
    assert inside.search(reference.text(reference.QWEN_OCR_GUIDE)), "the guide differs, as the docstring says"
    OpenAICompatEngine(OpenAIOptions(base_url=fake_dashscope.compat_url)).recognize(
        blank_page(tmp_path), OcrTask.TEXT_RECOGNITION
    )
    (image,) = [
        part for part in fake_dashscope.requests[0].body["messages"][0]["content"] if "image_url" in part
    ]
    assert {"min_pixels", "max_pixels"} <= set(image) and set(image["image_url"]) == {"url"}


def test_long_answers_are_streamed_and_short_ones_are_not(fake_dashscope, tmp_path):
    engine = OpenAICompatEngine(OpenAIOptions(base_url=fake_dashscope.compat_url))
    result = engine.recognize(blank_page(tmp_path), OcrTask.DOCUMENT_PARSING)
    (request,) = fake_dashscope.requests
    assert request.path == COMPAT_PATH
    assert request.body["stream"] is True and request.body["stream_options"] == {"include_usage": True}
    assert result.text.startswith("\\documentclass{article}") and result.text.endswith("\\end{document}")
    assert result.usage.output_tokens > 0 and result.usage.image_tokens == 19 * 25 + 2
    fake_dashscope.requests.clear()
    engine.recognize(blank_page(tmp_path), OcrTask.TEXT_RECOGNITION)
    assert "stream" not in fake_dashscope.requests[0].body


def test_a_stream_cut_off_is_a_partial_answer_retried_with_its_usage_held(fake_dashscope, tmp_path):
    engine = OpenAICompatEngine(OpenAIOptions(base_url=fake_dashscope.compat_url))
    page = blank_page(tmp_path)
    fake_dashscope.inject("partial")
    with pytest.raises(TransientError) as caught:
        engine.recognize(page, OcrTask.TABLE_PARSING)
    assert caught.value.code == "partial_response"
    retried = engine.recognize(page, OcrTask.TABLE_PARSING)
    assert retried.text.startswith("<table>") and retried.text.endswith("</table>")


def _noise_png(path: Path, side: int) -> Path:
    noise = np.random.default_rng(7).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, compress_level=1)
    return path


def test_a_7_to_10_mb_page_goes_by_the_sdks_file_upload_unchanged(fake_dashscope, tmp_path):
    path = _noise_png(tmp_path / "big.png", 1600)
    size = path.stat().st_size
    assert UPLOAD_FROM_BYTES <= size <= MAX_FILE_BYTES
    engine = DashScopeEngine(DashScopeOptions(base_url=fake_dashscope.native_url))
    result = engine.recognize(path, OcrTask.TEXT_RECOGNITION)
    (request,) = [r for r in fake_dashscope.requests if r.path == NATIVE_PATH]
    (image,) = request.body["input"]["messages"][0]["content"]
    assert image["image"].startswith("oss://")
    assert request.headers["x-dashscope-ossresourceresolve"] == "enable"
    assert fake_dashscope.batch.uploads[image["image"].removeprefix("oss://")] == path.read_bytes()
    assert result.usage.image_tokens == 50 * 50 + 2


def test_text_pages_are_reencoded_losslessly_when_a_lossless_form_fits(tmp_path):
    page = Image.new("L", (4000, 3600), 255)
    draw = ImageDraw.Draw(page)
    for row in range(60, 3500, 40):
        draw.text((50, row), "TOTAL 1,130.00  INVOICE 044031900111  " * 6, fill=0)
    path = tmp_path / "text.bmp"
    page.save(path)  # BMP: 14 MB raw, too big to send as it is
    assert 4 * path.stat().st_size / 3 > MAX_DATA_URL_CHARS
    encoded = encode_image(path)
    assert encoded.data_url.startswith("data:image/png;base64,") and not encoded.lossy
    assert (encoded.width, encoded.height, encoded.scale) == (4000, 3600, 1.0)


def test_noise_that_no_lossless_form_fits_is_sent_as_jpeg_and_says_so(tmp_path):
    path = _noise_png(tmp_path / "noise.png", 2000)
    encoded = encode_image(path)
    assert encoded.data_url.startswith("data:image/jpeg;base64,") and encoded.lossy
