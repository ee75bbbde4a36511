"""A second recogniser (PP-OCRv4) reads a value's lines again: evidence for both paths."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ocrflow.confidence import weigh_fields, weigh_own_field
from ocrflow.doctypes import load_doctypes
from ocrflow.engines import second
from ocrflow.extract import extract
from ocrflow.ingest import ingest
from ocrflow.models import FieldBox, FieldEvidence, Grounding, OcrLine, OcrTask
from ocrflow.ocr import recognize
from ocrflow.pipeline import Context, SecondReading, interpret, process_document
from ocrflow.preprocess import preprocess
from ocrflow.settings import Settings, VerifyOptions
from ocrflow.verify import second_agreement
from tests.conftest import EXAMPLES, CountsModels, eval_dev
from tests.test_confidence import answer
from tests.test_verify import reading

DOCTYPES = load_doctypes()


def test_the_second_reading_agrees_only_when_it_spells_the_value():
    # PP-OCRv4 drops most spaces and reads punctuation its own way: neither counts.
    assert second_agreement("NO.53 55,57 & 59, JALAN SAGU 18,", "NO.5355,57&59,JALANSAGU18.") == 1.0
    # The value may be anywhere in the lines it was read from (a phone number after an address).
    assert second_agreement("Orlando, FL 32837", "Orlando,FL 32837 (407)219-4089") == 1.0
    # One character is a difference, a digit for a letter too: that is what one model misreads.
    assert second_agreement("Ground Fleor, Wisma UOA II", "Ground Floor, Wisma UOA II") == 0.0
    assert second_agreement("Orlando, FL", "0rlando,FL") == 0.0
    assert second_agreement("TAMAN", "") == 0.0


def address_confidence(second_reading: float | None) -> float:
    seen = {"ocr_score": 0.99, "plain": 1.0, "closed": 1.0}
    if second_reading is not None:
        seen["second_reading"] = second_reading
    return weigh_own_field(0.99, FieldEvidence(outcome=Grounding.GROUNDED), seen, "receipt_address")[0]


def test_an_address_a_second_model_spells_otherwise_is_less_sure_and_one_it_spells_alike_surer():
    assert address_confidence(1.0) > address_confidence(None) > address_confidence(0.0)
    # The best evidence an address can have, with the second reading agreeing: wrong about 1 in 12.
    assert address_confidence(1.0) > 0.9


def rereader(texts: dict[str, str]):
    """A stand-in second recogniser, reading lines as ``texts`` says (else as they are); what it was asked."""
    asked: list[list[str]] = []

    def reread(boxes: Sequence[FieldBox]) -> list[OcrLine]:
        asked.append([box.line for box in boxes])
        return [OcrLine(text=texts.get(box.line, box.line), box=box.box, score=0.9) for box in boxes]

    return reread, asked


RECEIPT = reading(
    "GARDENIA BAKERIES (KL) SDN BHD",
    "Lot 3, Jalan Pelabur 23/1,",
    "40300 Shah Alam, Selangor.",
    ("TOTAL", "31.32"),
    score=0.995,
)


def test_the_embedded_engines_address_is_read_again_and_only_the_address():
    receipt = DOCTYPES["receipt"]
    weighed = {}
    for misread in (False, True):
        texts = {"Lot 3, Jalan Pelabur 23/1,": "Lot3,Jalan Pelabur23/L,"} if misread else {}
        reread, asked = rereader(texts)
        extraction = extract(RECEIPT, receipt)
        fields = weigh_fields(extraction, receipt, RECEIPT, None, from_api=False, reread=reread)
        assert asked == [["Lot 3, Jalan Pelabur 23/1,", "40300 Shah Alam, Selangor."]]
        weighed[misread] = fields.fields["address"]
    agreed, differed = weighed[False], weighed[True]
    assert agreed.evidence.factors["second_reading"] == 1.0
    assert differed.evidence.factors["second_reading"] == 0.0
    assert differed.evidence.reading == "Lot3,Jalan Pelabur23/L, 40300 Shah Alam, Selangor."
    assert agreed.confidence > differed.confidence
    # Without a second recogniser the factor is absent, not taken as agreement.
    plain = weigh_fields(extract(RECEIPT, receipt), receipt, RECEIPT, None, from_api=False)
    assert "second_reading" not in plain.fields["address"].evidence.factors


def weighed_api_company(value: str, reread) -> object:
    receipt = DOCTYPES["receipt"]
    model = answer({"total": "9.00", "company": value}, -0.01, page=1).model_copy(update={"logprobs": None})
    page = reading("THE STORE (NALAYSIA) SDN BHD", ("TOTAL", "9.00"))
    return weigh_fields(extract([model], receipt), receipt, [model], page, from_api=True, reread=reread)


def test_a_near_name_is_grounded_when_a_second_model_reads_the_models_value_there():
    # The independent reader read the M of MALAYSIA as N; PP-OCRv4 reads the line as printed.
    reread, asked = rereader({"THE STORE (NALAYSIA) SDN BHD": "THESTORE(MALAYSIA)SDN BHD"})
    company = weighed_api_company("THE STORE (MALAYSIA) SDN BHD", reread).fields["company"]
    assert asked == [["THE STORE (NALAYSIA) SDN BHD"]]
    assert company.evidence.outcome is Grounding.GROUNDED and not company.errors
    # A model's letter slip: the second model reads the page, not the slip; the disagreement stands.
    reread, _ = rereader({"THE STORE (NALAYSIA) SDN BHD": "THESTORE(MALAYSIA)SDN BHD"})
    slip = weighed_api_company("THE STORE (MALAYSLA) SDN BHD", reread).fields["company"]
    assert slip.evidence.outcome is Grounding.NEAR
    assert [e.code for e in slip.errors] == ["readings_disagree"]


@pytest.mark.skipif(not second.available(), reason="rapidocr-onnxruntime (PP-OCRv4) is not installed")
def test_pp_ocr_v4_reads_a_real_receipts_address_as_pp_ocr_v6_does(engine, tmp_path: Path):
    # sroie_375 (tune half): address right, read by both models alike.
    settings = Settings(out_dir=tmp_path / "out")
    ingested = ingest(eval_dev("receipts/sroie_375.jpg"), tmp_path, settings.ingest)
    pages = [preprocess(page, settings.preprocess) for page in ingested.pages]
    results = [recognize(page, engine) for page in pages]
    reread = SecondReading(second.SecondReader(), pages)
    extraction, _ = interpret(
        results, DOCTYPES, "receipt", settings.routing.min_field_confidence, reread=reread
    )
    address = extraction.fields["address"]
    assert address.value == "LOT 3, JALAN PELABUR 23/1, 40300 SHAH ALAM, SELANGOR."
    assert address.evidence.factors["second_reading"] == 1.0
    assert "Pelabur" in address.evidence.reading
    assert reread.cpu_seconds > 0
    # Each character's score, spaces left out, as the first engine's lines carry them.
    for line in reread(address.boxes):
        assert line.char_scores is not None and len(line.char_scores) == len(line.text.replace(" ", ""))


@pytest.mark.skipif(not second.available(), reason="rapidocr-onnxruntime (PP-OCRv4) is not installed")
def test_the_pipeline_reads_the_address_again_when_the_setting_asks_and_counts_its_cpu(
    engine, tmp_path: Path
):
    path = eval_dev("receipts/sroie_375.jpg")
    for on in (True, False):
        settings = Settings(out_dir=tmp_path / f"out-{on}", verify=VerifyOptions(second_reading=on))
        result = process_document(Context(settings, given_engine=engine), path, "receipt")
        factors = result.fields["address"].evidence.factors
        assert ("second_reading" in factors) is on
        assert (result.usage.verify_cpu_seconds > 0) is on


class CountingReader(CountsModels, second.SecondReader):
    """A real PP-OCRv4 reader that counts the models it loads and the reads running at once."""

    def __init__(self, parallel: int) -> None:
        super().__init__(threads=1, parallel=parallel)


@pytest.mark.skipif(not second.available(), reason="rapidocr-onnxruntime (PP-OCRv4) is not installed")
def test_many_threads_reading_at_once_load_no_more_models_than_the_bound(engine):
    page = EXAMPLES / "receipt_valid.png"
    boxes = [line.box for line in engine.recognize(page, OcrTask.TEXT_RECOGNITION).lines[:3]]
    reader = CountingReader(parallel=2)

    with ThreadPoolExecutor(6) as pool:
        readings = list(pool.map(lambda _: [line.text for line in reader.read(page, boxes)], range(12)))

    assert 1 <= reader.loaded <= 2 and reader.most_running <= 2
    # Every thread read the lines alike, whichever model it was given.
    assert readings == [readings[0]] * 12 and all(readings[0])
