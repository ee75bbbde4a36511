"""The dashscope engine against the loopback fake, through the real DashScope SDK."""

from __future__ import annotations

import base64
import io
import logging
import shutil
import traceback

import numpy as np
import pytest
from PIL import Image

from ocrflow.cost import image_tokens, pixel_bounds
from ocrflow.doctypes import DocType
from ocrflow.engines import ENGINES, create_engine
from ocrflow.engines._api import ApiEngine
from ocrflow.engines._images import MAX_DATA_URL_CHARS, encode_image
from ocrflow.engines._remote import KeySource, status_error
from ocrflow.engines.base import OcrEngine
from ocrflow.engines.dashscope import DashScopeEngine
from ocrflow.engines.kie import result_schema
from ocrflow.engines.openai_compat import OpenAICompatEngine
from ocrflow.errors import ConfigurationError, EngineError, InputError, is_retryable
from ocrflow.extract import extract
from ocrflow.models import OcrTask
from ocrflow.settings import CostOptions, DashScopeOptions, OpenAIOptions, Settings
from tests.conftest import EXAMPLES, blank_page
from tests.fake_dashscope import FAULTS, NATIVE_PATH, smart_resize

KEY = "sk-test-0123456789abcdef"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)


def engine_for(fake, cost: CostOptions | None = None, **options) -> DashScopeEngine:
    return DashScopeEngine(DashScopeOptions(base_url=fake.native_url, **options), cost)


def test_registered_and_satisfies_the_protocol(fake_dashscope):
    settings = Settings(engine="dashscope", dashscope=DashScopeOptions(base_url=fake_dashscope.native_url))
    engine = create_engine(settings)
    assert isinstance(engine, DashScopeEngine) and isinstance(engine, OcrEngine)
    assert engine.supported_tasks == frozenset(OcrTask)
    assert {"local", "dashscope", "openai"} <= set(ENGINES)


@pytest.mark.parametrize(
    ("region", "url"),
    [
        ("singapore", "https://dashscope-intl.aliyuncs.com/api/v1"),
        ("virginia", "https://dashscope-us.aliyuncs.com/api/v1"),
        ("beijing", "https://dashscope.aliyuncs.com/api/v1"),
    ],
)
def test_region_urls(region, url):
    assert DashScopeOptions(region=region).api_url == url
    assert OpenAIOptions(region=region).api_url == url.replace("/api/v1", "/compatible-mode/v1")


def test_base_url_overrides_region_and_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("OCRFLOW_DASHSCOPE__REGION", "singapore")
    monkeypatch.setenv("OCRFLOW_DASHSCOPE__MODEL", "qwen-vl-ocr-2025-11-20")
    settings = Settings()
    assert settings.dashscope.api_url == "https://dashscope-intl.aliyuncs.com/api/v1"
    assert settings.dashscope.model == "qwen-vl-ocr-2025-11-20"
    workspace = "https://ws-1.cn-beijing.maas.aliyuncs.com/api/v1/"
    assert DashScopeOptions(base_url=workspace).api_url == workspace.rstrip("/")
    with pytest.raises(ValueError):
        DashScopeOptions(model="qwen-vl-max")


@pytest.mark.parametrize("task", list(OcrTask))
def test_every_task_sends_the_documented_request(fake_dashscope, tmp_path, task):
    cost = CostOptions(min_pixels=3072, max_pixels=1_000_000)
    engine_for(fake_dashscope, cost, enable_rotate=True).recognize(blank_page(tmp_path), task)
    (request,) = fake_dashscope.requests
    assert request.path == NATIVE_PATH
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body["model"] == "qwen-vl-ocr"
    (image,) = request.body["input"]["messages"][0]["content"]
    assert image["image"].startswith("data:image/png;base64,")
    assert base64.b64decode(image["image"].split(",", 1)[1]) == (tmp_path / "page.png").read_bytes()
    assert (image["min_pixels"], image["max_pixels"], image["enable_rotate"]) == (3072, 1_000_000, True)
    assert request.body["parameters"]["ocr_options"] == {"task": task.value}


