"""ICAO 9303 code sets and the digit-for-letter repair of MRZ codes, through extract, validate and routing."""

from __future__ import annotations

import pytest

from ocrflow import icao
from ocrflow.doctypes import load_doctypes
from ocrflow.extract import extract
from ocrflow.models import OcrLine, OcrResult, Status
from ocrflow.routing import decide
from ocrflow.validate import validate
from tests.conftest import one_page_ingest, text_reading

# ICAO 9303 specimens (Doc 9303 part 4 and part 5 examples), as in test_checks.py.
TD3 = ["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122F1204159ZE184226B<<<<<10"]
TD1 = ["I<UTOD231458907<<<<<<<<<<<<<<<", "7408122F1204159UTO<<<<<<<<<<<6", "ERIKSSON<<ANNA<MARIA<<<<<<<<<<"]


def test_country_codes_are_iso_3166_alpha_3_or_icao_codes():
    for code in ("DEU", "FRA", "CHN", "D", "UTO", "XXA", "GBN", "UNO", "EUE", "RKS"):
        assert icao.is_country_code(code), code
    for code in ("UT0", "DE", "ABC", "ZZZ", "", "deu", None):
        assert not icao.is_country_code(code), code


@pytest.mark.parametrize(
    ("code", "kind", "valid"),
    [
        ("P", "TD3", True),
        ("PD", "TD3", True),  # the second letter is the issuing state's choice
        ("I", "TD1", True),
        ("ID", "TD1", True),
        ("AC", "TD2", True),
        ("V", "MRVA", True),
        ("I", "TD3", False),  # a passport's code starts with P
        ("P", "TD1", False),
        ("IV", "TD1", False),  # V may not be the second letter of a card's code
        ("1", "TD1", False),
        ("1D", "TD1", False),
        ("X", None, False),
        ("PPP", None, False),
    ],
)
def test_document_codes_by_layout(code, kind, valid):
    assert icao.is_document_code(code, kind) is valid


def test_a_digit_is_read_as_a_letter_only_when_exactly_one_reading_is_valid():
    assert icao.repair_letters("UT0", icao.is_country_code) == "UTO"
    assert icao.repair_letters("C0D", icao.is_country_code) == "COD"
    assert icao.repair_letters("1D", lambda code: icao.is_document_code(code, "TD1")) == "ID"
    # 0 could be O, D or Q after P: every reading is a valid passport code, so none is chosen.
    assert icao.repair_letters("P0", lambda code: icao.is_document_code(code, "TD3")) is None
    # No reading is valid: 1 as I or L never starts a passport's code.
    assert icao.repair_letters("1", lambda code: icao.is_document_code(code, "TD3")) is None
    assert icao.repair_letters("UTO", icao.is_country_code) is None  # nothing to repair


def _page(*texts: str) -> OcrResult:
    return text_reading(
        *(
            OcrLine(
                text=text,
                box=[[10, 40 * i], [600, 40 * i], [600, 40 * i + 30], [10, 40 * i + 30]],
                score=0.99,
            )
            for i, text in enumerate(texts)
        )
    )


def _route(page: OcrResult):
    doctype = load_doctypes()["passport"]
    checked = validate(extract([page], doctype), doctype)
    status, reasons = decide(one_page_ingest("p"), [page], [], checked, doctype)
    return checked, status, reasons


def test_a_nationality_read_with_a_zero_is_repaired_and_the_passport_accepted_saying_so():
    line2 = TD3[1][:10] + "UT0" + TD3[1][13:]  # a real eval-dev misread: 0 for O
    checked, status, reasons = _route(_page("PASSPORT", TD3[0], line2))

    assert checked.fields["nationality"].value == "UTO"
    assert checked.fields["nationality"].raw == "UT0"
    assert checked.fields["mrz_line2"].value == TD3[1]
    assert status is Status.ACCEPTED
    assert [(r.code, r.field) for r in reasons] == [("repaired", "mrz_line2"), ("repaired", "nationality")]
    assert "'UT0'" in reasons[1].message and "'UTO'" in reasons[1].message and "0 as O" in reasons[1].message


def test_a_card_code_read_as_1d_is_repaired_to_id():
    line1 = "1D" + TD1[0][2:]
    checked, status, reasons = _route(_page(line1, TD1[1], TD1[2]))

    assert checked.fields["document_type"].value == "ID"
    assert checked.fields["mrz_line1"].value == "ID" + TD1[0][2:]
    assert status is Status.ACCEPTED
    assert {r.field for r in reasons if r.code == "repaired"} == {"document_type", "mrz_line1"}


def test_an_unrepairable_code_is_never_accepted():
    # "1" on a passport: read as I or L, neither starts a passport's code.
    checked, status, reasons = _route(_page("1" + TD3[0][1:], TD3[1]))
    assert status is Status.NEEDS_REVIEW
    assert ("invalid_component", "mrz_line1") in [(r.code, r.field) for r in reasons]
    assert "not an ICAO 9303 document code for a TD3" in checked.fields["mrz_line1"].errors[0].message
    assert "repaired" not in [r.code for r in reasons]


def test_a_code_of_letters_outside_the_set_is_never_accepted():
    line1 = TD3[0][:2] + "ZZZ" + TD3[0][5:]  # letters, so no check digit or pattern objects
    checked, status, reasons = _route(_page(line1, TD3[1]))
    assert status is Status.NEEDS_REVIEW
    found = {(r.code, r.field) for r in reasons}
    assert ("invalid_component", "issuing_country") in found
    assert ("invalid_component", "mrz_line1") in found


CZE = [
    "P<CZESPECIMEN<<VZ0R<<<<<<<<<<<<<<<<<<<<<<<<<",  # a real eval-dev read: 0 for O in the given name
    "99003853<1CZE1101018M1207046110101111<<<<<94",
]


def test_a_digit_in_a_name_is_repaired_only_when_the_visual_zone_prints_one_reading():
    # The visual zone prints "Vzor": of VZOR, VZDR and VZQR only that one is on the page.
    checked, status, reasons = _route(_page("SPECIMEN", "Vzor", *CZE))
    assert checked.fields["given_names"].value == "VZOR"
    assert status is Status.ACCEPTED
    note = next(r for r in reasons if r.field == "given_names")
    assert note.code == "repaired" and "printed in the visual zone" in note.message

    # Without the visual zone nothing supports any reading: the name stays as read, in review.
    checked, status, reasons = _route(_page(*CZE))
    assert checked.fields["given_names"].value == "VZ0R"
    assert status is Status.NEEDS_REVIEW
    assert ("schema", "given_names") in [(r.code, r.field) for r in reasons]
