"""Queue fixtures shared by the review tests: stores on SQLite and PostgreSQL, queued documents."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from ocrflow.models import DocumentResult, FieldError, FieldResult, OcrLine, PageResult, Reason, Stage, Status
from ocrflow.store import now

CARD = "6222020200112233445"  # fails Luhn; "6222020200112233446" passes
VALID_CARD = "6222020200112233446"


class Clock:
    """A clock the test moves by hand, so a lease can run out without waiting."""

    def __init__(self) -> None:
        self.current = now()

    def __call__(self):
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


def document_id(n: int) -> str:
    return hashlib.sha256(f"document {n}".encode()).hexdigest()


def needs_review(
    n: int, source: Path | None = None, doc_id: str | None = None, **fields: FieldResult
) -> DocumentResult:
    """A bank-card document with a misread number, routed to review (``doc_id``: a real file's hash)."""
    fields = fields or {
        "card_number": FieldResult(
            value=CARD,
            confidence=0.97,
            errors=[
                FieldError(
                    code="invalid_checksum", message="Card number 6222***3445: the check digit is wrong"
                )
            ],
        ),
        "bank": FieldResult(value="中国工商银行", confidence=0.99),
    }
    reason = Reason(
        stage=Stage.VALIDATE,
        code="invalid_checksum",
        message="Card number 6222***3445: the check digit is wrong",
        field="card_number",
    )
    return DocumentResult(
        document_id=doc_id or document_id(n),
        source=str(source or f"/in/card-{n}.png"),
        doc_type="bank_card",
        status=Status.NEEDS_REVIEW,
        reasons=[reason],
        fields=fields,
        text=f"中国工商银行\n{CARD}",
        pages=[
            PageResult(
                page_number=1,
                width=400,
                height=250,
                lines=[OcrLine(text=CARD, box=[[40, 120], [360, 120], [360, 150], [40, 150]], score=0.97)],
            )
        ],
        engine="rapidocr:PP-OCRv5",
    )


def untyped(n: int, source: Path | None = None) -> DocumentResult:
    """A document the machine could not type; its stored reading holds a valid bank card's lines."""
    lines = [
        OcrLine(text="中国工商银行", box=[[40, 30], [200, 30], [200, 60], [40, 60]], score=0.99),
        OcrLine(text=VALID_CARD, box=[[40, 120], [360, 120], [360, 150], [40, 150]], score=0.98),
    ]
    reason = Reason(
        stage=Stage.EXTRACT,
        code="unknown_doc_type",
        message="could not tell what kind of document this is; choose its type in review",
    )
    return needs_review(n, source=source).model_copy(
        update={
            "doc_type": None,
            "fields": {},
            "reasons": [reason],
            "pages": [PageResult(page_number=1, width=400, height=250, lines=lines)],
        }
    )


def untyped_from_an_api_engine(n: int) -> DocumentResult:
    """:func:`untyped` as an API engine left it: fields only, the page's lines the independent reading's."""
    document = untyped(n)
    page = document.pages[0]
    reading = page.model_copy(update={"lines": [], "independent_lines": page.lines})
    return document.model_copy(update={"engine": "dashscope:qwen-vl-ocr", "pages": [reading]})


@contextmanager
def live_server(app):
    """The app under uvicorn on a free loopback port, in a thread, for one test."""
    import uvicorn

    from ocrflow.review.app import server_config

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the review app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def sign_in(client, base: str, username: str = "alice", password: str = "correct horse") -> None:
    """Sign ``client`` (an httpx.Client) in through the login form, as a browser would."""
    page = client.get(f"{base}/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post(
        f"{base}/login", data={"csrf_token": token, "username": username, "password": password}
    )
    assert response.status_code == 303 and response.headers["location"] == "/", response.text