def test_jpeg_pages_go_with_their_own_mime_type(fake_dashscope, tmp_path):
    path = tmp_path / "page.jpg"
    Image.new("RGB", (400, 300), "white").save(path, quality=90)
    engine_for(fake_dashscope).recognize(path, OcrTask.TEXT_RECOGNITION)
    (image,) = fake_dashscope.requests[0].body["input"]["messages"][0]["content"]
    assert image["image"].startswith("data:image/jpeg;base64,")


def test_key_information_extraction_sends_the_doctypes_schema(fake_dashscope, tmp_path, doctypes):
    invoice = doctypes["invoice"]
    fake_dashscope.kv = {"invoice_code": "044031900111", "invoice_number": "12345678", "total": "1130.00"}
    result = engine_for(fake_dashscope).recognize(
        blank_page(tmp_path), OcrTask.KEY_INFORMATION_EXTRACTION, page_number=2, doctype=invoice
    )
    options = fake_dashscope.requests[0].body["parameters"]["ocr_options"]
    assert options["task"] == "key_information_extraction"
    assert options["task_config"]["result_schema"] == result_schema(invoice)
    assert (
        options["task_config"]["result_schema"]["invoice_code"]
        == "The invoice code (发票代码), 10 or 12 digits"
    )
    assert result.key_values["invoice_code"] == "044031900111"
    assert result.key_values["issue_date"] is None
    assert result.page_number == 2 and result.engine == "dashscope"
    fields = extract([result], invoice).fields
    assert fields["invoice_number"].value == "12345678"
    assert fields["total"].value == "1130.00"
    assert fields["issue_date"].value is None


def test_key_information_extraction_without_a_doctype_takes_all_fields(fake_dashscope, tmp_path):
    fake_dashscope.kv = {"发票代码": "221021325353", "总金额": "8.00"}
    result = engine_for(fake_dashscope).recognize(blank_page(tmp_path), OcrTask.KEY_INFORMATION_EXTRACTION)
    assert fake_dashscope.requests[0].body["parameters"]["ocr_options"] == {
        "task": "key_information_extraction"
    }
    assert result.key_values == {"发票代码": "221021325353", "总金额": "8.00"}


def test_result_schema_nests_three_levels_and_falls_back_to_titles():
    schema = {
        "properties": {
            "a": {"type": ["string", "null"], "description": "hint a"},
            "b": {"type": "string", "title": "Title b"},
            "c": {"type": "string"},
            "seller": {
                "type": "object",
                "description": "the seller",
                "properties": {
                    "name": {"type": "string", "description": "name"},
                    "bank": {
                        "type": "object",
                        "properties": {
                            "account": {"type": "string", "description": "account"},
                            "branch": {"type": "object", "description": "too deep", "properties": {"x": {}}},
                        },
                    },
                },
            },
            "items": {
                "type": "array",
                "items": {"type": "object", "properties": {"name": {"description": "item name"}}},
            },
            "tags": {"type": "array", "description": "tags", "items": {"type": "string"}},
        }
    }
    assert result_schema(DocType("t", schema)) == {
        "a": "hint a",
        "b": "Title b",
        "c": "",
        "seller": {"name": "name", "bank": {"account": "account", "branch": "too deep"}},
        "items": [{"name": "item name"}],
        "tags": ["tags"],
    }


def test_advanced_recognition_maps_lines_and_boxes(fake_dashscope, tmp_path):
    result = engine_for(fake_dashscope).recognize(blank_page(tmp_path), OcrTask.ADVANCED_RECOGNITION)
    assert [line.text for line in result.lines] == [
        "发票代码 044031900111",
        "发票号码 12345678",
        "开票日期 2024年05月20日",
    ]
    assert result.lines[0].box == [[52, 54], [250, 57], [249, 106], [52, 103]]  # from location
    assert result.lines[2].box == [[100, 235], [300, 235], [300, 265], [100, 265]]  # from rotate_rect
    assert result.text == "\n".join(line.text for line in result.lines)
    assert all(line.score == 1.0 for line in result.lines)


