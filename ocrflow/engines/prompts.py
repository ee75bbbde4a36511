"""The text prompts the built-in OCR tasks become on an OpenAI-compatible endpoint.

DashScope's native API runs a task from ``ocr_options`` alone. Through an OpenAI-compatible
endpoint the task has to be spelled out as a prompt, so each ``prompt_style`` maps the tasks
to text:

``qwen-ocr``
    The prompts Qwen-OCR's documentation gives OpenAI callers for each built-in task
    ("Text extraction (Qwen-OCR)", section "Call built-in tasks": ``../shared/reference/``
    file 001), word for word; ``tests/test_prompts.py`` compares them with that file. The
    JSON schema is appended to the key-information prompt as the documentation's OpenAI
    Python example does, without that example's line breaks and indentation. English is the
    default. The Chinese prompts (``qwen_prompt_language="zh"``) are the Chinese edition's,
    which the reference does not hold, so no test can hold them to it.
``qianfan-ocr``
    Qianfan-OCR (Baidu). "Parse this document to Markdown." is the prompt of every example on
    its model card. The table and formula prompts are the ones Hugging Face's uv-scripts
    Qianfan-OCR job uses; the key-information prompts are ocrflow's own, as the card gives no
    fixed wording for them. Document parsing yields Markdown, not LaTeX, with this model.
``generic``
    Any other vision-language model (e.g. Qwen3-VL on vLLM): Qwen-OCR's English prompts,
    which are plain instructions, without DashScope's per-image pixel bounds.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from ocrflow.models import OcrTask

PromptStyle = Literal["qwen-ocr", "qianfan-ocr", "generic"]

QWEN_TEXT_RECOGNITION = (
    "Please output only the text content from the image without any additional descriptions or formatting."
)
QWEN_ADVANCED_RECOGNITION_ZH = (
    "定位所有的文字行，并且返回旋转矩形([cx, cy, width, height, angle])的坐标结果。"
)
QWEN_ADVANCED_RECOGNITION_EN = (
    "Locate all text lines and return the coordinates of the rotated rectangle "
    "([cx, cy, width, height, angle])."
)
QWEN_TABLE_PARSING = (
    "In a safe, sandbox environment, you're tasked with converting tables from a synthetic image into HTML. "
    "Transcribe each table using <tr> and <td> tags, reflecting the image's layout from top-left to "
    "bottom-right. Ensure merged cells are accurately represented. This is purely a simulation with no "
    "real-world implications. Begin."
)
QWEN_DOCUMENT_PARSING = (
    "In a secure sandbox, transcribe the text, tables, and equations in the provided image into LaTeX "
    "format without modification. This is a simulation that uses fabricated data. Your task is to "
    "accurately convert the visual elements into LaTeX to demonstrate your transcription skills. Begin."
)
QWEN_FORMULA_RECOGNITION = (
    "Extract and output the LaTeX representation of the formula from the image, without any additional "
    "text or descriptions."
)
QWEN_KIE_ZH = (
    "假设你是一名信息提取专家。现在给你一个JSON模式，用图像中的信息填充该模式的值部分。请注意，如果值是一个列表，"
    "模式将为每个元素提供一个模板。当图像中有多个列表元素时，将使用此模板。最后，只需要输出合法的JSON。所见即所得，"
    "并且输出语言需要与图像保持一致。模糊或者强光遮挡的单个文字可以用英文问号?代替。如果没有对应的值则用null填充。"
    "不需要解释。请注意，输入图像均来自公共基准数据集，不包含任何真实的个人隐私数据。请按要求输出结果。"
)
QWEN_KIE_SCHEMA_ZH = "输入的JSON模式内容如下: {result_schema}。"
QWEN_KIE_ALL_FIELDS_ZH = (
    "假设你是一名信息提取专家。请提取图像中的全部键值对，结果以json字典格式。请注意，如果值是一个列表，模式将为每个"
    "元素提供一个模板。当图像中有多个列表元素时，将使用此模板。最后，只需要输出合法的JSON。所见即所得，并且输出语言"
    "需要与图像保持一致。模糊或者强光遮挡的单个文字可以用英文问号?代替。如果没有对应的值则用null填充。不需要解释，"
    "请按照上面要求输出："
)
QWEN_KIE_EN = (
    "Assume you are an information extraction expert. You are given a JSON schema. Fill the value part of "
    "this schema with information from the image. Note that if the value is a list, the schema will provide "
    "a template for each element. This template will be used when there are multiple list elements in the "
    "image. Finally, only output valid JSON. What You See Is What You Get, and the output language needs to "
    "be consistent with the image. Replace any single character that is blurry or obscured by glare with an "
    "English question mark (?). If there is no corresponding value, fill it with null. No explanation is "
    "needed. Please note that the input images are all from public benchmark datasets and do not contain any "
    "real personal privacy data. Please output the result as required."
)
QWEN_KIE_SCHEMA_EN = " The content of the input JSON schema is as follows: {result_schema}."
QWEN_KIE_ALL_FIELDS_EN = (
    "Assume you are an information extraction expert. Please extract all key-value pairs from the image, "
    "with the result in JSON dictionary format. Note that if the value is a list, the schema will provide a "
    "template for each element. This template will be used when there are multiple list elements in the "
    "image. Finally, only output valid JSON. What You See Is What You Get, and the output language needs to "
    "be consistent with the image. Replace any single character that is blurry or obscured by glare with an "
    "English question mark (?). If there is no corresponding value, fill it with null. No explanation is "
    "needed, please output as requested above:"
)

QIANFAN_PARSE = "Parse this document to Markdown."
QIANFAN_TABLE = "Extract tables to HTML format."
QIANFAN_FORMULA = "Extract formulas to LaTeX."
QIANFAN_KIE = (
    "Extract the key information from the image and output only a JSON object with exactly the keys of "
    "this template. Each template value says what belongs there. Copy values as printed; use null when a "
    "value is not in the image. Template: {result_schema}"
)
QIANFAN_KIE_ALL_FIELDS = "Extract all key-value pairs from the image and output only a JSON object."

_QWEN_FIXED = {
    OcrTask.TEXT_RECOGNITION: QWEN_TEXT_RECOGNITION,
    OcrTask.MULTI_LAN: QWEN_TEXT_RECOGNITION,
    OcrTask.TABLE_PARSING: QWEN_TABLE_PARSING,
    OcrTask.DOCUMENT_PARSING: QWEN_DOCUMENT_PARSING,
    OcrTask.FORMULA_RECOGNITION: QWEN_FORMULA_RECOGNITION,
}
_QIANFAN_FIXED = {
    OcrTask.TEXT_RECOGNITION: QIANFAN_PARSE,
    OcrTask.MULTI_LAN: QIANFAN_PARSE,
    OcrTask.DOCUMENT_PARSING: QIANFAN_PARSE,
    OcrTask.TABLE_PARSING: QIANFAN_TABLE,
    OcrTask.FORMULA_RECOGNITION: QIANFAN_FORMULA,
}

SUPPORTED_TASKS: dict[str, frozenset[OcrTask]] = {
    "qwen-ocr": frozenset(OcrTask),
    # Only Qwen-OCR is documented to answer the rotated-rectangle prompt with usable boxes.
    "qianfan-ocr": frozenset(OcrTask) - {OcrTask.ADVANCED_RECOGNITION},
    "generic": frozenset(OcrTask) - {OcrTask.ADVANCED_RECOGNITION},
}


def schema_text(result_schema: dict[str, Any]) -> str:
    """The schema as it is appended to a prompt: compact JSON, characters unescaped."""
    return json.dumps(result_schema, ensure_ascii=False)


def prompt_for(
    task: OcrTask,
    style: PromptStyle,
    *,
    result_schema: dict[str, Any] | None = None,
    language: Literal["zh", "en"] = "en",
) -> str:
    """The prompt for ``task`` in ``style``; key-information extraction without a schema takes all fields."""
    if style == "qianfan-ocr":
        if task is OcrTask.KEY_INFORMATION_EXTRACTION:
            if result_schema is None:
                return QIANFAN_KIE_ALL_FIELDS
            return QIANFAN_KIE.format(result_schema=schema_text(result_schema))
        return _QIANFAN_FIXED[task]
    if style == "generic":
        language = "en"
    if task is OcrTask.KEY_INFORMATION_EXTRACTION:
        if result_schema is None:
            return QWEN_KIE_ALL_FIELDS_ZH if language == "zh" else QWEN_KIE_ALL_FIELDS_EN
        head, tail = (
            (QWEN_KIE_ZH, QWEN_KIE_SCHEMA_ZH) if language == "zh" else (QWEN_KIE_EN, QWEN_KIE_SCHEMA_EN)
        )
        return head + tail.format(result_schema=schema_text(result_schema))
    if task is OcrTask.ADVANCED_RECOGNITION:
        return QWEN_ADVANCED_RECOGNITION_ZH if language == "zh" else QWEN_ADVANCED_RECOGNITION_EN
    return _QWEN_FIXED[task]
