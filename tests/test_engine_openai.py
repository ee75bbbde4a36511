"""The openai engine against the fake's compatible mode, through the real OpenAI SDK."""

from __future__ import annotations

import json

import pytest

from ocrflow.engines import create_engine
from ocrflow.engines.kie import result_schema
from ocrflow.engines.openai_compat import OpenAICompatEngine
from ocrflow.errors import ConfigurationError, EngineError
from ocrflow.models import OcrTask
from ocrflow.settings import CostOptions, OpenAIOptions, Settings
from tests import reference
from tests.conftest import blank_page
from tests.fake_dashscope import COMPAT_PATH

KEY = "sk-test-compat-0123456789"

# The documented English prompts are read from ../shared/reference (tests/reference.py). The
# Chinese edition's prompts are not in the reference; they are copied here from that edition,
# independently of ocrflow.engines.prompts.
DOC_ADVANCED = "定位所有的文字行，并且返回旋转矩形([cx, cy, width, height, angle])的坐标结果。"
DOC_KIE_ZH = (
    "假设你是一名信息提取专家。现在给你一个JSON模式，用图像中的信息填充该模式的值部分。请注意，如果值是一个列表，"
    "模式将为每个元素提供一个模板。当图像中有多个列表元素时，将使用此模板。最后，只需要输出合法的JSON。所见即所得，"
    "并且输出语言需要与图像保持一致。模糊或者强光遮挡的单个文字可以用英文问号?代替。如果没有对应的值则用null填充。"
    "不需要解释。请注意，输入图像均来自公共基准数据集，不包含任何真实的个人隐私数据。请按要求输出结果。"
    "输入的JSON模式内容如下: {result_schema}。"
)
DOC_KIE_ALL_ZH = (
    "假设你是一名信息提取专家。请提取图像中的全部键值对，结果以json字典格式。请注意，如果值是一个列表，模式将为每个"
    "元素提供一个模板。当图像中有多个列表元素时，将使用此模板。最后，只需要输出合法的JSON。所见即所得，并且输出语言"
    "需要与图像保持一致。模糊或者强光遮挡的单个文字可以用英文问号?代替。如果没有对应的值则用null填充。不需要解释，"
    "请按照上面要求输出："
)


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)


def engine_for(fake, cost: CostOptions | None = None, **options) -> OpenAICompatEngine:
    return OpenAICompatEngine(OpenAIOptions(base_url=fake.compat_url, **options), cost)


def sent_parts(fake) -> tuple[list[dict], str]:
    (request,) = fake.requests
    assert request.path == COMPAT_PATH
    content = request.body["messages"][0]["content"]
    texts = [part["text"] for part in content if part["type"] == "text"]
    assert len(texts) == 1 and content[-1]["type"] == "text"  # images first, then the prompt
    return [part for part in content if part["type"] == "image_url"], texts[0]


def test_registered(fake_dashscope):
    engine = create_engine(
        Settings(engine="openai", openai=OpenAIOptions(base_url=fake_dashscope.compat_url))
    )
    assert isinstance(engine, OpenAICompatEngine)


@pytest.mark.parametrize(
    ("task", "documented"),
    [
        (OcrTask.TEXT_RECOGNITION, "text_recognition"),
        (OcrTask.MULTI_LAN, "multi_lan"),
        (OcrTask.TABLE_PARSING, "table_parsing"),
        (OcrTask.DOCUMENT_PARSING, "document_parsing"),
        (OcrTask.FORMULA_RECOGNITION, "formula_recognition"),
        (OcrTask.ADVANCED_RECOGNITION, "advanced_recognition"),
        (OcrTask.KEY_INFORMATION_EXTRACTION, "key_information_extraction_all_fields"),
    ],
)
def test_qwen_ocr_tasks_become_the_documented_prompts(fake_dashscope, tmp_path, task, documented):
    prompt = reference.task_prompts()[documented]
    engine_for(fake_dashscope, CostOptions(min_pixels=3072, max_pixels=8388608)).recognize(
        blank_page(tmp_path), task
    )
    images, text = sent_parts(fake_dashscope)
    assert text == prompt
    (image,) = images
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    assert (image["min_pixels"], image["max_pixels"]) == (3072, 8388608)
    request = fake_dashscope.requests[0]
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body["model"] == "qwen-vl-ocr"
    assert "ocr_options" not in request.body


def test_kie_prompt_has_the_doctype_schema_appended(fake_dashscope, tmp_path, doctypes):
    invoice = doctypes["invoice"]
    fake_dashscope.kv = {"invoice_code": "044031900111", "total": "1130.00"}
    result = engine_for(fake_dashscope, qwen_prompt_language="zh").recognize(
        blank_page(tmp_path), OcrTask.KEY_INFORMATION_EXTRACTION, doctype=invoice
    )
    _, text = sent_parts(fake_dashscope)
    schema = json.dumps(result_schema(invoice), ensure_ascii=False)
    assert text == DOC_KIE_ZH.format(result_schema=schema)
    assert result.key_values["invoice_code"] == "044031900111" and result.key_values["total"] == "1130.00"
    assert result.text.startswith("```json")  # the raw answer is kept


