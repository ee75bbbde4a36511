"""A loopback fake of DashScope: the native multimodal API and the OpenAI-compatible mode.

The real ``dashscope`` and ``openai`` SDKs talk to it through their base URLs
(:attr:`FakeDashScope.native_url`, :attr:`FakeDashScope.compat_url`). It answers with the
response shapes of Qwen-OCR's documentation (``ocr_result.words_info`` with ``location``
and ``rotate_rect``, ``ocr_result.kv_result``, ``usage`` with ``image_tokens`` computed by
the documented ``smart_resize`` from the images it received) and the documented error
objects: ``{"code": "InvalidApiKey", ...}`` natively, ``{"error": {"code":
"invalid_api_key", ...}}`` in compatible mode.

Faults are queued with :meth:`FakeDashScope.inject` and each one is spent on one request:
``rate_limit`` (429), ``server_error`` (500), ``invalid_key`` (401), ``forbidden`` (403),
``content_refused`` (400 data inspection), ``bad_request`` (400), ``slow`` (answers after
``seconds``), ``partial`` (200 with ``x-dashscope-partialresponse: true`` and a cut-off
answer) and ``malformed`` (200 with model output that is not JSON). ``latency`` delays every
answer; ``rpm`` answers 429 above that many requests in any 60 seconds.

A compatible-mode request with ``"logprobs": true`` is answered with token log probabilities
when ``serves_logprobs`` is set (as vLLM does), else with ``"logprobs": null`` (as DashScope's
documented answers show). Tokens are runs of letters, up to three digits, or one other
character; a non-ASCII character is spelt byte by byte, as byte-level tokenizers do. Every token
is near certain except those inside a substring of ``doubt``, which get its log probability.

A compatible-mode request with ``"stream": true`` is answered as server-sent events, with
the usage in a last chunk when ``stream_options.include_usage`` asks for it; the ``partial``
fault then ends the stream half-way without a ``finish_reason``. The Files and Batches
endpoints and DashScope's temporary storage for the SDK's local-file upload live in
:mod:`tests.fake_files` (``fake.batch``).

In tests use the ``fake_dashscope`` fixture. For a benchmark run it alone::

    python -m tests.fake_dashscope --port 8765 --latency 1 --rpm 120
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import re
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from PIL import Image

from tests.fake_files import BatchService

NATIVE_PATH = "/api/v1/services/aigc/multimodal-generation/generation"
COMPAT_PATH = "/compatible-mode/v1/chat/completions"
COMPAT_ROOT = "/compatible-mode/v1"
UPLOAD_POLICY_PATH = "/api/v1/uploads"
OSS_UPLOAD_PATH = "/oss-upload"
BATCH_LINE = "batch line"
"""The ``path`` a batch line is recorded under in ``fake.requests``."""
FAULTS = {
    "rate_limit",
    "server_error",
    "invalid_key",
    "forbidden",
    "content_refused",
    "bad_request",
    "slow",
    "partial",
    "malformed",
}

# (HTTP status, native code, compatible-mode code, compatible-mode type, message)
_ERRORS = {
    "rate_limit": (
        429,
        "Throttling.RateQuota",
        "limit_requests",
        "limit_requests",
        "Requests rate limit exceeded, please try again later.",
    ),
    "server_error": (
        500,
        "InternalError",
        "internal_error",
        "internal_error",
        "An internal error has occured, please try again later or contact service support.",
    ),
    "invalid_key": (
        401,
        "InvalidApiKey",
        "invalid_api_key",
        "invalid_request_error",
        "Invalid API-key provided.",
    ),
    "forbidden": (403, "AccessDenied", "access_denied", "invalid_request_error", "Access denied."),
    "content_refused": (
        400,
        "DataInspectionFailed",
        "data_inspection_failed",
        "data_inspection_failed",
        "Input data may contain inappropriate content.",
    ),
    "bad_request": (
        400,
        "InvalidParameter",
        "invalid_parameter_error",
        "invalid_request_error",
        "The image is invalid.",
    ),
}

DEFAULT_WORDS: list[dict[str, Any]] = [
    {
        "rotate_rect": [150, 80, 49, 197, -89],
        "location": [52, 54, 250, 57, 249, 106, 52, 103],
        "text": "发票代码 044031900111",
    },
    {
        "rotate_rect": [300, 171, 34, 400, -89],
        "location": [100, 154, 500, 157, 500, 188, 100, 185],
        "text": "发票号码 12345678",
    },
    # Only a rotated rectangle, as the newest models answer: the engine derives the corners.
    {"rotate_rect": [200, 250, 30, 200, 90], "text": "开票日期 2024年05月20日"},
]
DEFAULT_TEXT = "读者对象\n如果你是Linux环境下的系统管理员，那么学会编写shell脚本将让你受益匪浅。"
DEFAULT_TABLE = (
    "```html\n<table>\n  <tr>\n    <td>元素</td>\n    <td>结果</td>\n  </tr>\n"
    "  <tr>\n    <td>Pb</td>\n    <td>ND</td>\n  </tr>\n</table>\n```"
)
DEFAULT_LATEX = (
    "```latex\n\\documentclass{article}\n\\begin{document}\n\\section{Abstract}\n"
    "We present the fake.\n\\end{document}\n```"
)
DEFAULT_FORMULA = "$$\\tilde { Q } ( x ) : = \\frac { 2 } { \\pi } \\Omega$$"
MALFORMED = "抱歉，以下是我能识别的内容：{'发票号码'：'12345678', '开票日期'"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out is gone before the slow answer is written: expected here.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass(frozen=True)
class Fault:
    kind: str
    seconds: float = 0.0


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float = 0.0
    """``time.monotonic()`` when it arrived."""


def smart_resize(
    height: int, width: int, min_pixels: int, max_pixels: int, patch: int = 32
) -> tuple[int, int]:
    """Qwen-OCR's documented resize, used to charge ``image_tokens`` like the service does."""
    h_bar, w_bar = round(height / patch) * patch, round(width / patch) * patch
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar, w_bar = math.floor(height / beta / patch) * patch, math.floor(width / beta / patch) * patch
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / patch) * patch, math.ceil(width * beta / patch) * patch
    return h_bar, w_bar


