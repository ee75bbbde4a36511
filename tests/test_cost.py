from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import EXAMPLES, eval_dev
from PIL import Image

from ocrflow.admission import TokenBudget
from ocrflow.cost import (
    adaptive_max_pixels,
    estimate,
    estimate_page,
    image_tokens,
    model_family,
    pixel_bounds,
    smart_resize,
    text_height,
    usage_cost,
)
from ocrflow.errors import ConfigurationError, InputError
from ocrflow.ingest import ingest
from ocrflow.models import Usage
from ocrflow.settings import CostOptions, ModelPrice, Settings

OCR_MIN, OCR_MAX = 32 * 32 * 3, 32 * 32 * 8192


# --- smart_resize, by hand from the documented formula ---------------------------------------


@pytest.mark.parametrize(
    ("size", "factor", "bounds", "expected"),
    [
        # 1000/32 = 31.25 -> 31 -> 992; 992*992 is within bounds, so no scaling.
        ((1000, 1000), 32, (OCR_MIN, OCR_MAX), (992, 992)),
        # 1000/28 = 35.71 -> 36 -> 1008.
        ((1000, 1000), 28, (28 * 28 * 4, 28 * 28 * 8192), (1008, 1008)),
        # Python rounds halves to even, as the reference does: 48/32 = 1.5 -> 2, 80/32 = 2.5 -> 2.
        ((48, 80), 32, (OCR_MIN, OCR_MAX), (64, 64)),
        # Over max_pixels: 4000x3008 = 12,032,000 > 1,310,720, beta = sqrt(4000*3000/1310720) = 3.02577;
        # 4000/beta/32 = 41.31 -> 41*32 = 1312, 3000/beta/32 = 30.98 -> 30*32 = 960.
        ((4000, 3000), 32, (OCR_MIN, 32 * 32 * 1280), (1312, 960)),
        # Under min_pixels: 28x28 = 784 < 3136, beta = sqrt(3136/600) = 2.2862;
        # 20*beta/28 = 1.63 -> 2*28 = 56, 30*beta/28 = 2.45 -> 3*28 = 84.
        ((20, 30), 28, (28 * 28 * 4, 28 * 28 * 16384), (56, 84)),
        # A side under factor/2 rounds to 0, and is floored at one factor.
        ((12, 1000), 32, (OCR_MIN, OCR_MAX), (32, 992)),
        # SiliconFlow's worked Qwen2-VL examples (qwen_vl_utils defaults 3136 .. 12,845,056):
        # 224x448 -> 8x16 = 128 tokens; 3172x4096 -> 3136x4060 = 16,240 tokens.
        ((224, 448), 28, (3136, 12_845_056), (224, 448)),
        ((3172, 4096), 28, (3136, 12_845_056), (3136, 4060)),
    ],
)
def test_smart_resize_matches_hand_computation(size, factor, bounds, expected):
    height, width = size
    min_pixels, max_pixels = bounds
    resized = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    assert resized == expected


def test_smart_resize_result_is_within_bounds_and_multiples():
    for height, width in [(37, 1102), (2267, 1334), (5000, 7000), (11, 2000), (997, 13)]:
        for factor, min_pixels, max_pixels in [(32, OCR_MIN, OCR_MAX), (28, 3136, 1_003_520)]:
            h, w = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
            assert h % factor == 0 and w % factor == 0
            assert min_pixels <= h * w <= max_pixels


def test_aspect_ratio_over_200_is_refused():
    # 2000/32 = 62.5 rounds to 62.
    assert smart_resize(10, 2000, factor=32, min_pixels=OCR_MIN, max_pixels=OCR_MAX) == (32, 1984)
    with pytest.raises(InputError) as raised:
        smart_resize(10, 2001, factor=32, min_pixels=OCR_MIN, max_pixels=OCR_MAX)
    assert raised.value.code == "extreme_aspect_ratio"


def test_min_pixels_above_max_pixels_is_a_configuration_error():
    with pytest.raises(ConfigurationError):
        smart_resize(100, 100, factor=32, min_pixels=10_000, max_pixels=5_000)
    with pytest.raises(ConfigurationError):
        pixel_bounds(None, "qwen-vl-ocr", CostOptions(min_pixels=10_000, max_pixels=5_000))


