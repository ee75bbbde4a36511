"""Qwen-OCR through DashScope's native API (``dashscope.MultiModalConversation.call``).

Every built-in task is run through ``ocr_options``: ``text_recognition``, ``multi_lan``,
``advanced_recognition`` (text lines with ``location`` or ``rotate_rect`` boxes, read from
``ocr_result.words_info``), ``key_information_extraction`` (``task_config.result_schema``
from the document type, or all fields; read from ``ocr_result.kv_result``),
``table_parsing`` (HTML), ``document_parsing`` and ``formula_recognition`` (LaTeX).

The base URL is passed with each call (``base_address``) rather than set on the module
global ``dashscope.base_http_api_url``, so engines for different regions can run side by
side in one process.

A page image of 7 to 10 MB is passed as a local file, which the SDK uploads to DashScope's
temporary storage (``OssUtils.upload``, the mechanism behind its ``file://`` paths) and sends as
an ``oss://`` URL, as the documentation advises for that size, instead of being re-encoded. The
upload is asked for at this engine's own base URL, not the SDK's module-wide one.

A response whose ``x-dashscope-partialresponse`` header is ``true`` is incomplete: the
service stopped the model at its 180 s limit for non-streaming calls and returned what
it had. It is raised as a :class:`~ocrflow.errors.TransientError` with code
``partial_response``, so the page is retried rather than half-read; the tokens it was billed
are counted (see :mod:`ocrflow.engines._api`).
"""

from __future__ import annotations

from typing import Any

import requests
from dashscope import MultiModalConversation
from dashscope.common.error import UploadFileException
from dashscope.utils.oss_utils import OssUtils

from ocrflow.engines._api import Answer, ApiEngine, Prepared
from ocrflow.engines._images import UPLOAD_FROM_BYTES
from ocrflow.engines._remote import PARTIAL_RESPONSE_HEADER, KeySource, redact, resolve_api_key, status_error
from ocrflow.engines.catalog import warn_if_unlisted
from ocrflow.engines.prompts import prompt_for
from ocrflow.errors import ConfigurationError, TransientError
from ocrflow.models import OcrTask, Usage
from ocrflow.settings import ApiLimits, CostOptions, DashScopeOptions

SERVICE = "DashScope"


class DashScopeEngine(ApiEngine):
    """Qwen-OCR models on DashScope, all seven built-in tasks."""

    name = "dashscope"
    supported_tasks = frozenset(OcrTask)
    upload_from = UPLOAD_FROM_BYTES

    def __init__(
        self,
        options: DashScopeOptions | None = None,
        cost_options: CostOptions | None = None,
        limits: ApiLimits | None = None,
    ) -> None:
        self.options = options or DashScopeOptions()
        self.model = self.options.model
        self._keys = KeySource(self.options.api_key_env, self.options.api_key_secret_block)
        warn_if_unlisted(self.options.region, self.model, base_url=self.options.base_url)
        super().__init__(
            cost_options=cost_options, max_input_tokens=self.options.max_input_tokens, limits=limits
        )

    def request_fingerprint(self, task: OcrTask) -> dict[str, str]:
        return super().request_fingerprint(task) | {"enable_rotate": str(self.options.enable_rotate)}

    def _prompt(self, task: OcrTask, schema: dict[str, Any] | None) -> str:
        # The service applies the documented prompt itself; it still counts as input.
        return prompt_for(task, "qwen-ocr", result_schema=schema)

    def _image(self, page: Prepared, key: str) -> str:
        """The page's data URL, or the ``oss://`` URL of its upload (see the module docstring)."""
        if page.image.upload is None:
            return page.image.data_url
        url, _ = OssUtils.upload(
            model=self.model, file_path=str(page.image.upload), api_key=key, base_address=self.options.api_url
        )
        return url

    def _ask(self, pages: list[Prepared], task: OcrTask, schema: dict[str, Any] | None, label: str) -> Answer:
        key = resolve_api_key(self._keys)
        if key is None:
            raise ConfigurationError(f"no DashScope API key: {self._keys.describe()}")
        ocr_options: dict[str, Any] = {"task": task.value}
        if schema is not None:
            ocr_options["task_config"] = {"result_schema": schema}
        failure: TransientError | None = None
        try:
            content = [
                {
                    "image": self._image(page, key),
                    "min_pixels": page.min_pixels,
                    "max_pixels": page.max_pixels,
                    "enable_rotate": self.options.enable_rotate,
                }
                for page in pages
            ]
        except (UploadFileException, requests.exceptions.RequestException):
            failure = TransientError(
                f"uploading the page image for {label} to DashScope failed", code="upload_failed"
            )
        if failure is not None:
            raise failure
        try:
            response = MultiModalConversation.call(
                model=self.model,
                messages=[{"role": "user", "content": content}],
                api_key=key,
                ocr_options=ocr_options,
                base_address=self.options.api_url,
                request_timeout=self.options.timeout_seconds,
            )
        except requests.exceptions.Timeout:
            failure = TransientError(
                f"DashScope did not answer within {self.options.timeout_seconds:g} s for {label}",
                code="timeout",
            )
        except requests.exceptions.ConnectionError:
            failure = TransientError(
                f"cannot reach DashScope at {self.options.api_url} for {label}", code="connection_error"
            )
        if failure is not None:
            # Raised outside the handler so the transport's exception is not chained onto ours.
            raise failure
        if response.status_code != 200:
            raise status_error(
                int(response.status_code),
                response.code,
                service=SERVICE,
                keys=self._keys,
                model=self.model,
                page=label,
                detail=redact(str(response.message or ""), key),
            )
        headers = {str(k).lower(): str(v) for k, v in (response.headers or {}).items()}
        if headers.get(PARTIAL_RESPONSE_HEADER, "").lower() == "true":
            return Answer(
                text="",
                usage=_usage(response.usage or {}),
                cut_off=f"DashScope returned an incomplete answer for {label} (cut off at its time limit)",
            )
        return _answer(response, label)


def _answer(response: Any, label: str) -> Answer:
    try:
        parts = response.output["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise TransientError(
            f"DashScope sent a response without an answer for {label}", code="malformed_response"
        ) from None
    parts = [part for part in parts if isinstance(part, dict)] if isinstance(parts, list) else []
    text = "".join(part["text"] for part in parts if isinstance(part.get("text"), str))
    ocr_result = next((part["ocr_result"] for part in parts if isinstance(part.get("ocr_result"), dict)), {})
    words = ocr_result.get("words_info")
    key_values = ocr_result.get("kv_result")
    return Answer(
        text=text,
        usage=_usage(response.usage or {}),
        words=words if isinstance(words, list) else None,
        key_values=key_values if isinstance(key_values, dict) else None,
    )


def _usage(usage: dict[str, Any]) -> Usage:
    details = usage.get("input_tokens_details") or {}
    return Usage(
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        image_tokens=int(usage.get("image_tokens") or details.get("image_tokens") or 0),
    )