@pytest.mark.parametrize(
    ("task", "starts", "ends"),
    [
        (OcrTask.TABLE_PARSING, "<table>", "</table>"),
        (OcrTask.DOCUMENT_PARSING, "\\documentclass{article}", "\\end{document}"),
        (OcrTask.FORMULA_RECOGNITION, "$$", "$$"),
        (OcrTask.TEXT_RECOGNITION, "读者对象", "受益匪浅。"),
        (OcrTask.MULTI_LAN, "读者对象", "受益匪浅。"),
    ],
)
def test_text_tasks_return_the_answer_without_fences(fake_dashscope, tmp_path, task, starts, ends):
    result = engine_for(fake_dashscope).recognize(blank_page(tmp_path), task)
    assert result.text.startswith(starts) and result.text.endswith(ends)
    assert "```" not in result.text and result.key_values is None


def test_usage_is_recorded_from_the_response(fake_dashscope, tmp_path):
    result = engine_for(fake_dashscope).recognize(blank_page(tmp_path, 1000, 700), OcrTask.TEXT_RECOGNITION)
    h_bar, w_bar = smart_resize(700, 1000, 3072, 32 * 32 * 8192)
    assert result.usage.image_tokens == h_bar * w_bar // 1024 + 2
    assert result.usage.input_tokens == result.usage.image_tokens + 33
    assert result.usage.output_tokens > 0 and result.usage.pages == 1 and result.usage.seconds > 0


def test_pages_are_packed_under_the_input_token_limit(fake_dashscope, tmp_path):
    pages = [blank_page(tmp_path, 1000, 1000, f"p{i}.png") for i in range(5)]
    per_page = image_tokens(1000, 1000, model="qwen-vl-ocr")
    assert per_page == 963
    engine = engine_for(fake_dashscope, max_input_tokens=2500)
    results = engine.recognize_pages(pages, OcrTask.TEXT_RECOGNITION, first_page_number=1)
    sizes = [len(r.body["input"]["messages"][0]["content"]) for r in fake_dashscope.requests]
    assert sizes == [2, 2, 1]
    assert [r.page_number for r in results] == [1, 3, 5]
    assert [r.usage.pages for r in results] == [2, 2, 1]
    assert sum(r.usage.image_tokens for r in results) == 5 * per_page

    fake_dashscope.requests.clear()
    (whole,) = engine_for(fake_dashscope).recognize_pages(pages, OcrTask.KEY_INFORMATION_EXTRACTION)
    assert len(fake_dashscope.requests) == 1 and whole.usage.pages == 5


def test_adaptive_pixel_bounds_are_sent_per_image(fake_dashscope, tmp_path):
    scan = tmp_path / "invoice.png"
    shutil.copy(EXAMPLES / "invoice_valid.png", scan)
    cost = CostOptions(max_pixels_mode="adaptive")
    engine_for(fake_dashscope, cost).recognize(scan, OcrTask.TEXT_RECOGNITION)
    (image,) = fake_dashscope.requests[0].body["input"]["messages"][0]["content"]
    assert (image["min_pixels"], image["max_pixels"]) == pixel_bounds(scan, "qwen-vl-ocr", cost)
    assert image["max_pixels"] < 32 * 32 * 8192
    fingerprint = DashScopeEngine(cost_options=cost).request_fingerprint(OcrTask.TEXT_RECOGNITION)
    assert fingerprint["max_pixels_mode"] == "adaptive" and fingerprint["enable_rotate"] == "False"


def test_advanced_recognition_is_never_packed(fake_dashscope, tmp_path):
    pages = [blank_page(tmp_path, 300, 300, f"p{i}.png") for i in range(3)]
    results = engine_for(fake_dashscope).recognize_pages(
        pages, OcrTask.ADVANCED_RECOGNITION, first_page_number=4
    )
    assert len(fake_dashscope.requests) == 3
    assert [r.page_number for r in results] == [4, 5, 6]


