"""Extraction on real RapidOCR output: bundled examples and eval-dev documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocrflow.extract import detect_doctype, extract
from ocrflow.models import OcrLine, OcrResult, OcrTask
from ocrflow.validate import validate
from tests.conftest import EXAMPLES, eval_dev

# What examples/make_examples.py prints on each document (see examples/README.md).
PRINTED = {
    "train_ticket_valid.png": ("train_ticket", {
        "invoice_number": "E012345678", "train_number": "G7608", "departure_station": "杭州东站",
        "arrival_station": "南京南站", "departure_datetime": "2024-10-15T14:10", "seat_number": "12车05F号",
        "seat_class": "二等座", "ticket_price": "117.50", "id_number": "3201061982****0417", "passenger_name": "张三"}),
    "cn_id_card_valid.png": ("cn_id_card", {
        "name": "王小明", "sex": "male", "ethnicity": "汉", "birth_date": "1990-03-07",
        "address": "北京市东城区示例路88号示例小区3号楼2单元501室", "id_number": "110101199003071233"}),
    "bank_card_valid.png": ("bank_card", {
        "card_number": "6222021234567894", "bank": "中国工商银行", "expiry": "09/28", "holder": "WANG XIAOMING"}),
    "invoice_valid.png": ("invoice", {
        "invoice_code": "033002400111", "invoice_number": "12345678", "issue_date": "2024-05-20",
        "amount": "1000.00", "tax": "130.00", "total": "1130.00"}),
    "receipt_valid.png": ("receipt", {
        "company": "XYZ TRADING SDN BHD", "date": "2018-12-25",
        "address": "NO. 12, JALAN MAJU 3, TAMAN SRI, 81100 JOHOR BAHRU, JOHOR.", "total": "9.00"}),
}


@pytest.fixture(scope="module")
def example_ocr(engine):
    return {name: engine.recognize(EXAMPLES / name, OcrTask.TEXT_RECOGNITION) for name in PRINTED}


@pytest.mark.parametrize("name", sorted(PRINTED))
def test_examples_type_is_detected(name, example_ocr, doctypes):
    detected, reason = detect_doctype([example_ocr[name]], doctypes)
    assert reason is None
    assert detected == PRINTED[name][0]


@pytest.mark.parametrize("name", sorted(PRINTED))
def test_examples_fields_are_read_exactly(name, example_ocr, doctypes):
    doc_type, printed = PRINTED[name]
    extraction = extract([example_ocr[name]], doctypes[doc_type])
    assert {field: extraction.fields[field].value for field in printed} == printed


def test_masked_ticket_id_is_unverifiable_never_valid(example_ocr, doctypes):
    doctype = doctypes["train_ticket"]
    checked = validate(extract([example_ocr["train_ticket_valid.png"]], doctype), doctype)
    assert [e.code for e in checked.fields["id_number"].errors] == ["unverifiable"]
    assert checked.reasons == []  # a ticket always prints it masked: not a reason for review


def test_sroie_receipt_fields_match_ground_truth(engine, doctypes):
    image = eval_dev("receipts/sroie_000.jpg")
    gt = json.loads(image.with_suffix(".gt.json").read_text())
    fields = extract([engine.recognize(image, OcrTask.TEXT_RECOGNITION)], doctypes["receipt"]).fields
    assert fields["date"].value == "2018-12-25" == "-".join(reversed(gt["fields"]["date"].split("/")))
    assert fields["total"].value == gt["fields"]["total"]
    assert fields["address"].value.endswith("TAMAN DAYA, 81100 JOHOR BAHRU, JOHOR.")
    assert gt["fields"]["address"].endswith("TAMAN DAYA, 81100 JOHOR BAHRU, JOHOR.")


def test_specimen_passport_mrz_is_decoded(engine, doctypes):
    image = eval_dev("id_docs/passporteye_passport-td3_jpg.jpg")
    gt = json.loads(Path(str(image).replace(".jpg", ".gt.json").replace("_jpg.gt", "_jpg.gt")).read_text())["fields"]
    result = engine.recognize(image, OcrTask.TEXT_RECOGNITION)
    assert detect_doctype([result], doctypes)[0] == "passport"
    fields = validate(extract([result], doctypes["passport"]), doctypes["passport"]).fields
    assert fields["document_number"].value == gt["number"]
    assert fields["surname"].value == gt["surname"]
    assert fields["given_names"].value == gt["names"]
    assert fields["birth_date"].value == "1974-08-12"
    assert not any(e.code == "invalid_checksum" for f in fields.values() for e in f.errors)


def _line(text: str, y: float, x: float = 10, score: float = 0.99) -> OcrLine:
    return OcrLine(text=text, box=[[x, y], [x + 200, y], [x + 200, y + 20], [x, y + 20]], score=score)


def test_disagreeing_candidates_lower_confidence(doctypes):
    page = OcrResult(engine="t", model="t", task=OcrTask.TEXT_RECOGNITION, page_number=1, lines=(
        _line("SHOP SDN BHD", 0), _line("DATE: 01/02/2019", 40), _line("02/03/2019", 80)))
    date = extract([page], doctypes["receipt"]).fields["date"]
    assert date.value == "2019-02-01"  # the one next to its label
    assert date.confidence == pytest.approx(0.99)
    unlabelled = OcrResult(engine="t", model="t", task=OcrTask.TEXT_RECOGNITION, page_number=1, lines=(
        _line("SHOP SDN BHD", 0), _line("01/02/2019", 40), _line("02/03/2019", 80)))
    assert extract([unlabelled], doctypes["receipt"]).fields["date"].confidence < 0.9


def test_total_prefers_the_strongest_label_and_skips_subtotals(doctypes):
    page = OcrResult(engine="t", model="t", task=OcrTask.TEXT_RECOGNITION, page_number=1, lines=(
        _line("SUB TOTAL", 0), _line("8.98", 0, x=300), _line("TOTAL:", 40), _line("9.00", 40, x=300),
        _line("TOTAL QTY: 3", 80)))
    assert extract([page], doctypes["receipt"]).fields["total"].value == "9.00"


def test_unknown_text_is_not_forced_into_a_type(doctypes):
    page = OcrResult(engine="t", model="t", task=OcrTask.TEXT_RECOGNITION, page_number=1,
                     lines=(_line("the quick brown fox", 0),), text="the quick brown fox")
    name, reason = detect_doctype([page], doctypes)
    assert name is None and reason.code == "unknown_doc_type"
