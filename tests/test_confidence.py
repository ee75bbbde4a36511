"""Field confidence is made from evidence in one place; each piece of evidence moves it its way."""

from __future__ import annotations

import math

import pytest

from ocrflow.confidence import (
    OWN_PRIOR_WRONG,
    checks_passed,
    own_kind,
    weigh_api_field,
    weigh_fields,
    weigh_own_field,
)
from ocrflow.doctypes import load_doctypes
from ocrflow.extract import extract
from ocrflow.models import (
    FieldEvidence,
    FieldResult,
    Grounding,
    OcrLine,
    OcrResult,
    OcrTask,
    TokenLogprob,
    Usage,
)
from tests.test_verify import reading

DOCTYPES = load_doctypes()


def confidence(outcome: Grounding, agreement: bool | None = None, checks=None, logprob=None, score=0.99):
    evidence = FieldEvidence(outcome=outcome, reader_score=score)
    return weigh_api_field(evidence, checks or {}, agreement, logprob)[0]


def test_grounding_and_agreement_raise_confidence_and_disagreement_lowers_it():
    grounded = confidence(Grounding.GROUNDED)
    assert confidence(Grounding.GROUNDED, agreement=True) > grounded > confidence(Grounding.UNVERIFIED)
    assert confidence(Grounding.GROUNDED, agreement=False) < grounded
    assert grounded > confidence(Grounding.NOT_FOUND) and confidence(Grounding.NOT_FOUND) < 0.9
    # A near reading by an unsure reader is its own misread as often as the model's.
    assert confidence(Grounding.NEAR, score=0.6) > confidence(Grounding.NEAR, score=0.99)


def test_a_passed_checksum_is_strong_evidence_and_a_pattern_weak():
    card = DOCTYPES["bank_card"].fields["card_number"]
    assert checks_passed("6222021234567894", card) == {"checksum": 1.0}
    assert checks_passed("6222021234567895", card) == {}
    base = confidence(Grounding.UNVERIFIED)
    assert confidence(Grounding.UNVERIFIED, checks={"checksum": 1.0}) - base > 5 * (
        confidence(Grounding.UNVERIFIED, checks={"pattern": 1.0}) - base
    )


def test_the_models_probability_replaces_the_prior_and_every_factor_is_recorded():
    sure = confidence(Grounding.UNVERIFIED, logprob=0.999)
    assert sure > confidence(Grounding.UNVERIFIED) > confidence(Grounding.UNVERIFIED, logprob=0.3)
    _, evidence = weigh_api_field(
        FieldEvidence(outcome=Grounding.GROUNDED, reader_score=0.97), {"pattern": 1.0}, True, 0.9
    )
    assert evidence.factors == {
        "prior": 0.9,
        "logprob": 0.9,
        "grounding": 1.0,
        "reader_score": 0.97,
        "agreement": 1.0,
        "pattern": 1.0,
    }


def test_the_embedded_engines_confidence_stays_its_ocr_score():
    located = FieldEvidence(outcome=Grounding.NEAR)
    value, evidence = weigh_own_field(0.93, located)
    assert value == 0.93 and evidence.factors == {"ocr_score": 0.93, "grounding": 0.0}


def test_a_receipt_field_of_the_embedded_engine_is_weighed_by_what_its_extraction_saw():
    fields = DOCTYPES["receipt"].fields
    assert {name: own_kind(spec) for name, spec in fields.items()} == {
        "company": "receipt_name",
        "date": "receipt_date",
        "address": "receipt_address",
        "total": "receipt_total",
    }
    located = FieldEvidence(outcome=Grounding.GROUNDED)

    def address(score: float, plain: float = 1.0, closed: float = 1.0) -> float:
        seen = {"ocr_score": score, "plain": plain, "closed": closed}
        return weigh_own_field(score, located, seen, "receipt_address")[0]

    # An address read at 0.99 is right more often than one at 0.97, which is wrong more often
    # than right: the OCR score itself is not the probability.
    assert address(0.99) > address(0.97) > address(0.90)
    assert address(0.97) < 0.5
    assert address(0.99, plain=0.0) < address(0.99)  # a trace of a misread (a digit inside a word)
    assert address(0.99, closed=0.0) < address(0.99)  # no postcode ends it
    _, evidence = weigh_own_field(
        0.99, located, {"ocr_score": 0.99, "plain": 1.0, "closed": 1.0}, "receipt_address"
    )
    assert evidence.factors == {
        "prior": round(1 - OWN_PRIOR_WRONG["receipt_address"], 4),
        "ocr_score": 0.99,
        "plain": 1.0,
        "closed": 1.0,
        "ocr_band": 1.0,
        "grounding": 1.0,
    }
    # A total that tendered minus change confirms is surer than one nothing confirms; a name
    # marked by its legal form surer than one only taken for the first name-like row.
    total = {"ocr_score": 0.96}
    assert (
        weigh_own_field(0.96, located, {**total, "paid": 1.0}, "receipt_total")[0]
        > weigh_own_field(0.96, located, {**total, "paid": 0.0}, "receipt_total")[0]
    )
    name = {"ocr_score": 0.99, "plain": 1.0}
    assert (
        weigh_own_field(0.99, located, {**name, "marked": 1.0}, "receipt_name")[0]
        > weigh_own_field(0.99, located, {**name, "marked": 0.0}, "receipt_name")[0]
    )


