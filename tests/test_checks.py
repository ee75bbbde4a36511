"""Number checks: stdnum's contract, ICAO 9303 MRZ decoding, masking, and junk robustness."""

from __future__ import annotations

import json
import random

import pytest
from stdnum.iban import calc_check_digits as iban_check_digits

from ocrflow import checks
from ocrflow.checks import (
    InvalidChecksum,
    InvalidComponent,
    InvalidFormat,
    InvalidLength,
    bank_card,
    cn_ric,
    iban,
    is_masked,
    mrz,
    mrz_check_digit,
    mrz_line,
    mrz_score,
    parse_mrz,
)
from tests.conftest import EVAL_DEV  # noqa: E402

# ICAO 9303 specimens (the "ERIKSSON ANNA MARIA" documents of Parts 4 to 7).
TD3 = ["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122F1204159ZE184226B<<<<<10"]
TD2 = ["I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<", "D231458907UTO7408122F1204159<<<<<<<6"]
TD1 = ["I<UTOD231458907<<<<<<<<<<<<<<<", "7408122F1204159UTO<<<<<<<<<<<6", "ERIKSSON<<ANNA<MARIA<<<<<<<<<<"]
MRVA = ["V<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L8988901C4XXX4009078F96121096ZE184226B<<<<<<"]


def ric_number(first17: str) -> str:
    """A PRC ID number with its ISO 7064 MOD 11-2 check digit, computed independently of stdnum."""
    total = sum(int(digit) * pow(2, 17 - i, 11) for i, digit in enumerate(first17))
    check = (12 - total % 11) % 11
    return first17 + ("X" if check == 10 else str(check))


MALE_ID = ric_number("11010119900307123")  # Beijing Dongcheng, born 1990-03-07, 17th digit odd
FEMALE_ID = ric_number("11010119900307002")


def with_char(text: str, index: int, char: str) -> str:
    return text[:index] + char + text[index + 1 :]


# --- PRC resident ID -------------------------------------------------------------------


def test_ric_generated_numbers_are_valid() -> None:
    assert MALE_ID == "110101199003071233"
    assert FEMALE_ID == "11010119900307002X"  # check value 10 is printed as X
    for number in (MALE_ID, FEMALE_ID):
        assert cn_ric.validate(number) == number
        assert cn_ric.is_valid(number)


def test_ric_compact_accepts_separators_and_lowercase_x() -> None:
    assert cn_ric.validate("110101 19900307 002x") == FEMALE_ID


@pytest.mark.parametrize(
    ("number", "error"),
    [
        (MALE_ID[:-1] + "4", InvalidChecksum),
        (MALE_ID[:-1], InvalidLength),
        (MALE_ID + "1", InvalidLength),
        ("11010119900307A23" + "3", InvalidFormat),
        (ric_number("11010119901332123"), InvalidComponent),  # month 13
        (ric_number("99999919900307123"), InvalidComponent),  # no such region
        (ric_number("63534819900101675"), InvalidComponent),  # a province stdnum lists without counties
    ],
)
def test_ric_invalid(number: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        cn_ric.validate(number)
    assert not cn_ric.is_valid(number)


def test_ric_expected_check_digit() -> None:
    assert cn_ric.expected_check_digits(MALE_ID[:-1] + "4") == "3"
    assert cn_ric.expected_check_digits(MALE_ID) is None
    assert cn_ric.expected_check_digits("123") is None


def test_ric_birth_date_and_sex() -> None:
    import datetime

    assert cn_ric.birth_date(MALE_ID) == datetime.date(1990, 3, 7)
    assert cn_ric.sex(MALE_ID) == "male"
    assert cn_ric.sex(FEMALE_ID) == "female"
    with pytest.raises(InvalidChecksum):
        cn_ric.sex(MALE_ID[:-1] + "4")  # nothing is read from a number that does not verify


# --- bank cards and IBAN ---------------------------------------------------------------


@pytest.mark.parametrize(
    "number", ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "5500000000000004"]
)
def test_bank_card_valid(number: str) -> None:
    assert bank_card.validate(number) == number.replace(" ", "").replace("-", "")


@pytest.mark.parametrize(
    ("number", "error"),
    [
        ("4111111111111112", InvalidChecksum),
        ("41111111111", InvalidLength),  # 11 digits
        ("4" + "0" * 18 + "0", InvalidLength),  # 20 digits
        ("4111 1111 1111 111A", InvalidFormat),
        ("4111111111111111".replace("1", "١"), InvalidFormat),  # Arabic-Indic digits are not card digits
    ],
)
def test_bank_card_invalid(number: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        bank_card.validate(number)
    assert not bank_card.is_valid(number)


def test_bank_card_full_width_digits_are_digits() -> None:
    # stdnum folds full-width forms, as Chinese OCR often returns them.
    assert bank_card.validate("４１１１ １１１１ １１１１ １１１１") == "4111111111111111"


def test_bank_card_expected_check_digit() -> None:
    assert bank_card.expected_check_digits("4111111111111112") == "1"


def test_iban() -> None:
    assert iban.validate("GB82 WEST 1234 5698 7654 32") == "GB82WEST12345698765432"
    with pytest.raises(InvalidChecksum):
        iban.validate("GB83WEST12345698765432")
    assert iban.expected_check_digits("GB83WEST12345698765432") == "82"
    no_country = "QQ" + iban_check_digits("QQ00WEST12345698765432") + "WEST12345698765432"
    with pytest.raises(InvalidComponent):
        iban.validate(no_country)  # the checksum holds, but there is no country QQ
    assert not iban.is_valid("GB82WEST1234569876543")


# --- MRZ -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "digit"),
    [("L898902C3", "6"), ("740812", "2"), ("120415", "9"), ("D23145890", "7"), ("<<<<<<", "0"), ("A", "0")],
)
def test_mrz_check_digit(data: str, digit: str) -> None:
    assert mrz_check_digit(data) == digit


