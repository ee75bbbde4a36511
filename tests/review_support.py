"""Queue fixtures shared by the review tests: stores on SQLite and PostgreSQL, queued documents."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ocrflow.models import DocumentResult, FieldError, FieldResult, OcrLine, PageResult, Reason, Stage, Status

CARD = "6222020200112233445"  # fails Luhn; "6222020200112233446" passes


def document_id(n: int) -> str:
    return hashlib.sha256(f"document {n}".encode()).hexdigest()


def needs_review(n: int, source: Path | None = None, **fields: FieldResult) -> DocumentResult:
    """A bank-card document with a misread number, routed to review."""
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
        "bank_name": FieldResult(value="中国工商银行", confidence=0.99),
    }
    reason = Reason(
        stage=Stage.VALIDATE,
        code="invalid_checksum",
        message="Card number 6222***3445: the check digit is wrong",
        field="card_number",
    )
    return DocumentResult(
        document_id=document_id(n),
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