def test_a_field_without_a_calibration_table_keeps_its_ocr_score():
    located = FieldEvidence(outcome=Grounding.GROUNDED)
    assert all(own_kind(spec) is None for spec in DOCTYPES["cn_id_card"].fields.values())
    value, evidence = weigh_own_field(0.95, located, {"ocr_score": 0.95}, None)
    assert value == 0.95 and evidence.factors == {"ocr_score": 0.95, "grounding": 1.0}


def answer(key_values: dict[str, str], total_logprob: float, page: int, pages: int = 1) -> OcrResult:
    """A key-information answer whose total's digits were written with ``total_logprob`` each."""
    pieces = ['{"total": "', *key_values["total"], '"}']
    logprobs = [0.0, *[total_logprob] * len(key_values["total"]), 0.0]
    return OcrResult(
        engine="openai",
        model="m",
        task=OcrTask.KEY_INFORMATION_EXTRACTION,
        page_number=page,
        key_values=key_values,
        usage=Usage(pages=pages),
        logprobs=tuple(TokenLogprob(token=t, logprob=lp) for t, lp in zip(pieces, logprobs, strict=True)),
    )


def test_the_models_probability_is_read_from_the_answer_the_value_came_from():
    # A document read in two packed requests: the total comes from the second answer, written
    # surely there; the first answer wrote another total unsurely.
    first = answer({"total": "8.49"}, -1.0, page=1, pages=2)
    second = answer({"total": "99.00"}, -0.001, page=3, pages=2)
    receipt = DOCTYPES["receipt"]
    weighed = weigh_fields(extract([first, second], receipt), receipt, [first, second], None, from_api=True)
    total = weighed.fields["total"]
    assert total.value == "99.00"
    assert total.evidence.factors["logprob"] == pytest.approx(math.exp(-0.005), abs=1e-4)


READER = reading(
    "BOOK TA .K (TAMAN DAYA) SDN BHD",
    ("1 x PENCIL", "3.50"),
    ("SUBTOTAL", "8.49"),
    ("TOTAL", "9.00"),
    ("TOTAL", "9.50"),
)


def weighed_total(total: str, page: list[OcrResult]) -> FieldResult:
    receipt = DOCTYPES["receipt"]
    model = answer({"total": total}, -0.01, page=1)
    return weigh_fields(extract([model], receipt), receipt, [model], page, from_api=True).fields["total"]


def test_a_printed_amount_the_extractor_did_not_consider_for_the_total_is_a_disagreement():
    # Two totals printed (9.00 and 9.50): the embedded extractor doubts which, and considers both.
    assert not weighed_total("9.50", READER).errors
    assert not weighed_total("9.00", READER).errors
    for printed in ("8.49", "3.50"):  # the subtotal, an item
        other = weighed_total(printed, READER)
        assert other.evidence.outcome is Grounding.GROUNDED
        assert [e.code for e in other.errors] == ["readings_disagree"] and other.candidates == ["9.00"]


def test_an_amount_printed_after_a_subtotal_label_is_not_taken_for_the_total():
    page = reading(
        "THE PANCAKE PARLOUR", ("1 PORTERHOUSE", "29.90"), ("Subtotal", "26.16"), ("PLEASE PAY", "29.90")
    )
    subtotal = weighed_total("26.16", page)
    assert [e.code for e in subtotal.errors] == ["readings_disagree"] and "'SUBTOTAL'" in subtotal.errors[
        0
    ].message
    # No total label the extractor knows and no excluded label: nothing says it is not the total.
    assert not weighed_total("29.90", page).errors


