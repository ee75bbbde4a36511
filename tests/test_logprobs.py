"""Token log probabilities: asked for where documented, kept when an answer carries them, mapped onto values.

Through the real ``openai`` SDK against the loopback fake, which serves them like vLLM when
told to (``serves_logprobs``) and answers ``"logprobs": null`` otherwise, as DashScope does.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image

from ocrflow.engines.openai_compat import OpenAICompatEngine
from ocrflow.logprobs import join_tokens, value_logprob, value_probability
from ocrflow.models import OcrResult, OcrTask, TokenLogprob
from ocrflow.settings import OpenAIOptions
from tests import reference
from tests.fake_dashscope import CERTAIN

RECEIPT = {"company": "华联超市 SDN BHD", "date": "25/12/2018", "address": "NO 5, JALAN 3", "total": "99.00"}
DOUBT = -1.5


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-logprobs-0123456789")


@pytest.fixture
def page(tmp_path: Path) -> Path:
    path = tmp_path / "page.png"
    Image.new("RGB", (640, 480), "white").save(path)
    return path


def read_receipt(fake, page: Path, doctypes, **options) -> OcrResult:
    fake.kv = dict(RECEIPT)
    engine = OpenAICompatEngine(OpenAIOptions(base_url=fake.compat_url, **options))
    return engine.recognize(page, OcrTask.KEY_INFORMATION_EXTRACTION, doctype=doctypes["receipt"])


def test_a_self_hosted_server_is_asked_and_its_logprobs_give_each_value_a_probability(
    fake_dashscope, page, doctypes
):
    fake_dashscope.serves_logprobs = True
    fake_dashscope.doubt = {"99.00": DOUBT}
    result = read_receipt(fake_dashscope, page, doctypes)

    assert fake_dashscope.requests[-1].body["logprobs"] is True
    assert result.logprobs is not None
    # The pieces spell the answer exactly, the Chinese name's bytes joined back into characters.
    assert "".join(piece.token for piece in result.logprobs) == result.text
    assert "华" in [piece.token for piece in result.logprobs]
    # "99.00" was written as three doubted tokens ("99", ".", "00"); the date as near-certain ones.
    assert value_logprob(result, "99.00", key="total") == pytest.approx(3 * DOUBT)
    assert value_probability(result, "25/12/2018", key="date") > 0.99
    assert value_probability(result, "华联超市 SDN BHD", key="company") > 0.99
    assert value_logprob(result, "not in the answer") is None


def test_streamed_answers_carry_their_logprobs_too(fake_dashscope, page, doctypes):
    fake_dashscope.serves_logprobs = True
    fake_dashscope.doubt = {"25/12/2018": DOUBT}
    result = read_receipt(fake_dashscope, page, doctypes, stream="always")

    assert fake_dashscope.requests[-1].body["stream"] is True
    assert "".join(piece.token for piece in result.logprobs) == result.text
    assert value_probability(result, "25/12/2018", key="date") < math.exp(DOUBT)
    assert value_probability(result, "99.00", key="total") > 0.99


def test_an_answer_without_logprobs_is_recorded_as_such(fake_dashscope, page, doctypes):
    # Asked, but the server answers "logprobs": null: nothing is made up.
    result = read_receipt(fake_dashscope, page, doctypes)

    assert fake_dashscope.requests[-1].body["logprobs"] is True
    assert result.logprobs is None
    assert result.key_values["total"] == "99.00"
    assert value_logprob(result, "99.00", key="total") is None


def test_not_asked_when_switched_off(fake_dashscope, page, doctypes):
    fake_dashscope.serves_logprobs = True
    result = read_receipt(fake_dashscope, page, doctypes, logprobs="never")

    assert "logprobs" not in fake_dashscope.requests[-1].body
    assert result.logprobs is None


def test_dashscope_is_not_asked_unless_told_to(page):
    # The reference shows Qwen-OCR's answers with "logprobs": null and documents no request for them.
    assert '"logprobs": null' in reference.text(reference.QWEN_OCR)
    hosted = OpenAICompatEngine(OpenAIOptions())
    (request,) = hosted.plan([page], OcrTask.TEXT_RECOGNITION)
    assert "logprobs" not in hosted.request_body(request.pages, OcrTask.TEXT_RECOGNITION, None)

    told = OpenAICompatEngine(OpenAIOptions(logprobs="always"))
    assert told.request_body(request.pages, OcrTask.TEXT_RECOGNITION, None)["logprobs"] is True
    # A cached answer read without logprobs does not stand in for one asked with them.
    assert told.request_fingerprint(OcrTask.TEXT_RECOGNITION) != hosted.request_fingerprint(
        OcrTask.TEXT_RECOGNITION
    )


def test_a_value_written_twice_counts_where_its_key_is_or_else_at_its_least_probable():
    pieces = ('{"subtotal": "', "9", "9", '", "total": "', "9", "9", '"}')
    logprobs = (0.0, -0.1, -0.1, 0.0, -2.0, -2.0, 0.0)
    result = OcrResult(
        engine="openai",
        model="m",
        task=OcrTask.KEY_INFORMATION_EXTRACTION,
        page_number=1,
        logprobs=tuple(TokenLogprob(token=t, logprob=lp) for t, lp in zip(pieces, logprobs, strict=True)),
    )
    assert value_logprob(result, "99", key="subtotal") == pytest.approx(-0.2)
    assert value_logprob(result, "99", key="total") == pytest.approx(-4.0)
    assert value_logprob(result, "99") == pytest.approx(-4.0)


def test_bytes_of_one_character_split_over_tokens_are_joined():
    spelt = "华".encode()
    tokens = [{"token": "x", "bytes": [byte], "logprob": -0.5} for byte in spelt]
    assert join_tokens([{"token": "A", "bytes": None, "logprob": CERTAIN}, *tokens]) == (
        TokenLogprob(token="A", logprob=CERTAIN),
        TokenLogprob(token="华", logprob=-1.5),
    )