def test_mrz_check_digit_rejects_other_characters() -> None:
    with pytest.raises(InvalidFormat):
        mrz_check_digit("l898902c3")
    with pytest.raises(InvalidFormat):
        mrz_check_digit("")


def test_parse_td3_specimen() -> None:
    data = parse_mrz(TD3)
    assert data.kind == "TD3"
    assert (data.document_type, data.issuing_country, data.nationality) == ("P", "UTO", "UTO")
    assert (data.surname, data.given_names) == ("ERIKSSON", "ANNA MARIA")
    assert (data.document_number, data.birth_date, data.expiry_date, data.sex) == (
        "L898902C3",
        "740812",
        "120415",
        "F",
    )
    assert data.optional_data == "ZE184226B"
    assert [check.name for check in data.checks] == [
        "document_number",
        "birth_date",
        "expiry_date",
        "personal_number",
        "composite",
    ]
    assert data.valid and data.score == 1.0
    assert mrz.validate("\n".join(TD3)) == "\n".join(TD3)


def test_parse_td2_and_td1_specimens() -> None:
    td2, td1 = parse_mrz(TD2), parse_mrz(TD1)
    for data in (td2, td1):
        assert (data.document_type, data.document_number, data.surname, data.given_names) == (
            "I",
            "D23145890",
            "ERIKSSON",
            "ANNA MARIA",
        )
        assert (data.birth_date, data.expiry_date, data.sex) == ("740812", "120415", "F")
        assert data.valid
        assert [c.name for c in data.checks] == ["document_number", "birth_date", "expiry_date", "composite"]
    assert (td2.kind, td1.kind) == ("TD2", "TD1")
    assert td1.line_of("document_number") == 1 and td1.line_of("surname") == 3 and td1.line_of("sex") == 2
    assert td2.line_of("document_number") == 2 and td2.line_of("surname") == 1


def test_parse_visa_has_no_composite() -> None:
    data = parse_mrz(MRVA)
    assert data.kind == "MRVA"
    assert data.valid and [c.name for c in data.checks] == ["document_number", "birth_date", "expiry_date"]


def test_mrz_score_counts_failing_check_digits() -> None:
    wrong_birth = [TD3[0], with_char(TD3[1], 13, "8")]  # 840812: its own check and the composite fail
    data = parse_mrz(wrong_birth)
    failing = [check for check in data.checks if not check.valid]
    assert [(c.name, c.line, c.found) for c in failing] == [("birth_date", 2, "2"), ("composite", 2, "0")]
    assert failing[0].expected == mrz_check_digit("840812") == "9"
    assert mrz_score(wrong_birth) == pytest.approx(3 / 5)
    with pytest.raises(InvalidChecksum):
        mrz.validate(wrong_birth)


def test_mrz_unused_personal_number_may_have_filler_check_digit() -> None:
    line2 = TD3[1][:28] + "<" * 14 + "<"
    line2 += mrz_check_digit(line2[0:10] + line2[13:20] + line2[21:43])
    data = parse_mrz([TD3[0], line2])
    assert data.optional_data == "" and data.valid


def test_mrz_compact_tolerates_ocr_noise() -> None:
    noisy = (
        "p<utoeriksson«<anna<maria<<<<<<<<<<<<<<<<<<<  \n\n L898902C36 UTO7408122F1204159ZE184226B<<<<<10 .|"
    )
    assert mrz.compact(noisy) == "\n".join(TD3)
    assert parse_mrz(noisy).valid
    assert mrz_score(noisy) == 1.0


def test_mrz_compact_never_fixes_digits() -> None:
    misread = [TD3[0], with_char(TD3[1], 5, "O")]  # OCR read the 0 of L898902C3 as the letter O
    data = parse_mrz(misread)
    assert data.document_number == "L8989O2C3"  # kept as read, not "repaired"
    assert not data.valid
    assert not mrz.is_valid(misread)


