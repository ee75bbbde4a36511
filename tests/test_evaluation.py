from __future__ import annotations

from ocrflow.evaluation import Report, field_truth, levenshtein, normalize_field, same_field, score_document
from ocrflow.models import DocumentResult, FieldResult, OcrLine, PageResult, Status


def _result(status: Status, **fields) -> DocumentResult:
    lines = [OcrLine(text="SHOP SDN BHD", box=[[0, 0], [100, 0], [100, 20], [0, 20]], score=1.0)]
    return DocumentResult(
        document_id="x" * 64,
        source="/in/r.jpg",
        doc_type="receipt",
        status=status,
        fields={k: FieldResult(value=v, confidence=1.0) for k, v in fields.items()},
        pages=[PageResult(page_number=1, width=100, height=20, lines=lines)],
    )


GT = {
    "id": "sroie_x",
    "category": "receipts",
    "fields": {
        "company": "SHOP SDN BHD",
        "date": "25/12/2018",
        "address": "NO. 1, JALAN A , 81100 JOHOR.",
        "total": "9.00",
    },
    "text": "SHOP SDN BHD",
}


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3


def test_fields_compare_after_normalisation():
    assert field_truth(GT) == {
        "company": "SHOP SDN BHD",
        "date": "2018-12-25",
        "address": "NO. 1, JALAN A, 81100 JOHOR.",
        "total": "9.00",
    }
    assert normalize_field("address", "no. 1,  jalan a , 81100 johor.") == "NO. 1, JALAN A, 81100 JOHOR."


def test_escaped_errors_count_only_accepted_documents_with_a_wrong_field():
    right = dict(
        company="SHOP SDN BHD", date="2018-12-25", address="NO. 1, JALAN A, 81100 JOHOR.", total="9.00"
    )
    scores = [
        score_document(_result(Status.ACCEPTED, **right), GT, "receipt"),
        score_document(_result(Status.ACCEPTED, **{**right, "total": "9.01"}), GT, "receipt"),
        score_document(_result(Status.NEEDS_REVIEW, **{**right, "date": None}), GT, "receipt"),
    ]
    summary = Report(scores).summary()
    assert summary["accepted"] == 2 and summary["escaped_errors"] == 1
    assert summary["escaped_error_rate"] == 0.5
    assert summary["review_rate"] == 1 / 3
    assert summary["field_accuracy"]["total"] == 2 / 3
    assert summary["cer_mean"] == 0.0


def test_wildreceipt_fields_compare_without_spaces_but_sroie_fields_exactly():
    # WildReceipt's transcriptions have no spaces (eval-dev README); SROIE's have them and count.
    wild = {**GT, "id": "wildreceipt_x"}
    assert same_field(wild, "THAI VILLAGE", "THAIVILLAGE")
    assert not same_field(wild, "THAI VILLAGES", "THAIVILLAGE")
    assert not same_field(GT, "SHOPSDN BHD", "SHOP SDN BHD")
    assert not same_field(GT, None, "SHOP SDN BHD")