def image_tokens(
    data_url: str, min_pixels: int, max_pixels: int, uploads: dict[str, bytes] | None = None
) -> int:
    if data_url.startswith("oss://"):
        data = (uploads or {})[data_url.removeprefix("oss://")]
    else:
        data = base64.b64decode(data_url.split(",", 1)[1] if data_url.startswith("data:") else "")
    with Image.open(BytesIO(data)) as image:
        h_bar, w_bar = smart_resize(image.height, image.width, min_pixels, max_pixels)
    return h_bar * w_bar // (32 * 32) + 2


class FakeDashScope:
    """The fake service; ``with FakeDashScope() as fake:`` runs it on a random port for the block."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        rpm: int | None = None,
        valid_keys: set[str] | None = None,
        record: bool = True,
    ) -> None:
        self.latency = latency
        self.rpm = rpm
        self.valid_keys = valid_keys
        self.record = record
        self.requests: list[Received] = []
        self.kv: dict[str, Any] = {}
        """Values the fake "reads" for key-information extraction; a key it lacks is answered null."""
        self.words = [dict(word) for word in DEFAULT_WORDS]
        self.text = DEFAULT_TEXT
        self.table = DEFAULT_TABLE
        """What table parsing answers (HTML in a fence, as the documentation's example)."""
        self.serves_logprobs = False
        """Answer a request for ``logprobs`` with them (a vLLM server), rather than ``null``."""
        self.doubt: dict[str, float] = {}
        """Substrings of an answer whose tokens get this log probability each (the rest are near certain)."""
        self._headers: dict[str, str] = {}
        self.echo_key_in_errors = False
        """Repeat the caller's key in error messages, as some services do, to test that it is scrubbed."""
        self._faults: deque[Fault] = deque()
        self._admitted: deque[float] = deque()
        self._lock = threading.Lock()
        self.batch = BatchService(self._batch_answer)
        self._server = _Server((host, port), _handler_for(self))
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def native_url(self) -> str:
        return f"{self.base_url}/api/v1"

    @property
    def compat_url(self) -> str:
        return f"{self.base_url}/compatible-mode/v1"

    def inject(self, kind: str, *, times: int = 1, seconds: float = 0.0) -> None:
        """Spend the next ``times`` requests on fault ``kind``."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(sorted(FAULTS))}")
        with self._lock:
            self._faults.extend(Fault(kind, seconds) for _ in range(times))

    def start(self) -> FakeDashScope:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-dashscope", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeDashScope:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the standalone process)."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    # The handler calls these; each returns (status, headers, body).
    def _admit(self) -> bool:
        if self.rpm is None:
            return True
        now = time.monotonic()
        with self._lock:
            while self._admitted and now - self._admitted[0] >= 60:
                self._admitted.popleft()
            if len(self._admitted) >= self.rpm:
                return False
            self._admitted.append(now)
            return True

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def handle(
        self, path: str, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, dict[str, str], dict]:
        native = path == NATIVE_PATH
        if self.record:
            with self._lock:
                self.requests.append(Received(path, headers, body, time.monotonic()))
        key = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not self._admit():
            return self._error("rate_limit", native, key)
        if not key or (self.valid_keys is not None and key not in self.valid_keys):
            return self._error("invalid_key", native, key)
        fault = self._next_fault()
        if fault and fault.kind in _ERRORS:
            return self._error(fault.kind, native, key)
        time.sleep(self.latency + (fault.seconds if fault and fault.kind == "slow" else 0.0))
        kind = fault.kind if fault else None
        self._headers = headers
        return self._native(body, kind) if native else self._compat(body, kind)

    def _batch_answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One batch line, answered as a live compatible-mode request is (queued faults included)."""
        if self.record:
            with self._lock:
                self.requests.append(Received(BATCH_LINE, {}, body, time.monotonic()))
        fault = self._next_fault()
        if fault and fault.kind in _ERRORS:
            status, _, payload = self._error(fault.kind, False, "")
            return status, payload
        status, _, payload = self._compat(body, fault.kind if fault else None)
        return status, payload

    def authorized(self, headers: dict[str, str]) -> bool:
        key = headers.get("authorization", "").removeprefix("Bearer ").strip()
        return bool(key) and (self.valid_keys is None or key in self.valid_keys)

    def route(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], Any]:
        """Files, Batches and uploads: (status, headers, JSON body or bytes)."""
        url = urlsplit(target)
        path, query = url.path.rstrip("/"), dict(parse_qsl(url.query))
        content_type = headers.get("content-type", "")
        if path == OSS_UPLOAD_PATH and method == "POST":
            return (*self._split(self.batch.store_upload(content_type, raw)),)
        if not self.authorized(headers):
            return self._error("invalid_key", not path.startswith(COMPAT_ROOT), "")
        if path == UPLOAD_POLICY_PATH and method == "GET" and query.get("action") == "getPolicy":
            return (*self._split(self.batch.upload_policy(self.base_url + OSS_UPLOAD_PATH)),)
        parts = path.removeprefix(COMPAT_ROOT).strip("/").split("/")
        batch = self.batch
        routes = {
            ("POST", "files", 1): lambda: batch.create_file(content_type, raw),
            ("GET", "files", 1): batch.list_files,
            ("GET", "files", 2): lambda: batch.file(parts[1]),
            ("GET", "files", 3): lambda: batch.file(parts[1], content=True),
            ("DELETE", "files", 2): lambda: batch.delete_file(parts[1]),
            ("POST", "batches", 1): lambda: batch.create_batch(json.loads(raw or b"{}")),
            ("GET", "batches", 1): lambda: batch.list_batches(query),
            ("GET", "batches", 2): lambda: batch.retrieve_batch(parts[1]),
            ("POST", "batches", 3): lambda: batch.cancel_batch(parts[1]),
        }
        handler = routes.get((method, parts[0], len(parts))) if path.startswith(COMPAT_ROOT) else None
        if handler is None:
            return 404, {}, {"code": "NotFound", "message": f"no route {method} {path}"}
        return (*self._split(handler()),)

    @staticmethod
    def _split(reply: tuple[int, Any]) -> tuple[int, dict[str, str], Any]:
        return reply[0], {}, reply[1]

    def _error(self, kind: str, native: bool, key: str) -> tuple[int, dict[str, str], dict]:
        status, native_code, compat_code, compat_type, message = _ERRORS[kind]
        if self.echo_key_in_errors:
            message = f"{message} Key: {key}"
        request_id = str(uuid.uuid4())
        if native:
            return status, {}, {"request_id": request_id, "code": native_code, "message": message}
        error = {"message": message, "type": compat_type, "param": None, "code": compat_code}
        return status, {}, {"error": error, "request_id": request_id}

    def _fill(self, template: Any) -> Any:
        if isinstance(template, dict):
            return {key: self._fill_key(key, value) for key, value in template.items()}
        if isinstance(template, list):
            return [self._fill(item) for item in template[:1]]
        return None

    def _fill_key(self, key: str, hint: Any) -> Any:
        if isinstance(hint, dict | list):
            return self._fill(hint)
        return self.kv.get(key)

    def _native(self, body: dict[str, Any], fault: str | None) -> tuple[int, dict[str, str], dict]:
        content = body["input"]["messages"][-1]["content"]
        ocr_options = (body.get("parameters") or {}).get("ocr_options") or {}
        task = ocr_options.get("task")
        images = [part for part in content if "image" in part]
        uploaded = [part["image"] for part in images if part["image"].startswith("oss://")]
        if uploaded and (
            self._headers.get("x-dashscope-ossresourceresolve") != "enable"
            or any(url.removeprefix("oss://") not in self.batch.uploads for url in uploaded)
        ):
            return 400, {}, {"code": "InvalidParameter", "message": "oss:// URL not resolvable"}
        tokens = sum(
            image_tokens(
                part["image"],
                part.get("min_pixels", 32 * 32 * 3),
                part.get("max_pixels", 32 * 32 * 8192),
                self.batch.uploads,
            )
            for part in images
        )
        part: dict[str, Any]
        if task == "advanced_recognition":
            boxes = [{"rotate_rect": word["rotate_rect"]} for word in self.words]
            part = {
                "text": f'```json\n[{{"pos_list": {json.dumps(boxes)}}}]```',
                "ocr_result": {"words_info": self.words},
            }
        elif task == "key_information_extraction":
            schema = (ocr_options.get("task_config") or {}).get("result_schema")
            kv = self._fill(schema) if schema else dict(self.kv)
            part = {
                "ocr_result": {"kv_result": kv},
                "text": "```json\n" + json.dumps(kv, ensure_ascii=False, indent=4) + "\n```",
            }
        else:
            part = {"text": self._plain_answer(task)}
        headers: dict[str, str] = {}
        if fault == "partial":
            part = {"text": part.get("text", "")[: max(1, len(part.get("text", "")) // 2)]}
            headers["X-DashScope-PartialResponse"] = "true"
        elif fault == "malformed":
            part = {"text": MALFORMED}
        output_tokens = len(part.get("text", "")) // 2 + 1
        usage = {
            "input_tokens": tokens + 33,
            "output_tokens": output_tokens,
            "total_tokens": tokens + 33 + output_tokens,
            "image_tokens": tokens,
            "input_tokens_details": {"text_tokens": 33, "image_tokens": tokens},
            "output_tokens_details": {"text_tokens": output_tokens},
        }
        message = {"role": "assistant", "content": [part]}
        output = {"choices": [{"finish_reason": "stop", "message": message}]}
        return 200, headers, {"output": output, "usage": usage, "request_id": str(uuid.uuid4())}

    def _plain_answer(self, task: str | None) -> str:
        return {
            "table_parsing": self.table,
            "document_parsing": DEFAULT_LATEX,
            "formula_recognition": DEFAULT_FORMULA,
        }.get(task or "", self.text)

    def _compat(self, body: dict[str, Any], fault: str | None) -> tuple[int, dict[str, str], dict]:
        content = body["messages"][-1]["content"]
        prompt = "".join(part.get("text", "") for part in content if part.get("type") == "text")
        images = [part for part in content if part.get("type") == "image_url"]
        tokens = sum(
            image_tokens(
                part["image_url"]["url"],
                part.get("min_pixels", 32 * 32 * 3),
                part.get("max_pixels", 32 * 32 * 8192),
            )
            for part in images
        )
        answer = self._compat_answer(prompt)
        headers: dict[str, str] = {}
        stream = bool(body.get("stream"))
        if fault == "partial":
            answer = answer[: max(1, len(answer) // 2)]
            if not stream:
                headers["X-DashScope-PartialResponse"] = "true"
        elif fault == "malformed":
            answer = MALFORMED
        prompt_tokens = tokens + len(prompt) // 2
        completion_tokens = len(answer) // 2 + 1
        doubts = _doubts(answer, self.doubt) if body.get("logprobs") and self.serves_logprobs else None
        if stream:
            usage = (body.get("stream_options") or {}).get("include_usage")
            return (
                200,
                headers,
                _chunks(
                    body.get("model"),
                    answer,
                    prompt_tokens,
                    completion_tokens,
                    usage,
                    fault != "partial",
                    doubts,
                ),
            )
        return (
            200,
            headers,
            {
                "id": f"chatcmpl-{uuid.uuid4()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "system_fingerprint": None,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                        "logprobs": _logprobs(answer, 0, doubts),
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                    "prompt_tokens_details": {"image_tokens": tokens, "text_tokens": len(prompt) // 2},
                    "completion_tokens_details": {"text_tokens": completion_tokens},
                },
            },
        )

    def _compat_answer(self, prompt: str) -> str:
        """The fake reads the prompt only as far as it must to answer in the right shape."""
        if "旋转矩形" in prompt or "rotated rectangle" in prompt:
            return "```json\n" + json.dumps(self.words, ensure_ascii=False) + "\n```"
        if "JSON" in prompt or "json" in prompt:
            start = prompt.find("{")
            schema = None
            if start >= 0:
                try:
                    schema, _ = json.JSONDecoder().raw_decode(prompt[start:])
                except ValueError:
                    schema = None
            kv = self._fill(schema) if isinstance(schema, dict) else dict(self.kv)
            return "```json\n" + json.dumps(kv, ensure_ascii=False, indent=4) + "\n```"
        if "HTML" in prompt:
            return self.table
        if "formula" in prompt:
            return DEFAULT_FORMULA
        if "LaTeX" in prompt:
            return DEFAULT_LATEX
        return self.text


@dataclass(frozen=True)
class EventStream:
    """Server-sent events to write; ``complete=False`` drops the connection after them."""

    events: list[dict[str, Any]]
    complete: bool


CERTAIN = -0.0001
"""The log probability of a token the fake does not doubt."""
_TOKEN = re.compile(r"[A-Za-z]+|\d{1,3}|.", re.DOTALL)


def _doubts(answer: str, doubt: dict[str, float]) -> dict[int, float]:
    """The answer's doubted character positions and the log probability of their tokens."""
    marks: dict[int, float] = {}
    for substring, logprob in doubt.items():
        start = answer.find(substring)
        while substring and start >= 0:
            marks.update(dict.fromkeys(range(start, start + len(substring)), logprob))
            start = answer.find(substring, start + 1)
    return marks


def _logprobs(piece: str, offset: int, doubts: dict[int, float] | None) -> dict[str, Any] | None:
    """A choice's ``logprobs`` for ``piece`` (at ``offset`` in the answer); ``None`` unless served."""
    if doubts is None:
        return None
    tokens = []
    for match in _TOKEN.finditer(piece):
        positions = range(offset + match.start(), offset + match.end())
        logprob = min((doubts[i] for i in positions if i in doubts), default=CERTAIN)
        spelt = match.group().encode()
        if match.group().isascii():
            tokens.append(_token(match.group(), logprob, spelt))
            continue
        for byte in spelt:  # a byte-level tokenizer spells a rare character byte by byte
            tokens.append(_token(f"bytes:\\x{byte:02x}", logprob / len(spelt), bytes([byte])))
    return {"content": tokens}


def _token(token: str, logprob: float, spelt: bytes) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(spelt), "top_logprobs": []}


def _chunks(
    model: Any,
    answer: str,
    prompt_tokens: int,
    completion_tokens: int,
    usage: bool,
    complete: bool,
    doubts: dict[int, float] | None,
) -> EventStream:
    chunk_id = f"chatcmpl-{uuid.uuid4()}"

    def chunk(delta: dict[str, Any], finish: str | None, start: int = 0) -> dict[str, Any]:
        choice = {"delta": delta, "finish_reason": finish, "index": 0}
        if delta.get("content"):
            choice["logprobs"] = _logprobs(delta["content"], start, doubts)
        return {
            "id": chunk_id,
            "choices": [choice],
            "object": "chat.completion.chunk",
            "model": model,
            "usage": None,
        }

    pieces = [answer[i : i + 16] for i in range(0, len(answer), 16)]
    events = [chunk({"content": "", "role": "assistant"}, None)]
    events += [chunk({"content": piece}, None, 16 * i) for i, piece in enumerate(pieces[:-1])]
    if not complete:
        return EventStream(events, complete=False)
    events.append(chunk({"content": pieces[-1] if pieces else ""}, "stop", 16 * (len(pieces) - 1)))
    if usage:
        totals = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        totals["total_tokens"] = prompt_tokens + completion_tokens
        events.append(
            {
                "id": chunk_id,
                "choices": [],
                "object": "chat.completion.chunk",
                "model": model,
                "usage": totals,
            }
        )
    return EventStream(events, complete=True)


def _handler_for(fake: FakeDashScope) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - the names http.server dispatches to
            self._route("GET")

        def do_DELETE(self) -> None:  # noqa: N802
            self._route("DELETE")

        def do_POST(self) -> None:  # noqa: N802
            if self.path not in (NATIVE_PATH, COMPAT_PATH):
                self._route("POST")
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, {}, {"code": "InvalidParameter", "message": "body is not JSON"})
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = fake.handle(self.path, headers, body)
            self._send(status, extra, payload)

        def _route(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = fake.route(method, self.path, headers, raw)
            self._send(status, extra, payload)

        def _send(self, status: int, headers: dict[str, str], payload: Any) -> None:
            if isinstance(payload, EventStream):
                self._stream(headers, payload)
                return
            if isinstance(payload, bytes):
                data, content_type = payload, "application/octet-stream"
            else:
                data, content_type = (
                    json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                    "application/json; charset=utf-8",
                )
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, headers: dict[str, str], stream: EventStream) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            for event in stream.events:
                self.wfile.write(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
                self.wfile.flush()
            if stream.complete:
                self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            """Quiet: the tests read ``fake.requests`` instead."""

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--rpm", type=int, default=None, help="requests per minute before 429s")
    parser.add_argument("--valid-key", action="append", dest="valid_keys", help="accept only these keys")
    args = parser.parse_args(argv)
    fake = FakeDashScope(
        host=args.host,
        port=args.port,
        latency=args.latency,
        rpm=args.rpm,
        valid_keys=set(args.valid_keys) if args.valid_keys else None,
        record=False,
    )
    print(f"fake DashScope: native {fake.native_url}  compatible {fake.compat_url}", flush=True)
    try:
        fake.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
