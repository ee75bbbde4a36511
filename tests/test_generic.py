"""Pages that match no type: type detection on evidence, the generic outcome, text in reading order."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw, ImageFont

from ocrflow.detect import detect_doctype, score_types
from ocrflow.generic import GENERIC, extract_generic, key_values, tables
from ocrflow.layout import rows
from ocrflow.models import OcrLine, Status
from ocrflow.pipeline import Context, process_document
from ocrflow.routing import build_result
from tests.conftest import one_page_ingest, text_reading


@pytest.fixture
def ctx(settings, engine) -> Context:
    return Context(settings, given_engine=engine)


def _cell(text: str, x: float, y: float, width: float = 150, score: float = 0.98) -> OcrLine:
    return OcrLine(text=text, box=[[x, y], [x + width, y], [x + width, y + 20], [x, y + 20]], score=score)


CONTRACT = [
    "MUTUAL NON-DISCLOSURE AGREEMENT",
    "This Agreement is entered into as of the Effective Date by and between the parties below.",
    "1. The Receiving Party shall hold the Confidential Information in strict confidence and",
    "shall not disclose the total or any part of it to any third party without prior consent.",
    "2. Nothing in this Agreement obliges either party to pay any invoice or amount of cash.",
    "3. This Agreement is governed by the laws of the State of Delaware, USA.",
    "Date: 12/03/2019",
    "Signed for and on behalf of ACME TRADING SDN BHD",
]


def test_a_contract_with_receipt_words_is_not_a_receipt(doctypes):
    # Keywords alone (TOTAL, CASH, INVOICE, SDN BHD) once made this a receipt.
    page = text_reading(*(_cell(text, 10, 30 * i, width=900) for i, text in enumerate(CONTRACT)))
    name, reason = detect_doctype([page], doctypes)
    assert name is None and reason.code == "unknown_doc_type"
    receipt = next(s for s in score_types([page], doctypes) if s.name == "receipt")
    assert receipt.keywords > 0.3 and receipt.layout < 0.2  # words say receipt, the page does not


def test_key_values_and_tables_are_found_where_printed_and_nothing_else():
    page = text_reading(
        _cell("Name: Jane Roe", 10, 0),
        _cell("Period:", 10, 40),
        _cell("Q3 2019", 200, 40),
        _cell("Item", 10, 100),
        _cell("Qty", 200, 100),
        _cell("Price", 400, 100),
        _cell("Paper", 10, 130),
        _cell("4", 200, 130),
        _cell("12.00", 400, 130),
        _cell("Ink", 10, 160),
        _cell("2", 200, 160),
        _cell("30.00", 400, 160),
        _cell("This closing sentence has no label and belongs to no table.", 10, 220, width=600),
    )
    rows_ = rows([page])
    assert [(p["key"], p["value"]) for p in key_values(rows_)] == [
        ("Name", "Jane Roe"),
        ("Period", "Q3 2019"),
    ]
    (table,) = tables(rows_)
    assert table["rows"] == [["Item", "Qty", "Price"], ["Paper", "4", "12.00"], ["Ink", "2", "30.00"]]
    extraction = extract_generic([page])
    assert extraction.doc_type == GENERIC
    assert set(extraction.fields) == {"key_values", "tables"}  # no field is invented
    assert set(extract_generic([text_reading(_cell("just a line of text", 10, 0))]).fields) == set()


def test_text_is_written_in_reading_order():
    # RapidOCR returns pieces of one printed line apart ("We may" after the rest of it).
    page = text_reading(
        _cell("operations used by the algorithm.", 120, 0, width=300), _cell("We may", 10, 2, width=100)
    )
    ingested = one_page_ingest("l", width=500, height=40)
    result = build_result(ingested, list(ingested.pages), [page], None, Status.NEEDS_REVIEW, [])
    assert result.text == "We may operations used by the algorithm."


def test_a_page_of_prose_ends_as_a_generic_document(ctx, tmp_path):
    font = ImageFont.load_default(size=22)
    image = Image.new("RGB", (1400, 40 * len(CONTRACT) + 60), "white")
    draw = ImageDraw.Draw(image)
    for i, text in enumerate(CONTRACT):
        draw.text((30, 30 + 40 * i), text, fill="black", font=font)
    image.save(tmp_path / "nda.png")

    result = process_document(ctx, tmp_path / "nda.png")

    assert result.doc_type == GENERIC
    assert result.status is Status.ACCEPTED
    assert [r.code for r in result.reasons] == [GENERIC]
    assert "matches no document type" in result.reasons[0].message
    assert "total" not in result.fields  # no receipt field on a contract
    assert result.text.splitlines()[0] == "MUTUAL NON-DISCLOSURE AGREEMENT"
