"""Routing rules per document type: thresholds, required fields, validation and the audit sample."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ocrflow.doctypes import bundled_schema_dir, load_doctypes
from ocrflow.errors import ConfigurationError
from ocrflow.models import (
    Extraction,
    FieldResult,
    OcrResult,
    OcrTask,
    Status,
)
from ocrflow.pipeline import Context, process_document
from ocrflow.routing import decide, in_audit_sample
from ocrflow.settings import ReviewOptions, ReviewRule, Settings
from ocrflow.validate import validate
from tests.conftest import EXAMPLES, one_page_ingest

DOCTYPES = load_doctypes()
RECEIPT = DOCTYPES["receipt"]


OCR = [OcrResult(engine="rapidocr", model="m", task=OcrTask.TEXT_RECOGNITION, page_number=1, text="receipt")]


def _extraction(**overrides) -> Extraction:
    values = {"company": "ACME SDN BHD", "date": "2024-01-31", "address": "1 JALAN SATU", "total": "9.00"}
    fields = {name: FieldResult(value=value, confidence=0.99) for name, value in values.items()}
    fields.update(overrides)
    return validate(Extraction(doc_type="receipt", fields=fields), RECEIPT)


def _decide(document_id: str, extraction: Extraction, rule: ReviewRule | None):
    return decide(one_page_ingest(document_id), OCR, [], extraction, RECEIPT, None, rule)


def _id(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def test_without_a_rule_routing_is_unchanged():
    status, reasons = _decide(_id(1), _extraction(), None)
    assert (status, reasons) == (Status.ACCEPTED, [])


def test_a_field_below_its_types_threshold_goes_to_review():
    extraction = _extraction(total=FieldResult(value="9.00", confidence=0.95))
    assert _decide(_id(1), extraction, None)[0] is Status.ACCEPTED
    status, reasons = _decide(_id(1), extraction, ReviewRule(min_confidence={"total": 0.97}))
    assert status is Status.NEEDS_REVIEW
    assert [(r.code, r.field) for r in reasons] == [("low_confidence", "total")]
    assert _decide(_id(1), extraction, ReviewRule(min_confidence={"*": 0.9}))[0] is Status.ACCEPTED


def test_required_fields_of_the_rule_must_be_present():
    card = DOCTYPES["bank_card"]
    values = {"card_number": "6222020200112233446", "bank": "中国工商银行", "holder": None}
    fields = {name: FieldResult(value=value, confidence=0.99) for name, value in values.items()}
    extraction = validate(Extraction(doc_type="bank_card", fields=fields), card)
    assert decide(one_page_ingest(_id(1)), OCR, [], extraction, card, None, ReviewRule()) == (
        Status.ACCEPTED,
        [],
    )
    status, reasons = decide(
        one_page_ingest(_id(1)), OCR, [], extraction, card, None, ReviewRule(required=["holder"])
    )
    assert status is Status.NEEDS_REVIEW and [(r.code, r.field) for r in reasons] == [("missing", "holder")]


def test_validation_failures_can_be_switched_off_but_missing_fields_still_route():
    bad_date = _extraction(date=FieldResult(value="2024-02-31", confidence=0.99))
    assert _decide(_id(1), bad_date, ReviewRule())[0] is Status.NEEDS_REVIEW
    assert _decide(_id(1), bad_date, ReviewRule(validation_failures=False)) == (Status.ACCEPTED, [])
    no_total = _extraction(total=FieldResult(value=None))
    status, reasons = _decide(_id(1), no_total, ReviewRule(validation_failures=False))
    assert status is Status.NEEDS_REVIEW and ("missing", "total") in [(r.code, r.field) for r in reasons]


def test_the_audit_sample_is_deterministic_and_about_the_configured_share():
    ids = [_id(n) for n in range(10_000)]
    sampled = [i for i in ids if in_audit_sample(i, 5)]
    assert 400 <= len(sampled) <= 600  # 5% of 10,000, give or take sampling noise
    assert sampled == [i for i in ids if in_audit_sample(i, 5)]  # the same every time
    assert set(sampled) <= {i for i in ids if in_audit_sample(i, 20)}  # a larger sample contains it
    assert not any(in_audit_sample(i, 0) for i in ids[:1000])
    assert all(in_audit_sample(i, 100) for i in ids[:1000])

    rule = ReviewRule(audit_percent=5)
    status, reasons = _decide(sampled[0], _extraction(), rule)
    assert status is Status.NEEDS_REVIEW and [r.code for r in reasons] == ["audit_sample"]
    outside = next(i for i in ids if i not in sampled)
    assert _decide(outside, _extraction(), rule) == (Status.ACCEPTED, [])


def test_rules_come_from_settings_by_document_type():
    settings = Settings(
        review=ReviewOptions(rules={"receipt": ReviewRule(audit_percent=10), "*": ReviewRule(required=["x"])})
    )
    assert settings.review.rule_for("receipt").audit_percent == 10
    assert settings.review.rule_for("invoice").required == ["x"]
    assert ReviewOptions().rule_for("receipt") is None


def test_a_settings_rule_routes_a_real_document_through_the_pipeline(tmp_path: Path, engine):
    # The same audit as below, asked for in settings (OCRFLOW_REVIEW__RULES) instead of the schema.
    rules = {"bank_card": ReviewRule(audit_percent=100)}
    ctx = Context(Settings(out_dir=tmp_path / "out", review=ReviewOptions(rules=rules)), given_engine=engine)
    result = process_document(ctx, EXAMPLES / "bank_card_valid.png", "bank_card")
    assert result.status is Status.NEEDS_REVIEW
    assert [r.code for r in result.reasons] == ["audit_sample"]


def _schema_with_review(tmp_path: Path, review: dict) -> Path:
    folder = tmp_path / "schemas"
    folder.mkdir(exist_ok=True)
    schema = json.loads((bundled_schema_dir() / "bank_card.schema.json").read_text())
    schema.setdefault("x-ocrflow", {})["review"] = review
    (folder / "bank_card.schema.json").write_text(json.dumps(schema))
    return folder


def test_a_schema_rule_routes_a_real_document_through_the_pipeline(tmp_path: Path, engine):
    # bank_card_valid.png is accepted by default; its type's schema asks for every card in the audit sample.
    folder = _schema_with_review(tmp_path, {"audit_percent": 100})
    ctx = Context(Settings(out_dir=tmp_path / "out", schema_dir=folder), given_engine=engine)
    result = process_document(ctx, EXAMPLES / "bank_card_valid.png", "bank_card")
    assert result.status is Status.NEEDS_REVIEW
    assert [r.code for r in result.reasons] == ["audit_sample"]
    (item,) = ctx.store.review_items()
    assert item.document_id == result.document_id and item.reasons[0]["code"] == "audit_sample"


def test_a_types_schema_rule_wins_over_the_settings_rule_for_every_type(tmp_path: Path, engine):
    # "*" applies to types without a rule of their own; bank_card's schema has one.
    folder = _schema_with_review(tmp_path, {"audit_percent": 100})
    everyone = ReviewOptions(rules={"*": ReviewRule(audit_percent=0)})
    ctx = Context(Settings(out_dir=tmp_path / "out", schema_dir=folder, review=everyone), given_engine=engine)
    result = process_document(ctx, EXAMPLES / "bank_card_valid.png", "bank_card")
    assert [r.code for r in result.reasons] == ["audit_sample"]


def test_a_broken_schema_rule_is_a_configuration_error(tmp_path: Path):
    folder = _schema_with_review(tmp_path, {"audit_percent": 250})
    doctype = load_doctypes(folder)["bank_card"]
    with pytest.raises(ConfigurationError, match="x-ocrflow.review"):
        decide(one_page_ingest(_id(1)), OCR, [], _extraction(), doctype, None)
