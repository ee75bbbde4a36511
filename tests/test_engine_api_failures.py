"""How both API engines fail: the same promises through the DashScope SDK and the OpenAI SDK.

Each test runs against the fake's native mode (the dashscope engine) and its compatible mode
(the openai engine).
"""

from __future__ import annotations

import pytest

from ocrflow.engines._api import ApiEngine
from ocrflow.engines.dashscope import DashScopeEngine
from ocrflow.engines.openai_compat import OpenAICompatEngine
from ocrflow.errors import EngineError, TransientError, is_retryable
from ocrflow.models import OcrTask
from ocrflow.settings import DashScopeOptions, OpenAIOptions
from tests.conftest import blank_page
from tests.fake_dashscope import MALFORMED

KEY = "sk-test-failures-0123456789"
UNREACHABLE = "http://127.0.0.1:9"
"""Nothing listens on the discard port."""


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)


@pytest.fixture(params=["dashscope", "openai"])
def kind(request) -> str:
    return request.param


def api_engine(kind: str, fake=None, **options) -> ApiEngine:
    """The ``kind`` engine pointed at the fake's matching mode, or at a port nobody listens on."""
    if kind == "dashscope":
        url = fake.native_url if fake else f"{UNREACHABLE}/api/v1"
        return DashScopeEngine(DashScopeOptions(base_url=url, **options))
    url = fake.compat_url if fake else f"{UNREACHABLE}/compatible-mode/v1"
    return OpenAICompatEngine(OpenAIOptions(base_url=url, **options))


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("rate_limit", TransientError, "rate_limited"),
        ("server_error", TransientError, "server_error"),
        ("invalid_key", EngineError, "invalid_api_key"),
        ("forbidden", EngineError, "access_denied"),
        ("content_refused", EngineError, "content_refused"),
        ("bad_request", EngineError, "bad_request"),
        ("partial", TransientError, "partial_response"),
    ],
)
def test_errors_are_translated_by_status_and_code(fake_dashscope, tmp_path, kind, fault, error, code):
    fake_dashscope.inject(fault)
    with pytest.raises(error) as caught:
        api_engine(kind, fake_dashscope).recognize(
            blank_page(tmp_path), OcrTask.TEXT_RECOGNITION, page_number=3
        )
    assert caught.value.code == code
    assert is_retryable(caught.value) is (error is TransientError)
    assert len(fake_dashscope.requests) == 1  # neither the engine nor the SDK retries: Prefect does


def test_invalid_key_names_what_to_fix(fake_dashscope, tmp_path, kind):
    fake_dashscope.inject("invalid_key")
    with pytest.raises(
        EngineError, match="DASHSCOPE_API_KEY or the Prefect Secret block 'dashscope-api-key'"
    ):
        api_engine(kind, fake_dashscope).recognize(blank_page(tmp_path), OcrTask.TEXT_RECOGNITION)


def test_a_slow_answer_times_out_as_transient(fake_dashscope, tmp_path, kind):
    fake_dashscope.inject("slow", seconds=3)
    with pytest.raises(TransientError) as caught:
        api_engine(kind, fake_dashscope, timeout_seconds=0.5).recognize(
            blank_page(tmp_path), OcrTask.TEXT_RECOGNITION
        )
    assert caught.value.code == "timeout"


def test_an_unreachable_service_is_transient(tmp_path, kind):
    with pytest.raises(TransientError) as caught:
        api_engine(kind).recognize(blank_page(tmp_path), OcrTask.TEXT_RECOGNITION)
    assert caught.value.code == "connection_error"


def test_malformed_output_keeps_the_raw_text(fake_dashscope, tmp_path, doctypes, kind):
    fake_dashscope.inject("malformed")
    result = api_engine(kind, fake_dashscope).recognize(
        blank_page(tmp_path), OcrTask.KEY_INFORMATION_EXTRACTION, doctype=doctypes["invoice"]
    )
    assert result.key_values is None and result.text == MALFORMED
