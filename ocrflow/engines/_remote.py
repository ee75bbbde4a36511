"""What the two API engines share: finding the API key and translating HTTP failures.

The key is looked up when a call is made, never at import, and is kept out of every
message: :func:`redact` scrubs it from anything a vendor echoes back. Failures are
classified by HTTP status and the vendor's ``code`` field, never by message text:

======================================  ==========================================
429                                     ``TransientError`` ``rate_limited``
5xx, 408                                ``TransientError`` ``server_error`` / ``timeout``
401                                     ``EngineError`` ``invalid_api_key``
403                                     ``EngineError`` ``access_denied``
400 ``DataInspectionFailed``            ``EngineError`` ``content_refused``
400 ``Arrearage``                       ``EngineError`` ``account_in_arrears``
404                                     ``EngineError`` ``model_not_found``
other 4xx                               ``EngineError`` ``bad_request``
======================================  ==========================================

Transport failures are transient too: the engines raise ``timeout`` and
``connection_error`` where they catch their SDK's exceptions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx

from ocrflow.errors import EngineError, OcrflowError, TransientError

PARTIAL_RESPONSE_HEADER = "x-dashscope-partialresponse"
"""DashScope sets it to ``true`` when it cut the model off at the 180 s limit and sent what there was."""

_CONTENT_REFUSED = {"datainspectionfailed", "data_inspection_failed"}
_ARREARS = {"arrearage"}
_DETAIL_CHARS = 200


@dataclass(frozen=True)
class KeySource:
    """Where an engine's API key comes from, as the user would name it in an error message."""

    env: str
    secret_block: str | None

    def describe(self) -> str:
        block = f" or the Prefect Secret block '{self.secret_block}'" if self.secret_block else ""
        return f"set {self.env}{block}"


def resolve_api_key(source: KeySource) -> str | None:
    """The key from the environment, else from the Prefect Secret block; ``None`` when neither has one."""
    key = os.environ.get(source.env, "").strip()
    if key or not source.secret_block:
        return key or None
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(source.secret_block).get()
    except (ValueError, OSError, httpx.HTTPError):
        # A missing block (ValueError) or no reachable Prefect API: the caller reports "no key".
        return None
    return str(value).strip() or None


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def status_error(
    status: int,
    vendor_code: str | None,
    *,
    service: str,
    keys: KeySource,
    model: str,
    page: str,
    detail: str = "",
) -> OcrflowError:
    """The ocrflow error for an HTTP failure ``status`` with the vendor's error ``vendor_code``."""
    code = (vendor_code or "").strip()
    label = f"HTTP {status} {code}".strip()
    said = f": {detail[:_DETAIL_CHARS]}" if detail else ""
    if status == 429:
        return TransientError(f"{service} is rate limiting requests ({label}) on {page}", code="rate_limited")
    if status == 408:
        return TransientError(f"{service} timed out ({label}) on {page}", code="timeout")
    if status >= 500:
        return TransientError(f"{service} failed ({label}) on {page}{said}", code="server_error")
    if status == 401:
        return EngineError(
            f"{service} rejected the API key ({label}); {keys.describe()}", code="invalid_api_key"
        )
    if status == 403:
        return EngineError(
            f"{service} denied access ({label}); check that the key in {keys.env} belongs to this region and "
            f"workspace and may use model {model!r}",
            code="access_denied",
        )
    if code.lower() in _CONTENT_REFUSED:
        return EngineError(
            f"{service}'s content moderation refused {page} ({label}); a person must review this document, "
            "trying again will not help",
            code="content_refused",
        )
    if code.lower() in _ARREARS:
        return EngineError(
            f"{service} refused the call because the account has an overdue payment ({label}); "
            "settle it in the Alibaba Cloud console",
            code="account_in_arrears",
        )
    if status == 404:
        return EngineError(
            f"{service} does not know model {model!r} ({label}); check the model name", code="model_not_found"
        )
    return EngineError(
        f"{service} rejected the request for {page} as invalid ({label}){said}; "
        f"check model {model!r} and the pixel settings",
        code="bad_request",
    )
