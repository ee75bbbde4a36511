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

Long answers (document and table parsing by default, ``OpenAIOptions.stream``) are streamed
(``stream=True`` with ``stream_options={"include_usage": True}``, as DashScope's
compatible-mode page documents), so the 180 s limit of non-streaming calls does not cut them
off. A stream that ends without a ``finish_reason`` was cut off and is handled like a partial
answer; its usage, when the last chunk brought one, is counted the same way.

The reference places ``min_pixels``/``max_pixels`` in two ways: the Qwen-OCR page (001) beside
``image_url`` in the content part, in every one of its OpenAI examples; the guide (000) inside the
``image_url`` object. ocrflow follows the Qwen-OCR page, the one that documents the tasks.

Token log probabilities are asked for (``"logprobs": true``) as ``OpenAIOptions.logprobs``
says: by default from self-hosted servers only. Whatever was asked, a response that carries
them has them kept on its result (:mod:`ocrflow.logprobs`), one that does not has ``None``.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import openai

from ocrflow.engines._api import Answer, ApiEngine, Prepared
from ocrflow.engines._parse import parse_words
from ocrflow.engines._remote import PARTIAL_RESPONSE_HEADER, KeySource, redact, resolve_api_key, status_error
from ocrflow.engines.catalog import warn_if_unlisted
from ocrflow.engines.prompts import SUPPORTED_TASKS, prompt_for
from ocrflow.errors import ConfigurationError, OcrflowError, TransientError
from ocrflow.logprobs import carried_logprobs, join_tokens
from ocrflow.models import OcrTask, TokenLogprob, Usage
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
        if self.options.prompt_style == "qwen-ocr":
            warn_if_unlisted(self.options.region, self.model, base_url=self.options.base_url)
        super().__init__(
            cost_options=cost_options, max_input_tokens=self.options.max_input_tokens, limits=limits
        )

    @property
    def asks_for_logprobs(self) -> bool:
        """Whether requests ask for token log probabilities (:attr:`OpenAIOptions.logprobs`)."""
        mode = self.options.logprobs
        return mode == "always" or (mode == "auto" and not self._hosted)

    def request_fingerprint(self, task: OcrTask) -> dict[str, str]:
        parts = super().request_fingerprint(task) | {"endpoint": self.options.api_url}
        if self.asks_for_logprobs:
            # A cached answer read without them must not stand in for one that carries them.
            parts["logprobs"] = "asked"
        return parts

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

    def streams(self, task: OcrTask) -> bool:
        """Whether answers for ``task`` are streamed (:attr:`OpenAIOptions.stream`)."""
        mode = self.options.stream
        return mode == "always" or (mode == "long" and task in LONG_ANSWER_TASKS)

    def request_body(
        self, pages: list[Prepared], task: OcrTask, schema: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The ``/chat/completions`` body for ``pages``: what a live call sends and a Batch line holds."""
        content = [self._image_part(page) for page in pages]
        content.append({"type": "text", "text": self._prompt(task, schema)})
        body: dict[str, Any] = {"model": self.model, "messages": [{"role": "user", "content": content}]}
        if self.options.max_tokens:
            body["max_tokens"] = self.options.max_tokens
        if self.asks_for_logprobs:
            body["logprobs"] = True
        return body

    def _ask(self, pages: list[Prepared], task: OcrTask, schema: dict[str, Any] | None, label: str) -> Answer:
        key = resolve_api_key(self._keys)
        if key is None:
            if self._hosted:
                raise ConfigurationError(f"no DashScope API key: {self._keys.describe()}")
            key = NO_KEY
        body = self.request_body(pages, task, schema)
        stream = self.streams(task)
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        failure: OcrflowError | None = None
        try:
            raw = self._client(key).chat.completions.with_raw_response.create(**body)
            cut_off = raw.headers.get(PARTIAL_RESPONSE_HEADER, "").lower() == "true"
            if stream:
                text, usage, finished, logprobs = _read_stream(raw.parse())
                cut_off = cut_off or not finished
            else:
                completion = raw.parse()
                usage = _usage(completion.usage.model_dump() if completion.usage else {})
                choice = completion.choices[0] if completion.choices else None
                text = (choice.message.content or "") if choice else None
                carried = choice.logprobs if choice else None
                logprobs = carried_logprobs(carried.model_dump() if carried else None)
        except (openai.APIError, httpx.TransportError) as exc:
            failure = sdk_failure(
                exc,
                service=self._service,
                keys=self._keys,
                model=self.model,
                where=label,
                key=key,
                timeout=self.options.timeout_seconds,
            )
        if failure is not None:
            # Raised outside the handler: the SDK's exception may quote what the server echoed
            # (even the key), so it must not ride along as __context__.
            raise failure
        if usage.input_tokens and not usage.image_tokens:
            # A streamed answer's usage has no token details (reference 003): the images cost what
            # the documented formula says, as it was estimated.
            usage = usage.model_copy(update={"image_tokens": sum(page.tokens for page in pages)})
        if cut_off:
            message = f"{self._service} returned an incomplete answer for {label} (cut off at its time limit)"
            return Answer(text="", usage=usage, cut_off=message)
        if text is None:
            raise TransientError(
                f"{self._service} sent a response without an answer for {label}", code="malformed_response"
            )
        return answer_from_text(text, usage, task, logprobs)


def sdk_failure(
    exc: Exception, *, service: str, keys: KeySource, model: str, where: str, key: str | None, timeout: float
) -> OcrflowError:
    """The ocrflow error for an ``openai`` SDK failure: by type and HTTP status, the key scrubbed."""
    if isinstance(exc, openai.APITimeoutError):
        return TransientError(f"{service} did not answer within {timeout:g} s for {where}", code="timeout")
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return TransientError(f"cannot reach {service} for {where}", code="connection_error")
    if isinstance(exc, openai.APIStatusError):
        message = exc.body.get("message") if isinstance(exc.body, dict) else None
        return status_error(
            exc.status_code,
            exc.code,
            service=service,
            keys=keys,
            model=model,
            page=where,
            detail=redact(str(message or ""), key),
        )
    return TransientError(
        f"{service} sent an answer the SDK could not read for {where}", code="malformed_response"
    )


LONG_ANSWER_TASKS = frozenset({OcrTask.DOCUMENT_PARSING, OcrTask.TABLE_PARSING})
"""Tasks whose answers can run to the output limit, streamed by default."""


def answer_from_text(
    text: str, usage: Usage, task: OcrTask, logprobs: tuple[TokenLogprob, ...] | None = None
) -> Answer:
    """An answer from the model's text, as a live call or a Batch output line gives it."""
    return Answer(
        text=text,
        usage=usage,
        words=parse_words(text) if task is OcrTask.ADVANCED_RECOGNITION else None,
        logprobs=logprobs,
    )


def _read_stream(chunks: Any) -> tuple[str, Usage, bool, tuple[TokenLogprob, ...] | None]:
    """The streamed answer's text, its usage (from the last chunk), whether it finished, its logprobs."""
    parts: list[str] = []
    tokens: list[dict[str, Any]] | None = None
    usage = Usage()
    finished = False
    for chunk in chunks:
        if chunk.usage is not None:
            usage = _usage(chunk.usage.model_dump())
        for choice in chunk.choices:
            if choice.delta is not None and choice.delta.content:
                parts.append(choice.delta.content)
            if choice.logprobs is not None and choice.logprobs.content is not None:
                tokens = tokens if tokens is not None else []
                tokens.extend(token.model_dump() for token in choice.logprobs.content)
            if choice.finish_reason is not None:
                finished = True
    return "".join(parts), usage, finished, None if tokens is None else join_tokens(tokens)


def _usage(usage: dict[str, Any]) -> Usage:
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
        image_tokens=int(details.get("image_tokens") or 0),
    )