def scored_page(text: str, scores: tuple[float, ...]) -> list[OcrResult]:
    line = OcrLine(
        text=text, box=[[0.0, 0.0], [90.0, 0.0], [90.0, 15.0], [0.0, 15.0]], score=0.95, char_scores=scores
    )
    return [OcrResult(engine="local", model="m", task=OcrTask.TEXT_RECOGNITION, page_number=1, lines=[line])]


def weighed_company(value: str, page: list[OcrResult]) -> FieldResult:
    receipt = DOCTYPES["receipt"]
    model = answer({"total": "9.00", "company": value}, -0.01, page=1)
    model = model.model_copy(update={"logprobs": None})
    return weigh_fields(extract([model], receipt), receipt, [model], page, from_api=True).fields["company"]


def test_how_sure_the_reader_was_where_it_differs_is_recorded_and_a_difference_stays_one():
    # RapidOCR's reading of sroie_166's company: it read the M of MALAYSIA as N (0.83 there).
    text = "THE STORE (NALAYSIA) SDN BHD"
    for n_score in (0.83, 0.99):
        scores = tuple(n_score if i == 11 else 0.99 for i, ch in enumerate(text) if ch != " ")
        company = weighed_company("THE STORE (MALAYSIA) SDN BHD", scored_page(text, scores))
        assert company.evidence.outcome is Grounding.NEAR
        assert company.evidence.factors["reader_char_score"] == n_score
        # Measured, the reader is as sure of its misreads as of a model's slips: not weighed.
        assert [e.code for e in company.errors] == ["readings_disagree"] and company.confidence < 0.9


def weighed_address(value: str, page: list[OcrResult]) -> FieldResult:
    receipt = DOCTYPES["receipt"]
    model = answer({"total": "59.80", "company": "ASTONS SPECIALITIES-CT1", "address": value}, -0.01, page=1)
    model = model.model_copy(update={"logprobs": None})
    return weigh_fields(extract([model], receipt), receipt, [model], page, from_api=True).fields["address"]


# wildreceipt_06025ebe4a88 as RapidOCR read it: the address is four lines, the last with the telephone.
ASTONS = (
    "ASTONS",
    "SPECIALITIES-CT1",
    "80 Airport Boulevard,",
    "Viewing Mall Central Level 3",
    "#031-004E Changi Airport T1,",
    "Singapore 819642 Tel. 65424709",
    "GST#:200719983N",
)
WHOLE = "80AIRPORTBOULEVARD, VIEWINGMALLCENTRALLEVEL3 #031-004ECHANGIAIRPORTT1, SINGAPORE819642"


def test_an_address_short_of_a_line_of_its_block_is_near():
    assert weighed_address(WHOLE, reading(*ASTONS)).evidence.outcome is Grounding.GROUNDED
    short = weighed_address(WHOLE.removesuffix(", SINGAPORE819642"), reading(*ASTONS))
    assert short.evidence.outcome is Grounding.NEAR and short.evidence.differs_at == [len(short.value) - 1]
    assert [e.code for e in short.errors] == ["readings_disagree"]
    assert short.candidates and short.candidates[0].endswith("SINGAPORE 819642 TEL. 65424709")
    # A line dropped from the top: the row above it is the company's, the one above that the address's.
    top = weighed_address(WHOLE.removeprefix("80AIRPORTBOULEVARD, "), reading(*ASTONS))
    assert top.evidence.outcome is Grounding.NEAR and top.evidence.differs_at == [0]


def test_what_only_borders_an_address_does_not_make_it_short():
    value = "80AIRPORTBOULEVARD, VIEWINGMALLCENTRALLEVEL3"
    # The company above, a heading, a line without a number, a telephone, a line further down.
    for below in (
        "TAX INVOICE",
        "Thank you",
        "Tel. 65424709",
        "Mobile /Whatsapps : +6012-918 7937",  # two stop words: nothing before the first
        "PRIME TENDERLOIN 27.90",
    ):
        page = reading(*ASTONS[:4], below)
        assert weighed_address(value, page).evidence.outcome is Grounding.GROUNDED, below
    box = [[0.0, 120.0], [90.0, 120.0], [90.0, 135.0], [0.0, 135.0]]  # a line's height below the last
    page = reading(*ASTONS[:4])[0]
    further = OcrLine(text="Level 3 #031", box=box, score=0.95)
    far = [page.model_copy(update={"lines": (*page.lines, further)})]
    assert weighed_address(value, far).evidence.outcome is Grounding.GROUNDED
