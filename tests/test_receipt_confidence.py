"""The embedded engine's receipt fields weighed by evidence, on real eval-dev receipts (RapidOCR).

Both receipts are of the tune half of eval-dev (bench/quality_eval.py ``split_of``), on which
the ratios in :mod:`ocrflow.confidence` were measured.
"""

from __future__ import annotations

from pathlib import Path

from ocrflow.confidence import OWN_PRIOR_WRONG
from ocrflow.ingest import ingest
from ocrflow.ocr import recognize
from ocrflow.pipeline import interpret
from ocrflow.preprocess import preprocess
from ocrflow.routing import decide
from ocrflow.settings import Settings
from tests.conftest import eval_dev


def route(stem: str, engine, doctypes, tmp_path: Path):
    settings = Settings(out_dir=tmp_path / "out")
    ingested = ingest(eval_dev(f"receipts/{stem}.jpg"), tmp_path, settings.ingest)
    results = [recognize(preprocess(page, settings.preprocess), engine) for page in ingested.pages]
    extraction, type_reason = interpret(results, doctypes, "receipt", settings.routing.min_field_confidence)
    status, reasons = decide(ingested, results, [], extraction, doctypes["receipt"], type_reason)
    return extraction, status, reasons


def test_an_address_read_at_a_middling_score_goes_to_review(engine, doctypes, tmp_path):
    # sroie_020: the address's line reads 0.984 and its value differs from the truth ("75," for
    # "75.", a trailing "."); a fixed threshold of 0.98 on the OCR score accepted it. Addresses
    # read between 0.95 and 0.985 were wrong 11 times in 16 on the tune half.
    extraction, status, reasons = route("sroie_020", engine, doctypes, tmp_path)
    address = extraction.fields["address"]
    assert 0.95 <= address.evidence.factors["ocr_score"] < 0.985
    assert address.evidence.factors["prior"] == round(1 - OWN_PRIOR_WRONG["receipt_address"], 4)
    assert address.confidence < 0.5
    assert status.value == "needs_review"
    assert ("low_confidence", "address") in [(r.code, r.field) for r in reasons]


def test_what_vouches_for_each_field_of_a_real_receipt(engine, doctypes, tmp_path):
    # sroie_375, all four fields right. The date (read at 0.994), the address (read at 0.997, no
    # trace of a misread, ending at its postcode) and the total (read at 0.9999; the tune half
    # had 1 wrong total of 39) are vouched for. The name has the best evidence this engine gives
    # for one (marked "SDN BHD", read at 0.986, plain), yet names were wrong 14 times in 42 on the
    # tune half and marked ones still 2 times in 16: not enough to vouch for it alone.
    extraction, status, reasons = route("sroie_375", engine, doctypes, tmp_path)
    fields = extraction.fields
    assert (fields["company"].value, fields["total"].value) == ("GARDENIA BAKERIES (KL) SDN BHD", "31.32")
    company, address, total = fields["company"], fields["address"], fields["total"]
    assert {k: company.evidence.factors[k] for k in ("ocr_band", "plain", "marked")} == {
        "ocr_band": 1.0,
        "plain": 1.0,
        "marked": 1.0,
    }
    assert 0.8 < company.confidence < 0.9
    assert {k: address.evidence.factors[k] for k in ("ocr_band", "plain", "closed")} == {
        "ocr_band": 1.0,
        "plain": 1.0,
        "closed": 1.0,
    }
    assert (total.evidence.factors["ocr_band"], total.evidence.factors["paid"]) == (1.0, 0.0)
    assert min(fields["date"].confidence, address.confidence, total.confidence) >= 0.9
    assert status.value == "needs_review"
    assert [(r.code, r.field) for r in reasons] == [("low_confidence", "company")]