def test_an_image_over_10_mb_is_reencoded_not_refused(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (2000, 2000, 3), dtype=np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(noise).save(path, compress_level=1)
    assert 4 * path.stat().st_size / 3 > MAX_DATA_URL_CHARS
    encoded = encode_image(path)
    assert len(encoded.data_url) <= MAX_DATA_URL_CHARS
    assert encoded.data_url.startswith("data:image/jpeg;base64,")


def test_boxes_of_a_shrunk_image_are_mapped_back(fake_dashscope, tmp_path, monkeypatch):
    noise = np.random.default_rng(1).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(noise).save(path)
    monkeypatch.setattr(
        "ocrflow.engines._api.encode_image", lambda p, **kw: encode_image(p, max_chars=120_000, **kw)
    )
    result = engine_for(fake_dashscope).recognize(path, OcrTask.ADVANCED_RECOGNITION)
    (image,) = fake_dashscope.requests[0].body["input"]["messages"][0]["content"]
    assert len(image["image"]) <= 120_000
    with Image.open(io.BytesIO(base64.b64decode(image["image"].split(",", 1)[1]))) as sent:
        scale = 800 / sent.width
    assert scale > 1
    assert result.lines[0].box[1] == pytest.approx([250 * scale, 57 * scale])


def test_content_refusal_says_a_person_must_review(fake_dashscope, tmp_path):
    fake_dashscope.inject("content_refused")
    with pytest.raises(EngineError, match="page 1") as caught:
        engine_for(fake_dashscope).recognize(blank_page(tmp_path), OcrTask.TEXT_RECOGNITION)
    assert "review" in str(caught.value)


def test_the_default_timeout_is_180_seconds():
    assert DashScopeOptions().timeout_seconds == 180 and OpenAIOptions().timeout_seconds == 180


@pytest.mark.parametrize(
    ("status", "vendor_code", "code", "retryable"),
    [
        (400, "Arrearage", "account_in_arrears", False),
        (400, "data_inspection_failed", "content_refused", False),
        (404, "ModelNotFound", "model_not_found", False),
        (408, None, "timeout", True),
        (503, None, "server_error", True),
        (422, None, "bad_request", False),
    ],
)
def test_status_classification(status, vendor_code, code, retryable):
    error = status_error(
        status,
        vendor_code,
        service="DashScope",
        keys=KeySource("DASHSCOPE_API_KEY", None),
        model="m",
        page="page 1",
    )
    assert error.code == code
    assert is_retryable(error) is retryable


def test_a_page_that_is_not_an_image_is_an_input_error(fake_dashscope, tmp_path):
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError):
        engine_for(fake_dashscope).recognize(bad, OcrTask.TEXT_RECOGNITION)
    assert fake_dashscope.requests == []