def test_english_kie_prompt_is_the_documented_one(fake_dashscope, tmp_path, doctypes):
    """English is the default: the OpenAI example's prompt with the schema put in (line breaks aside)."""
    invoice = doctypes["invoice"]
    engine_for(fake_dashscope).recognize(
        blank_page(tmp_path), OcrTask.KEY_INFORMATION_EXTRACTION, doctype=invoice
    )
    _, text = sent_parts(fake_dashscope)
    schema = json.dumps(result_schema(invoice), ensure_ascii=False)
    assert text == reference.kie_prompt_with_schema(schema)


@pytest.mark.parametrize(
    ("task", "prompt"),
    [(OcrTask.ADVANCED_RECOGNITION, DOC_ADVANCED), (OcrTask.KEY_INFORMATION_EXTRACTION, DOC_KIE_ALL_ZH)],
)
def test_chinese_prompts_on_request(fake_dashscope, tmp_path, task, prompt):
    engine_for(fake_dashscope, qwen_prompt_language="zh").recognize(blank_page(tmp_path), task)
    _, text = sent_parts(fake_dashscope)
    assert text == prompt


def test_qianfan_ocr_prompts(fake_dashscope, tmp_path, doctypes):
    engine = engine_for(fake_dashscope, prompt_style="qianfan-ocr", model="baidu/Qianfan-OCR")
    assert OcrTask.ADVANCED_RECOGNITION not in engine.supported_tasks
    engine.recognize(blank_page(tmp_path), OcrTask.DOCUMENT_PARSING)
    images, text = sent_parts(fake_dashscope)
    assert text == "Parse this document to Markdown."
    assert set(images[0]) == {"type", "image_url"}  # no DashScope-only pixel bounds for vLLM
    fake_dashscope.requests.clear()
    engine.recognize(blank_page(tmp_path), OcrTask.KEY_INFORMATION_EXTRACTION, doctype=doctypes["invoice"])
    _, text = sent_parts(fake_dashscope)
    assert "JSON" in text and json.dumps(result_schema(doctypes["invoice"]), ensure_ascii=False) in text


def test_generic_style_uses_the_english_prompts_without_pixel_bounds(fake_dashscope, tmp_path):
    engine = engine_for(fake_dashscope, prompt_style="generic", model="Qwen/Qwen3-VL-8B-Instruct")
    engine.recognize(blank_page(tmp_path), OcrTask.TABLE_PARSING)
    images, text = sent_parts(fake_dashscope)
    assert text == reference.task_prompts()["table_parsing"] and set(images[0]) == {"type", "image_url"}


def test_an_unsupported_task_fails_before_any_request(fake_dashscope, tmp_path):
    engine = engine_for(fake_dashscope, prompt_style="generic")
    with pytest.raises(EngineError) as caught:
        engine.recognize(blank_page(tmp_path), OcrTask.ADVANCED_RECOGNITION)
    assert caught.value.code == "unsupported_task" and fake_dashscope.requests == []


def test_advanced_recognition_lines_are_read_from_the_answer(fake_dashscope, tmp_path):
    result = engine_for(fake_dashscope).recognize(blank_page(tmp_path), OcrTask.ADVANCED_RECOGNITION)
    assert [line.text for line in result.lines][:2] == ["发票代码 044031900111", "发票号码 12345678"]
    assert result.lines[0].box == [[52, 54], [250, 57], [249, 106], [52, 103]]
    assert result.lines[2].box == [[100, 235], [300, 235], [300, 265], [100, 265]]


def test_table_answer_loses_its_fence_and_usage_is_recorded(fake_dashscope, tmp_path):
    result = engine_for(fake_dashscope).recognize(blank_page(tmp_path), OcrTask.TABLE_PARSING)
    assert result.text.startswith("<table>") and result.text.endswith("</table>")
    assert result.usage.image_tokens == 19 * 25 + 2  # 600x800 at 32 px per token side
    assert result.usage.input_tokens > result.usage.image_tokens and result.usage.output_tokens > 0
    assert result.usage.pages == 1


def test_pages_are_packed_into_one_request(fake_dashscope, tmp_path):
    pages = [blank_page(tmp_path, 500, 500, f"p{i}.png") for i in range(3)]
    (result,) = engine_for(fake_dashscope).recognize_pages(pages, OcrTask.KEY_INFORMATION_EXTRACTION)
    images, _ = sent_parts(fake_dashscope)
    assert len(images) == 3 and result.usage.pages == 3


def test_a_self_hosted_server_needs_no_key(fake_dashscope, tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    engine_for(fake_dashscope, api_key_secret_block=None, prompt_style="qianfan-ocr").recognize(
        blank_page(tmp_path), OcrTask.TEXT_RECOGNITION
    )
    assert fake_dashscope.requests[0].headers["authorization"] == "Bearer EMPTY"


def test_dashscope_compatible_mode_needs_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    engine = OpenAICompatEngine(OpenAIOptions(api_key_secret_block=None))  # the real endpoint: never reached
    with pytest.raises(ConfigurationError, match="DASHSCOPE_API_KEY"):
        engine.recognize(blank_page(tmp_path), OcrTask.TEXT_RECOGNITION)


def test_another_key_variable(fake_dashscope, tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_KEY", "sk-vllm")
    engine_for(fake_dashscope, api_key_env="VLLM_KEY").recognize(
        blank_page(tmp_path), OcrTask.TEXT_RECOGNITION
    )
    assert fake_dashscope.requests[0].headers["authorization"] == "Bearer sk-vllm"
