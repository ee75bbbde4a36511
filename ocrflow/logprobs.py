"""Token log probabilities: read from an OpenAI-compatible response, and mapped onto a value.

A server that returns them (vLLM does for the standard ``logprobs`` request parameter) says
how sure the model was of every token it wrote. :func:`value_logprob` finds the tokens that
spelt one extracted value in the answer and adds their log probabilities: the log of the
probability that the model wrote exactly that value there, evidence that
:mod:`ocrflow.confidence` weighs beside the other readings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from itertools import accumulate
from typing import Any

from ocrflow.models import OcrResult, TokenLogprob


def carried_logprobs(choice_logprobs: Mapping[str, Any] | None) -> tuple[TokenLogprob, ...] | None:
    """The pieces of a choice's ``logprobs`` object (``{"content": [...]}``); ``None`` when it has none."""
    if not choice_logprobs or choice_logprobs.get("content") is None:
        return None
    return join_tokens(choice_logprobs["content"])


def join_tokens(content: Iterable[Mapping[str, Any]]) -> tuple[TokenLogprob, ...]:
    """Tokens as pieces of text: bytes that split a UTF-8 character are joined into one piece.

    A token's ``bytes`` are what it spelt (its ``token`` string cannot show half a character);
    without them the ``token`` string is taken as written.
    """
    pieces: list[TokenLogprob] = []
    pending, logprob = b"", 0.0
    for token in content:
        raw = token.get("bytes")
        pending += bytes(raw) if raw is not None else str(token.get("token", "")).encode()
        logprob += float(token.get("logprob", 0.0))
        try:
            text = pending.decode()
        except UnicodeDecodeError:
            continue  # the rest of this character comes with the next token
        pieces.append(TokenLogprob(token=text, logprob=logprob))
        pending, logprob = b"", 0.0
    if pending:
        pieces.append(TokenLogprob(token=pending.decode(errors="replace"), logprob=logprob))
    return tuple(pieces)


def value_logprob(result: OcrResult, value: str, *, key: str | None = None) -> float | None:
    """The summed log probability of the tokens that spelt ``value`` in ``result``'s answer.

    ``None`` when the response carried no log probabilities or the answer does not hold the
    value as written (plain or JSON-escaped). With ``key``, the first spelling after the JSON
    key ``"key"`` counts; otherwise, where the answer holds the value more than once, the
    least probable spelling does. A token only partly inside the value (``"99`` holding the
    quote) counts whole.
    """
    if not result.logprobs or not value:
        return None
    text = "".join(piece.token for piece in result.logprobs)
    ends = list(accumulate(len(piece.token) for piece in result.logprobs))
    spans = _spellings(text, value)
    if key is not None:
        at = text.find(json.dumps(key, ensure_ascii=False))
        after = [span for span in spans if at >= 0 and span[0] > at]
        spans = after[:1] or spans
    if not spans:
        return None
    return min(_span_logprob(result.logprobs, ends, start, end) for start, end in spans)


def value_probability(result: OcrResult, value: str, *, key: str | None = None) -> float | None:
    """:func:`value_logprob` as a probability in [0, 1]."""
    logprob = value_logprob(result, value, key=key)
    return None if logprob is None else math.exp(logprob)


def _spellings(text: str, value: str) -> list[tuple[int, int]]:
    forms = {value, json.dumps(value, ensure_ascii=False)[1:-1]}
    spans = []
    for form in forms:
        start = text.find(form)
        while start >= 0:
            spans.append((start, start + len(form)))
            start = text.find(form, start + 1)
    return sorted(spans)


def _span_logprob(pieces: tuple[TokenLogprob, ...], ends: list[int], start: int, end: int) -> float:
    return sum(
        piece.logprob
        for piece, piece_end in zip(pieces, ends, strict=True)
        if piece_end > start and piece_end - len(piece.token) < end
    )
