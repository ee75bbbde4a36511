"""Any OpenAI-compatible chat endpoint through the ``openai`` SDK.

Three kinds of server, chosen by ``OpenAIOptions.prompt_style``:

- DashScope's compatible mode (the default when no ``base_url`` is set) serving Qwen-OCR:
  each built-in task becomes the exact prompt Qwen-OCR's documentation gives OpenAI callers,
  and each image carries ``min_pixels``/``max_pixels`` as the documentation shows.
- A self-hosted server such as vLLM serving Qianfan-OCR (``qianfan-ocr``) or Qwen3-VL
  (``generic``); see :mod:`ocrflow.engines.prompts` for their prompts.

A self-hosted server started without ``--api-key`` accepts any key, so when no key is
configured and ``base_url`` is set, the placeholder ``EMPTY`` is sent. DashScope always
needs a real key.

The SDK's own retries are off (``max_retries=0``): retrying is Prefect's job, gated by
the error type. A response marked ``x-dashscope-partialresponse: true`` is incomplete
(DashScope's 180 s limit) and raised as a :class:`~ocrflow.errors.TransientError` with code
``partial_response``, so the page is retried; the tokens it was billed are counted.
"""

from __future__ import annotations

import threading
from typing import Any

import openai

from ocrflow.engines._api import Answer, ApiEngine, Prepared
from ocrflow.engines._parse import parse_words
from ocrflow.engines._remote import PARTIAL_RESPONSE_HEADER, KeySource, redact, resolve_api_key, status_error
from ocrflow.engines.prompts import SUPPORTED_TASKS, prompt_for
from ocrflow.errors import ConfigurationError, OcrflowError, TransientError
from ocrflow.models import OcrTask, Usage
from ocrflow.settings import ApiLimits, CostOptions, OpenAIOptions

NO_KEY = "EMPTY"
"""What vLLM's documentation passes as the key to a server started without one."""


class OpenAICompatEngine(ApiEngine):
    """A vision model behind ``/chat/completions``; the tasks it supports depend on the prompt style."""

    name = "openai"

    def __init__(
        self,
        options: OpenAIOptions | None = None,
        cost_options: CostOptions | None = None,
        limits: ApiLimits | None = None,
    ) -> None:
        self.options = options or OpenAIOptions()
        self.model = self.options.model
        self.supported_tasks = SUPPORTED_TASKS[self.options.prompt_style]
        self._keys = KeySource(self.options.api_key_env, self.options.api_key_secret_block)
        self._hosted = self.options.base_url is None
        self._service = "DashScope" if self._hosted else f"the server at {self.options.api_url}"
        self._lock = threading.Lock()
        self._client_cache: tuple[str, openai.OpenAI] | None = None
        super().__init__(
            cost_options=cost_options, max_input_tokens=self.options.max_input_tokens, limits=limits
        )

    def request_fingerprint(self, task: OcrTask) -> dict[str, str]:
        return super().request_fingerprint(task) | {"endpoint": self.options.api_url}

    def _prompt(self, task: OcrTask, schema: dict[str, Any] | None) -> str:
        return prompt_for(
            task, self.options.prompt_style, result_schema=schema, language=self.options.qwen_prompt_language
        )

    def _client(self, key: str) -> openai.OpenAI:
        # One client (and connection pool) per key, shared by the threads reading pages.
        with self._lock:
            if self._client_cache is None or self._client_cache[0] != key:
                client = openai.OpenAI(
                    api_key=key,
                    base_url=self.options.api_url,
                    timeout=self.options.timeout_seconds,
                    max_retries=0,
                )
                self._client_cache = (key, client)
            return self._client_cache[1]

    def _image_part(self, page: Prepared) -> dict[str, Any]:
        part: dict[str, Any] = {"type": "image_url", "image_url": {"url": page.image.data_url}}
        if self.options.prompt_style == "qwen-ocr":
            part["min_pixels"] = page.min_pixels
            part["max_pixels"] = page.max_pixels
        return part

    def _ask(self, pages: list[Prepared], task: OcrTask, schema: dict[str, Any] | None, label: str) -> Answer:
        key = resolve_api_key(self._keys)
        if key is None:
            if self._hosted:
                raise ConfigurationError(f"no DashScope API key: {self._keys.describe()}")
            key = NO_KEY
        content = [self._image_part(page) for page in pages]
        content.append({"type": "text", "text": self._prompt(task, schema)})
        extra: dict[str, Any] = {"max_tokens": self.options.max_tokens} if self.options.max_tokens else {}
        failure: OcrflowError | None = None
        try:
            raw = self._client(key).chat.completions.with_raw_response.create(
                model=self.model, messages=[{"role": "user", "content": content}], **extra
            )
        except openai.APITimeoutError:
            failure = TransientError(
                f"{self._service} did not answer within {self.options.timeout_seconds:g} s for {label}",
                code="timeout",
            )
        except openai.APIConnectionError:
            failure = TransientError(f"cannot reach {self._service} for {label}", code="connection_error")
        except openai.APIStatusError as exc:
            message = exc.body.get("message") if isinstance(exc.body, dict) else None
            failure = status_error(
                exc.status_code,
                exc.code,
                service=self._service,
                keys=self._keys,
                model=self.model,
                page=label,
                detail=redact(str(message or ""), key),
            )
        if failure is not None:
            # Raised outside the handler: the SDK's exception may quote what the server echoed
            # (even the key), so it must not ride along as __context__.
            raise failure
        completion = raw.parse()
        if raw.headers.get(PARTIAL_RESPONSE_HEADER, "").lower() == "true":
            cut_off = f"{self._service} returned an incomplete answer for {label} (cut off at its time limit)"
            usage = _usage(completion.usage.model_dump() if completion.usage else {})
            return Answer(text="", usage=usage, cut_off=cut_off)
        if not completion.choices:
            raise TransientError(
                f"{self._service} sent a response without an answer for {label}", code="malformed_response"
            )
        text = completion.choices[0].message.content or ""
        return Answer(
            text=text,
            usage=_usage(completion.usage.model_dump() if completion.usage else {}),
            words=parse_words(text) if task is OcrTask.ADVANCED_RECOGNITION else None,
        )


def _usage(usage: dict[str, Any]) -> Usage:
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
        image_tokens=int(details.get("image_tokens") or 0),
    )