def test_mrz_layout_and_component_errors() -> None:
    with pytest.raises(InvalidLength):
        parse_mrz([TD3[0], TD3[1][:-1]])
    with pytest.raises(InvalidLength):
        parse_mrz([TD3[0]])
    with pytest.raises(InvalidFormat):
        parse_mrz([TD3[0], with_char(TD3[1], 30, "$")])
    assert mrz_score([TD3[0]]) == 0.0
    bad_month = "L898902C36UTO741312" + mrz_check_digit("741312") + "F1204159ZE184226B<<<<<1"
    bad_month += mrz_check_digit(bad_month[0:10] + bad_month[13:20] + bad_month[21:43])
    assert parse_mrz([TD3[0], bad_month]).valid  # the check digits hold ...
    with pytest.raises(InvalidComponent):
        mrz.validate([TD3[0], bad_month])  # ... but month 13 is not a date


def test_mrz_line_format() -> None:
    assert mrz_line.validate(TD3[1]) == TD3[1]
    assert mrz_line.validate(TD1[0].lower()) == TD1[0]
    with pytest.raises(InvalidLength):
        mrz_line.validate(TD3[1][:-1])
    with pytest.raises(InvalidFormat):
        mrz_line.validate(with_char(TD3[1], 3, "#"))


# --- masking ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["4107**********5515", "3201061982****0417", "4107××××××××5515", "4107xxxxxxxx5515", "6222＊＊＊＊1234"],
)
def test_masked_numbers(number: str) -> None:
    assert is_masked(number)
    assert not bank_card.is_valid(number) and not cn_ric.is_valid(number)


@pytest.mark.parametrize(
    "number", [FEMALE_ID, MALE_ID, "4111111111111111", "GB82WEST12345698765432", None, 42]
)
def test_unmasked_numbers(number: object) -> None:
    assert not is_masked(number)


# --- robustness: junk never validates and never raises ----------------------------------


def _junk() -> list[object]:
    rng = random.Random(9303)
    garbage = [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80))).decode("utf-8", "replace")
        for _ in range(50)
    ]
    return [
        "",
        " ",
        "\n\n",
        "?",
        "-",
        "\x00" * 18,
        "None",
        "null",
        "é" * 18,
        "１２３４５６７８９０１２３４５６７８",  # full-width digits
        "١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧٨",  # Arabic-Indic digits
        "💳" * 16,
        "4111111111111111" * 600,
        "1 " * 5000,
        "<" * 10_000,
        "\ud800",  # a lone surrogate
        None,
        123456789012,
        b"4111111111111111",
        ["4111111111111111"],
        {"number": "x"},
        *garbage,
    ]


CHECKS = [cn_ric, bank_card, iban, mrz, mrz_line]


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.name)
def test_is_valid_rejects_junk_without_raising(check: checks.NumberCheck) -> None:
    for junk in _junk():
        assert check.is_valid(junk) is False, repr(junk)[:60]


def test_validate_raises_only_stdnum_errors_on_junk() -> None:
    for check in CHECKS:
        for junk in _junk():
            with pytest.raises(checks.ValidationError):
                check.validate(junk)


def test_mrz_score_and_is_masked_never_raise() -> None:
    for junk in _junk():
        assert mrz_score(junk) == 0.0
        is_masked(junk)


def test_format_checks_cover_the_readme_number_formats() -> None:
    assert set(checks.FORMAT_CHECKS) == {"cn-ric", "bank-card", "iban", "mrz-line"}


# --- real MRZs: PassportEye's specimen ground truth -------------------------------------

# The images behind these ground-truth files are the ICAO specimens above; the files hold
# PassportEye's decoded fields but not the raw lines, so the lines come from the specimens.
SPECIMEN_LINES = {"TD2": TD2, "TD3": TD3}


def _passporteye_truth() -> list[dict[str, str]]:
    folder = EVAL_DEV / "id_docs"
    truths = [json.loads(path.read_text())["fields"] for path in sorted(folder.glob("passporteye_*.gt.json"))]
    return [fields for fields in truths if "mrz_type" in fields]


def _plain(text: str) -> str:
    return text.replace("<", " ").strip()


def test_passporteye_ground_truth_decodes() -> None:
    truths = _passporteye_truth() if EVAL_DEV.is_dir() else []
    if not truths:
        pytest.skip(f"no PassportEye MRZ ground truth under {EVAL_DEV}")
    for gt in truths:
        data = parse_mrz(SPECIMEN_LINES[gt["mrz_type"]])
        assert data.kind == gt["mrz_type"]
        assert data.document_type == _plain(gt["type"])
        assert data.issuing_country == gt["country"] and data.nationality == gt["nationality"]
        assert data.document_number == gt["number"]
        assert (data.birth_date, data.expiry_date, data.sex) == (
            gt["date_of_birth"],
            gt["expiration_date"],
            gt["sex"],
        )
        assert (data.surname, data.given_names) == (gt["surname"], gt["names"])
        assert data.optional_data == _plain(gt.get("personal_number") or gt.get("optional1", ""))
        found = {check.name: check.found for check in data.checks}
        assert found["document_number"] == gt["check_number"]
        assert found["birth_date"] == gt["check_date_of_birth"]
        assert found["expiry_date"] == gt["check_expiration_date"]
        assert found["composite"] == gt["check_composite"]
        if "check_personal_number" in gt:
            assert found["personal_number"] == gt["check_personal_number"]
        assert data.valid and mrz_score(SPECIMEN_LINES[gt["mrz_type"]]) == 1.0
