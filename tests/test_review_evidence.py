"""What the item page shows about a field: where its value is printed, and both readings of it."""

from __future__ import annotations

from ocrflow.models import (
    DocumentResult,
    FieldBox,
    FieldError,
    FieldEvidence,
    FieldResult,
    Grounding,
    OcrLine,
    PageResult,
    Status,
)
from ocrflow.review.evidence import highlights, located, readings


def _box(top: float) -> list[list[float]]:
    return [[10, top], [300, top], [300, top + 20], [10, top + 20]]


def _result(**fields: FieldResult) -> DocumentResult:
    page_one = [OcrLine(text="TOTAL RM 9.00", box=_box(10), score=0.9)]
    page_two = [
        OcrLine(text="LOT 5, JALAN BUNGA RAYA,", box=_box(40), score=0.9),
        OcrLine(text="TAMAN BAHAGIA,", box=_box(70), score=0.9),
        OcrLine(text="RM", box=_box(100), score=0.9),
        OcrLine(text="TOTAL RM 25.00", box=_box(130), score=0.9),
    ]
    return DocumentResult(
        document_id="d" * 64,
        source="/in/receipt.pdf",
        doc_type="receipt",
        status=Status.NEEDS_REVIEW,
        fields=fields,
        pages=[
            PageResult(page_number=1, width=400, height=300, lines=page_one),
            PageResult(page_number=2, width=400, height=300, lines=page_two),
        ],
    )


def test_a_result_without_boxes_is_located_in_the_stored_lines_of_its_page():
    total = FieldResult(value="25.00", raw="RM 25.00", page=2)
    address = FieldResult(
        value="LOT 5, JALAN BUNGA RAYA, TAMAN BAHAGIA", raw="LOT 5, JALAN BUNGA RAYA, TAMAN BAHAGIA", page=2
    )
    result = _result(total=total, address=address)
    assert [(b.page, b.line) for b in located(total, result)] == [(2, "TOTAL RM 25.00")]
    # Over two lines; the stray "RM" line is not part of it.
    assert [b.line for b in located(address, result)] == ["LOT 5, JALAN BUNGA RAYA,", "TAMAN BAHAGIA,"]
    assert located(FieldResult(value="9.00", raw="9.00", page=2), result) == []  # not on its page


def test_an_api_result_without_lines_of_its_own_is_located_in_the_independent_reading():
    total = FieldResult(value="25.00", raw="RM 25.00", page=2)
    result = _result(total=total)
    answered = [
        page.model_copy(update={"lines": [], "independent_lines": page.lines}) for page in result.pages
    ]
    assert [(b.page, b.line) for b in located(total, result.model_copy(update={"pages": answered}))] == [
        (2, "TOTAL RM 25.00")
    ]


def test_own_boxes_and_the_independent_readings_boxes_are_highlighted_on_their_pages():
    where = FieldBox(page=1, box=_box(10), line="TOTAL RM 9.00")
    evidence = FieldEvidence(outcome=Grounding.NEAR, reading="9.00", boxes=[where])
    result = _result(total=FieldResult(value="8.00", raw="8.00", page=1, boxes=[where], evidence=evidence))
    shown = highlights(result)
    assert sorted(h.kind for h in shown[1]) == ["engine", "independent"] and 2 not in shown
    assert shown[1][0].points == "10,10 300,10 300,30 10,30"


def test_both_readings_with_the_differing_characters_and_the_offer():
    evidence = FieldEvidence(
        outcome=Grounding.NEAR, reader="local:PP-OCRv5", reading="RM 25.00", differs_at=[1]
    )
    disagree = [FieldError(code="readings_disagree", message="total: the model read 28.00; ...")]
    near = FieldResult(value="28.00", evidence=evidence, errors=disagree, candidates=["25.00"])
    both = readings(near, "openai:qwen-vl-ocr")
    assert both["marked"][:2] == [("2", False), ("8", True)] and both["offer"] == "25.00"
    assert both["engine"] == "openai:qwen-vl-ocr" and not both["grounded"]
    # A subtotal given as the total: printed (grounded), but not where the total is.
    printed = FieldEvidence(outcome=Grounding.GROUNDED, reading="8.98")
    swapped = FieldResult(value="8.98", evidence=printed, errors=disagree, candidates=["9.00"])
    assert readings(swapped, None)["offer"] == "9.00" and not readings(swapped, None)["grounded"]
    agreeing = FieldResult(value="25.00", evidence=FieldEvidence(outcome=Grounding.GROUNDED, reading="25.00"))
    assert readings(agreeing, None)["offer"] is None and readings(agreeing, None)["grounded"]
    assert readings(FieldResult(value="25.00", evidence=FieldEvidence()), None) is None  # unverified
    assert readings(FieldResult(value="25.00"), None) is None