# --- tokens per model ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "factor"),
    [
        ("qwen-vl-ocr", 32),
        ("qwen-vl-ocr-latest", 32),
        ("qwen-vl-ocr-2025-11-20", 32),
        ("qwen-vl-ocr-2025-04-13", 28),
        ("qwen3-vl-plus", 32),
        ("Qwen/Qwen3-VL-8B-Instruct", 32),
        ("qwen3.5-plus", 32),
        ("qwen2.5-vl-72b-instruct", 28),
        ("baidu/Qianfan-OCR", 28),
    ],
)
def test_model_family_picks_pixels_per_token(model, factor):
    assert model_family(model).factor == factor


def test_image_tokens_are_resized_area_per_token_plus_two_markers():
    assert image_tokens(1000, 1000, model="qwen-vl-ocr") == 31 * 31 + 2
    # 36x36 = 1296 tokens is over the default 1280 of 28 px models: beta = sqrt(1e6 / 1,003,520),
    # 1000/beta/28 = 35.78 -> 35 per side.
    assert image_tokens(1000, 1000, model="qwen2.5-vl-72b-instruct") == 35 * 35 + 2
    assert image_tokens(1000, 1000, model="qwen2.5-vl-72b-instruct", max_pixels=28 * 28 * 8192) == 36 * 36 + 2
    assert image_tokens(224, 448, model="qwen2-vl-7b", min_pixels=3136, max_pixels=12_845_056) == 128 + 2
    # qwen-vl-ocr's default ceiling is 8192 tokens of 32x32 pixels.
    assert image_tokens(10_000, 8_000, model="qwen-vl-ocr") <= 8192 + 2
    assert image_tokens(10_000, 8_000, model="qwen-vl-ocr", max_pixels=32 * 32 * 1000) <= 1000 + 2


# --- estimates on the bundled examples ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.png")))
def test_estimate_page_on_examples(name):
    path = EXAMPLES / name
    width, height = Image.open(path).size
    page = estimate_page(path, "qwen-vl-ocr", CostOptions())
    assert page.tokens == image_tokens(height, width, model="qwen-vl-ocr")
    assert page.cost is None  # no price set: unknown, not invented
    assert (page.min_pixels, page.max_pixels) == (OCR_MIN, OCR_MAX)
    prices = {"qwen-vl-ocr": ModelPrice(input=0.07, output=0.16)}
    priced = estimate_page(path, "qwen-vl-ocr", CostOptions(prices=prices))
    assert priced.cost == pytest.approx(page.tokens * 0.07 / 1_000_000)
    assert estimate_page((width, height), "qwen-vl-ocr", CostOptions()) == page


def test_estimate_renders_pdf_pages_like_a_run_and_leaves_nothing_behind(tmp_path: Path):
    settings = Settings(out_dir=tmp_path / "out")
    [document] = estimate([EXAMPLES / "receipt_pages.pdf"], settings, "qwen-vl-ocr")
    pages = ingest(EXAMPLES / "receipt_pages.pdf", tmp_path / "work", settings.ingest).pages
    assert len(document.pages) == len(pages) == 2
    for estimated, page in zip(document.pages, pages, strict=True):
        assert (estimated.width, estimated.height) == (page.width, page.height)
        assert estimated.tokens == image_tokens(page.height, page.width, model="qwen-vl-ocr")
    assert document.tokens == sum(p.tokens for p in document.pages)
    assert document.cost is None
    assert not settings.out_dir.exists()