def test_key_from_a_prefect_secret_block(fake_dashscope, tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY")

    class FakeSecret:
        @staticmethod
        def load(name):
            assert name == "my-block"
            return type("Loaded", (), {"get": lambda self: "sk-from-block"})()

    monkeypatch.setattr("prefect.blocks.system.Secret", FakeSecret)
    engine_for(fake_dashscope, api_key_secret_block="my-block").recognize(
        blank_page(tmp_path), OcrTask.TEXT_RECOGNITION
    )
    assert fake_dashscope.requests[0].headers["authorization"] == "Bearer sk-from-block"


def test_no_key_anywhere_is_a_configuration_error(fake_dashscope, tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY")

    class MissingSecret:
        @staticmethod
        def load(name):
            raise ValueError(f"Unable to find block document named {name}")

    monkeypatch.setattr("prefect.blocks.system.Secret", MissingSecret)
    with pytest.raises(ConfigurationError, match="DASHSCOPE_API_KEY.*'dashscope-api-key'"):
        engine_for(fake_dashscope).recognize(blank_page(tmp_path), OcrTask.TEXT_RECOGNITION)
    assert fake_dashscope.requests == []


def _engines(fake) -> list[ApiEngine]:
    return [
        DashScopeEngine(DashScopeOptions(base_url=fake.native_url, timeout_seconds=0.5)),
        OpenAICompatEngine(OpenAIOptions(base_url=fake.compat_url, timeout_seconds=0.5)),
    ]


def test_the_api_key_never_leaks(fake_dashscope, tmp_path, caplog, doctypes):
    """Run every task and every failure with a recognisable key, then grep all that was produced."""
    caplog.set_level(logging.DEBUG)
    fake_dashscope.echo_key_in_errors = True
    fake_dashscope.kv = {"invoice_code": "044031900111"}
    produced: list[str] = []
    for engine in _engines(fake_dashscope):
        for task in engine.supported_tasks:
            result = engine.recognize(blank_page(tmp_path), task, doctype=doctypes["invoice"])
            produced += [result.model_dump_json(), repr(result)]
        for fault in sorted(FAULTS):
            fake_dashscope.inject(fault, seconds=2)
            try:
                result = engine.recognize(blank_page(tmp_path), OcrTask.KEY_INFORMATION_EXTRACTION)
                produced.append(result.model_dump_json())
            except Exception as exc:  # noqa: BLE001 - every failure's text is inspected
                produced += [
                    str(exc),
                    repr(exc),
                    getattr(exc, "message", ""),
                    "".join(traceback.format_exception(exc)),
                    repr(exc.__cause__),
                    repr(exc.__context__),
                ]
        produced += [repr(engine), repr(vars(engine).get("options"))]
    produced.append(caplog.text)
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in fake_dashscope.requests)
    leaks = [text for text in produced if KEY in text]
    assert leaks == []


@pytest.mark.usefixtures("prefect_server")
def test_the_flow_retries_only_transient_errors_and_stores_no_key(fake_dashscope, tmp_path):
    from prefect.client.orchestration import get_client

    from flows.process_documents import process_documents

    shutil.copy(EXAMPLES / "bank_card_valid.png", tmp_path / "card.png")
    settings = Settings(engine="dashscope", dashscope=DashScopeOptions(base_url=fake_dashscope.native_url))
    fake_dashscope.echo_key_in_errors = True
    fake_dashscope.inject("invalid_key")
    process_documents(paths=[str(tmp_path / "card.png")], out=str(tmp_path / "out1"), settings=settings)
    assert len(fake_dashscope.requests) == 1  # permanent: never retried

    fake_dashscope.requests.clear()
    fake_dashscope.inject("server_error")
    process_documents(paths=[str(tmp_path / "card.png")], out=str(tmp_path / "out2"), settings=settings)
    assert len(fake_dashscope.requests) == 2  # transient: retried once, then answered

    stored = [path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()]
    with get_client(sync_client=True) as client:
        stored += [artifact.model_dump_json().encode() for artifact in client.read_artifacts()]
        stored += [log.model_dump_json().encode() for log in client.read_logs()]
    assert stored and not [blob for blob in stored if KEY.encode() in blob]


def test_pipeline_fills_a_known_type_by_key_information_extraction(fake_dashscope, tmp_path):
    from ocrflow.models import Status
    from ocrflow.pipeline import Context, process_document

    fake_dashscope.kv = {
        "card_number": "6222 0212 3456 7894",
        "bank": "中国工商银行",
        "expiry": "09/28",
        "holder": "WANG XIAOMING",
    }
    settings = Settings(
        out_dir=tmp_path / "out",
        engine="dashscope",
        dashscope=DashScopeOptions(base_url=fake_dashscope.native_url),
    )
    result = process_document(Context(settings), EXAMPLES / "bank_card_valid.png", "bank_card")
    sent = fake_dashscope.requests[0].body["parameters"]["ocr_options"]
    assert sent["task"] == "key_information_extraction"
    assert set(sent["task_config"]["result_schema"]) == {"card_number", "bank", "expiry", "holder"}
    assert result.status is Status.ACCEPTED, result.reasons
    assert result.fields["card_number"].value == "6222021234567894"
    assert result.engine.startswith("dashscope:") and result.usage.image_tokens > 0