def test_estimate_walks_folders_and_reports_unusable_files(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("not a document")
    Image.open(EXAMPLES / "receipt_valid.png").save(tmp_path / "receipt.png")
    results = estimate([tmp_path / "notes.txt", tmp_path], Settings(out_dir=tmp_path / "out"), "qwen-vl-ocr")
    by_name = {r.path.name: r for r in results}
    assert by_name["notes.txt"].pages == () and by_name["notes.txt"].reasons[0].code == "not_an_image"
    assert by_name["receipt.png"].tokens > 0


def test_usage_cost_uses_input_and_output_prices():
    options = CostOptions(prices={"qwen-vl-ocr": ModelPrice(input=0.07, output=0.16)})
    usage = Usage(input_tokens=3555, output_tokens=1981, image_tokens=3470)
    assert usage_cost(usage, "qwen-vl-ocr", options) == pytest.approx((3555 * 0.07 + 1981 * 0.16) / 1e6)
    assert usage_cost(usage, "qwen3-vl-plus", options) is None


def test_prices_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("OCRFLOW_COST__PRICES", '{"qwen-vl-ocr": {"input": 0.07, "output": 0.16}}')
    monkeypatch.setenv("OCRFLOW_COST__TOKEN_BUDGET", "50000")
    settings = Settings()
    assert settings.cost.prices["qwen-vl-ocr"].output == 0.16
    assert settings.cost.token_budget == 50_000


# --- adaptive max_pixels ----------------------------------------------------------------------------


def _text_page(path: Path, *, font_scale: float, size: tuple[int, int] = (1600, 1200)) -> float:
    """A white page of printed lines; returns cv2's height of a capital letter at that scale."""
    width, height = size
    page = np.full((height, width), 255, np.uint8)
    thickness = max(1, round(2 * font_scale))
    (_, cap), _ = cv2.getTextSize("H", cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    y = 3 * cap
    while y < height - cap:
        cv2.putText(
            page,
            "INVOICE 2024 TOTAL DUE 1234.56 ACME",
            (40, y),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            0,
            thickness,
            cv2.LINE_AA,
        )
        y += 3 * cap
    cv2.imwrite(str(path), page)
    return cap


@pytest.mark.parametrize("font_scale", [0.8, 1.5, 3.0])
def test_text_height_measures_glyphs(tmp_path: Path, font_scale: float):
    cap = _text_page(tmp_path / "page.png", font_scale=font_scale)
    assert text_height(tmp_path / "page.png") == pytest.approx(cap, rel=0.25)


def test_blank_page_has_no_text_height_and_keeps_the_ceiling(tmp_path: Path):
    Image.new("L", (1200, 1600), 255).save(tmp_path / "blank.png")
    assert text_height(tmp_path / "blank.png") is None
    assert adaptive_max_pixels(tmp_path / "blank.png", "qwen-vl-ocr", CostOptions()) == OCR_MAX


def _resized_text_height(page: Path, max_pixels: int) -> float:
    width, height = Image.open(page).size
    h, w = smart_resize(height, width, factor=32, min_pixels=OCR_MIN, max_pixels=max_pixels)
    return text_height(page) * min(h / height, w / width)


def test_adaptive_budget_shrinks_large_print_but_keeps_it_legible(tmp_path: Path):
    options = CostOptions(max_pixels_mode="adaptive")
    _text_page(tmp_path / "large.png", font_scale=3.0, size=(2400, 3200))
    budget = adaptive_max_pixels(tmp_path / "large.png", "qwen-vl-ocr", options)
    assert budget % (32 * 32) == 0
    assert budget < 2400 * 3200 / 4  # 3x print needs far fewer pixels
    assert _resized_text_height(tmp_path / "large.png", budget) >= options.legible_text_height
    # One token less would make the text too small: the budget is the smallest that works.
    assert _resized_text_height(tmp_path / "large.png", budget - 32 * 32) < options.legible_text_height


def test_adaptive_budget_never_enlarges_small_print(tmp_path: Path):
    _text_page(tmp_path / "small.png", font_scale=0.4)
    options = CostOptions(max_pixels_mode="adaptive")
    width, height = 1600, 1200
    budget = adaptive_max_pixels(tmp_path / "small.png", "qwen-vl-ocr", options)
    assert budget <= OCR_MAX
    assert estimate_page(tmp_path / "small.png", "qwen-vl-ocr", options).tokens == image_tokens(
        height, width, model="qwen-vl-ocr"
    )


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.png")))
def test_adaptive_budget_is_at_most_the_default_on_examples(name):
    path = EXAMPLES / name
    options = CostOptions(max_pixels_mode="adaptive")
    fixed = estimate_page(path, "qwen-vl-ocr", CostOptions())
    adaptive = estimate_page(path, "qwen-vl-ocr", options)
    assert adaptive.max_pixels <= fixed.max_pixels and adaptive.tokens <= fixed.tokens
    assert _resized_text_height(path, adaptive.max_pixels) >= options.legible_text_height
    assert pixel_bounds(path, "qwen-vl-ocr", options) == (OCR_MIN, adaptive.max_pixels)
    assert pixel_bounds(path, "qwen-vl-ocr", CostOptions()) == (OCR_MIN, OCR_MAX)


def test_adaptive_budget_on_a_real_receipt_scan():
    path = eval_dev("receipts/sroie_083.jpg")
    options = CostOptions(max_pixels_mode="adaptive")
    adaptive = estimate_page(path, "qwen-vl-ocr", options)
    assert adaptive.tokens < estimate_page(path, "qwen-vl-ocr", CostOptions()).tokens / 2
    assert _resized_text_height(path, adaptive.max_pixels) >= options.legible_text_height


def test_adaptive_ceiling_follows_a_configured_max_pixels(tmp_path: Path):
    _text_page(tmp_path / "small.png", font_scale=0.4)
    options = CostOptions(max_pixels_mode="adaptive", max_pixels=32 * 32 * 500)
    assert adaptive_max_pixels(tmp_path / "small.png", "qwen-vl-ocr", options) <= 32 * 32 * 500


# --- the token budget ------------------------------------------------------------------------------


def test_a_document_that_does_not_fit_is_passed_over_and_a_smaller_one_still_goes():
    budget = TokenBudget(100)
    assert [budget.reserve(tokens) for tokens in (60, 50, 30, 200)] == [True, False, True, False]
    assert budget.reserved == 90 and budget.remaining == 10


def test_record_replaces_the_reservation_with_actual_usage():
    budget = TokenBudget(1000)
    assert budget.reserve(400)
    budget.record(450, reserved=400)  # the answer's tokens come on top of the estimate
    assert (budget.spent, budget.reserved, budget.remaining) == (450, 0, 550)
    assert budget.reserve(500)
    budget.record(0, reserved=500)  # the document failed before anything was sent
    assert (budget.spent, budget.reserved, budget.remaining) == (450, 0, 550)
    assert not budget.reserve(551)


def test_a_later_run_submits_what_was_pending():
    first = TokenBudget(1000)
    assert first.reserve(700) and not first.reserve(700)
    first.record(710, reserved=700)
    assert TokenBudget(1000).reserve(700), "the next run has its own budget"


def test_no_limit_submits_everything():
    budget = TokenBudget(None)
    assert budget.reserve(10**9) and budget.reserve(10**9) and budget.remaining is None


def test_budget_is_exact_under_concurrent_reservations():
    budget = TokenBudget(5000)
    granted = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        mine = sum(budget.reserve(1) for _ in range(1000))
        for _ in range(mine // 2):
            budget.record(1, reserved=1)
        with lock:
            granted.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 5000
    assert budget.spent + budget.reserved == 5000 and budget.remaining == 0


def test_first_documents_are_reserved_an_upper_bound_then_what_finished_pages_cost():
    budget = TokenBudget(10_000, page_allowance=300)
    assert budget.expected(1000, 2) == 1600, "nothing finished yet: images plus the allowance per page"
    budget.reserve(1600)
    budget.record(1250, reserved=1600, image_tokens=1000, pages=2)  # 125 a page beyond the images
    assert budget.expected(2000, 1) == 2125
    budget.reserve(500)
    budget.record(0, reserved=500)  # sent nothing: says nothing about the rest
    budget.reserve(800)
    budget.record(0, reserved=800, image_tokens=700, pages=1)  # answered from the cache: neither
    assert budget.expected(2000, 1) == 2125
    budget.reserve(900)
    budget.record(1000, reserved=900, image_tokens=800, pages=1)  # a wordier page: the most seen counts
    assert budget.expected(2000, 1) == 2200
    budget.record(850, image_tokens=800, pages=1)
    assert budget.expected(2000, 1) == 2200, "a cheaper page does not lower it"


def test_the_first_allowance_covers_prompt_and_answer():
    """The answer allowance is qwen-vl-ocr's documented output limit, read from the reference."""
    from ocrflow.cost import PROMPT_MARKUP_TOKENS, first_page_allowance
    from ocrflow.doctypes import load_doctypes
    from ocrflow.engines.kie import result_schema
    from ocrflow.engines.prompts import prompt_for
    from ocrflow.models import OcrTask
    from ocrflow.settings import OpenAIOptions
    from tests.reference import qwen_ocr_limits

    max_output = qwen_ocr_limits()["qwen-vl-ocr"]["max_output"]
    assert max_output == 8192
    settings = Settings(engine="dashscope")
    plain = prompt_for(OcrTask.ADVANCED_RECOGNITION, "qwen-ocr")
    assert first_page_allowance(settings, OcrTask.ADVANCED_RECOGNITION) == (
        len(plain) + PROMPT_MARKUP_TOKENS + max_output
    )
    doctype = next(iter(load_doctypes(settings.schema_dir).values()))
    kie = prompt_for(OcrTask.KEY_INFORMATION_EXTRACTION, "qwen-ocr", result_schema=result_schema(doctype))
    assert first_page_allowance(settings, OcrTask.KEY_INFORMATION_EXTRACTION, doctype) == (
        len(kie) + PROMPT_MARKUP_TOKENS + max_output
    )
    capped = Settings(engine="openai", openai=OpenAIOptions(max_tokens=1000, qwen_prompt_language="en"))
    english = prompt_for(OcrTask.TEXT_RECOGNITION, "qwen-ocr", language="en")
    assert (
        first_page_allowance(capped, OcrTask.TEXT_RECOGNITION) == len(english) + PROMPT_MARKUP_TOKENS + 1000
    )
