"""The validation stage: field errors, reasons, cross-field rules, and the bundled schemas' contract."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from ocrflow.doctypes import DocType, load_doctypes
from ocrflow.errors import ConfigurationError
from ocrflow.models import Extraction, FieldResult, Stage
from ocrflow.validate import blocking_errors, validate

# ICAO 9303 specimens, as in test_checks.py.
TD3 = ["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122F1204159ZE184226B<<<<<10"]
TD1 = ["I<UTOD231458907<<<<<<<<<<<<<<<", "7408122F1204159UTO<<<<<<<<<<<6", "ERIKSSON<<ANNA<MARIA<<<<<<<<<<"]


def ric_number(first17: str) -> str:
    """A PRC ID number with its ISO 7064 MOD 11-2 check digit."""
    total = sum(int(digit) * pow(2, 17 - i, 11) for i, digit in enumerate(first17))
    check = (12 - total % 11) % 11
    return first17 + ("X" if check == 10 else str(check))


def with_char(text: str, index: int, char: str) -> str:
    return text[:index] + char + text[index + 1 :]


MALE_ID = ric_number("11010119900307123")  # 110101199003071233
FEMALE_ID = ric_number("11010119900307002")  # 11010119900307002X
NULLABLE = {"type": ["string", "null"]}


def doctype(
    name: str, properties: dict[str, dict[str, Any]], required: list[str], rules: tuple[str, ...] = ()
) -> DocType:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": required,
        "properties": {key: {**NULLABLE, **prop} for key, prop in properties.items()},
        "x-ocrflow": {"rules": list(rules)},
    }
    return DocType(name=name, schema=schema)


ID_CARD = doctype(
    "id_card",
    {
        "name": {"title": "Name"},
        "sex": {"title": "Sex", "enum": ["male", "female", "男", "女", None]},
        "birth_date": {"title": "Date of birth", "format": "date"},
        "id_number": {"title": "ID number", "format": "cn-ric", "x-ocrflow": {"mask": True}},
    },
    required=["name", "id_number"],
    rules=("cn_ric_consistency",),
)

TICKET = doctype(
    "ticket",
    {
        "train_number": {"title": "Train number", "pattern": "^[GDCZTK]?\\d{1,4}$"},
        "departure": {"title": "Departure", "format": "date-time"},
        "price": {"title": "Price", "format": "decimal"},
        "id_number": {
            "title": "ID number",
            "format": "cn-ric",
            "x-ocrflow": {"mask": True, "allow_masked": True},
        },
    },
    required=["train_number"],
)

CARD = doctype(
    "card",
    {
        "card_number": {"title": "Card number", "format": "bank-card", "x-ocrflow": {"mask": True}},
        "iban": {"title": "IBAN", "format": "iban"},
    },
    required=[],
)

PASSPORT = doctype(
    "passport",
    {
        "mrz_line1": {"title": "MRZ line 1", "format": "mrz-line"},
        "mrz_line2": {"title": "MRZ line 2", "format": "mrz-line"},
        "mrz_line3": {"title": "MRZ line 3", "format": "mrz-line"},
        "document_number": {"title": "Document number", "x-ocrflow": {"mask": True}},
        "surname": {"title": "Surname"},
        "given_names": {"title": "Given names"},
        "birth_date": {"title": "Date of birth", "format": "date"},
        "expiry_date": {"title": "Expiry date", "format": "date"},
        "sex": {"title": "Sex", "enum": ["male", "female", "unspecified", None]},
    },
    required=["mrz_line1", "mrz_line2"],
    rules=("mrz_check_digits",),
)

INVOICE = doctype(
    "invoice",
    {"amount": {"format": "decimal"}, "tax": {"format": "decimal"}, "total": {"format": "decimal"}},
    required=["total"],
    rules=("invoice_amounts_sum",),
)

ERIKSSON = {
    "mrz_line1": TD3[0],
    "mrz_line2": TD3[1],
    "document_number": "L898902C3",
    "surname": "ERIKSSON",
    "given_names": "ANNA MARIA",
    "birth_date": "1974-08-12",
    "expiry_date": "2012-04-15",
    "sex": "female",
}


def extraction(doc: DocType, confidence: float = 0.99, **values: Any) -> Extraction:
    fields = {name: FieldResult(value=value, confidence=confidence, page=1) for name, value in values.items()}
    return Extraction(doc_type=doc.name, fields=fields)


def codes(result: Extraction, field: str) -> list[str]:
    return [error.code for error in result.fields[field].errors]


def reason_codes(result: Extraction) -> list[tuple[str, str | None]]:
    return [(reason.code, reason.field) for reason in result.reasons]


def all_messages(result: Extraction) -> str:
    texts = [e.message for f in result.fields.values() for e in f.errors] + [
        r.message for r in result.reasons
    ]
    return "\n".join(texts)


# --- a clean document ------------------------------------------------------------------


def test_valid_id_card_has_no_errors() -> None:
    result = validate(
        extraction(ID_CARD, name="李明", sex="male", birth_date="1990-03-07", id_number=MALE_ID), ID_CARD
    )
    assert all(not field.errors for field in result.fields.values())
    assert result.reasons == []


def test_input_is_not_mutated_and_validation_is_idempotent() -> None:
    original = extraction(ID_CARD, name="李明", id_number=MALE_ID[:-1] + "4")
    before = original.model_dump()
    once = validate(original, ID_CARD)
    assert original.model_dump() == before
    assert once is not original and once.fields["id_number"] is not original.fields["id_number"]
    twice = validate(once, ID_CARD)
    assert twice.model_dump() == once.model_dump()


# --- number formats --------------------------------------------------------------------


def test_wrong_id_check_digit_is_invalid_checksum_with_masked_message() -> None:
    wrong = MALE_ID[:-1] + "4"
    result = validate(extraction(ID_CARD, name="李明", id_number=wrong), ID_CARD)
    assert codes(result, "id_number") == ["invalid_checksum"]
    message = result.fields["id_number"].errors[0].message
    assert "(expected 3)" in message
    assert "**************1234" in message
    assert wrong not in all_messages(result)
    [reason] = result.reasons
    assert (reason.stage, reason.code, reason.field, reason.page) == (
        Stage.VALIDATE,
        "invalid_checksum",
        "id_number",
        1,
    )


@pytest.mark.parametrize(
    ("number", "code", "words"),
    [
        (MALE_ID[:-2], "invalid_format", "wrong length (16 characters)"),
        ("11010119900307A233", "invalid_format", "not in the cn-ric format"),
        (ric_number("11010119901332123"), "invalid_component", "birth date"),
        (ric_number("99999919900307123"), "invalid_component", "region code"),
    ],
)
def test_id_number_error_codes_follow_the_stdnum_exception(number: str, code: str, words: str) -> None:
    result = validate(extraction(ID_CARD, name="李明", id_number=number), ID_CARD)
    assert codes(result, "id_number") == [code]
    assert words in result.fields["id_number"].errors[0].message
    assert number not in all_messages(result)


def test_bank_card_and_iban_checksums() -> None:
    result = validate(extraction(CARD, card_number="4111111111111112", iban="GB83WEST12345698765432"), CARD)
    assert codes(result, "card_number") == ["invalid_checksum"]
    assert "(expected 1)" in result.fields["card_number"].errors[0].message
    assert "************1112" in result.fields["card_number"].errors[0].message
    assert codes(result, "iban") == ["invalid_checksum"]
    assert "(expected 82)" in result.fields["iban"].errors[0].message
    clean = validate(extraction(CARD, card_number="4111 1111 1111 1111", iban="GB82WEST12345698765432"), CARD)
    assert clean.reasons == []


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("departure", "2024-10-15T14:10", None),
        ("departure", "2024-10-15T14:10:59", None),
        ("departure", "2024-10-15 14:10", "invalid_format"),
        ("departure", "2024-02-30T14:10", "invalid_component"),
        ("price", "117.50", None),
        ("price", "117,50", "invalid_format"),
        ("price", "¥117.50", "invalid_format"),
        ("train_number", "G7608", None),
        ("train_number", "G76088", "schema"),
    ],
)
def test_formats_and_patterns(field: str, value: str, code: str | None) -> None:
    values = {"train_number": "G7608", field: value}
    result = validate(extraction(TICKET, **values), TICKET)
    assert codes(result, field) == ([code] if code else [])


@pytest.mark.parametrize(
    ("value", "code"),
    [("1990-03-07", None), ("19900307", "invalid_format"), ("1990-02-30", "invalid_component")],
)
def test_date_format(value: str, code: str | None) -> None:
    result = validate(extraction(ID_CARD, name="李明", id_number=MALE_ID, birth_date=value), ID_CARD)
    assert codes(result, "birth_date") == ([code] if code else [])


def test_type_and_enum_errors_are_schema() -> None:
    result = validate(extraction(ID_CARD, name=42, sex="unknown", id_number=MALE_ID), ID_CARD)
    assert codes(result, "name") == ["schema"]
    assert "should be a string or null" in result.fields["name"].errors[0].message
    assert codes(result, "sex") == ["schema"]
    assert ("schema", "sex") in reason_codes(result)


def test_unknown_format_keyword_in_schema_is_configuration_error() -> None:
    bad = doctype("bad", {"x": {"format": "cn_ric"}}, required=[])
    with pytest.raises(ConfigurationError, match="unknown format 'cn_ric'"):
        validate(extraction(bad, x="1"), bad)


# --- missing, uncertain, masked, low confidence ----------------------------------------


@pytest.mark.parametrize("name_value", [None, "", "   ", "absent"])
def test_missing_required_field(name_value: str | None) -> None:
    values = {"id_number": MALE_ID} if name_value == "absent" else {"id_number": MALE_ID, "name": name_value}
    result = validate(extraction(ID_CARD, **values), ID_CARD)
    assert codes(result, "name") == ["missing"]
    assert reason_codes(result) == [("missing", "name")]
    assert result.fields["name"].errors[0].message == "Name was not found"


def test_optional_null_field_is_fine() -> None:
    result = validate(extraction(ID_CARD, name="李明", id_number=MALE_ID, birth_date=None), ID_CARD)
    assert result.reasons == []


def test_question_mark_is_uncertain_and_not_checked() -> None:
    unreadable = MALE_ID[:10] + "?" + MALE_ID[11:]
    result = validate(extraction(ID_CARD, name="李?", id_number=unreadable, birth_date="1991-01-01"), ID_CARD)
    assert codes(result, "id_number") == ["uncertain"]  # no checksum verdict on a guess
    assert codes(result, "name") == ["uncertain"]
    assert codes(result, "birth_date") == []  # no consistency verdict against an unreadable ID
    assert "unreadable character" in result.fields["id_number"].errors[0].message
    assert ("uncertain", "id_number") in reason_codes(result)


def test_masked_number_is_unverifiable_and_blocks() -> None:
    result = validate(extraction(ID_CARD, name="李明", id_number="1101**********1233"), ID_CARD)
    assert codes(result, "id_number") == ["unverifiable"]
    assert reason_codes(result) == [("unverifiable", "id_number")]
    assert (
        blocking_errors(result.fields["id_number"], ID_CARD.fields["id_number"])
        == result.fields["id_number"].errors
    )


def test_masked_number_on_allow_masked_field_is_recorded_but_not_blocking() -> None:
    result = validate(extraction(TICKET, train_number="G7608", id_number="3201061982****0417"), TICKET)
    assert codes(result, "id_number") == ["unverifiable"]
    assert result.reasons == []
    assert blocking_errors(result.fields["id_number"], TICKET.fields["id_number"]) == []


def test_allow_masked_field_still_checks_a_full_number() -> None:
    result = validate(extraction(TICKET, train_number="G7608", id_number=MALE_ID[:-1] + "4"), TICKET)
    assert codes(result, "id_number") == ["invalid_checksum"]
    assert reason_codes(result) == [("invalid_checksum", "id_number")]


def test_low_confidence() -> None:
    low = extraction(ID_CARD, confidence=0.5, name="李明", id_number=MALE_ID, birth_date=None)
    result = validate(low, ID_CARD)
    assert codes(result, "name") == ["low_confidence"]
    assert codes(result, "birth_date") == []  # nothing was read, so nothing was read badly
    assert "(0.50)" in result.fields["name"].errors[0].message
    assert validate(low, ID_CARD, min_confidence=0.4).reasons == []


# --- cross-field rules -----------------------------------------------------------------


def test_cn_ric_birth_date_mismatch() -> None:
    result = validate(
        extraction(ID_CARD, name="李明", id_number=MALE_ID, birth_date="1990-03-08", sex="male"), ID_CARD
    )
    assert codes(result, "birth_date") == ["inconsistent"]
    assert codes(result, "id_number") == ["inconsistent"]
    assert codes(result, "sex") == []
    assert "19900307" not in all_messages(result)  # the ID's middle digits stay hidden


@pytest.mark.parametrize(
    ("sex", "number", "ok"), [("女", FEMALE_ID, True), ("男", FEMALE_ID, False), ("female", MALE_ID, False)]
)
def test_cn_ric_sex(sex: str, number: str, ok: bool) -> None:
    result = validate(extraction(ID_CARD, name="李明", id_number=number, sex=sex), ID_CARD)
    assert codes(result, "sex") == ([] if ok else ["inconsistent"])
    assert (("inconsistent", "id_number") in reason_codes(result)) is not ok


def test_cn_ric_rule_is_silent_about_an_invalid_number() -> None:
    result = validate(
        extraction(ID_CARD, name="李明", id_number=MALE_ID[:-1] + "4", birth_date="2000-01-01"), ID_CARD
    )
    assert codes(result, "id_number") == ["invalid_checksum"]
    assert codes(result, "birth_date") == []


def test_mrz_specimen_agrees_with_visual_fields() -> None:
    result = validate(extraction(PASSPORT, **ERIKSSON), PASSPORT)
    assert result.reasons == []


def test_mrz_failing_check_digits_are_named_on_their_line() -> None:
    values = {**ERIKSSON, "mrz_line2": with_char(TD3[1], 13, "8")}  # 840812 instead of 740812
    result = validate(extraction(PASSPORT, **values), PASSPORT)
    messages = [error.message for error in result.fields["mrz_line2"].errors]
    assert codes(result, "mrz_line2").count("invalid_checksum") == 2
    assert any("birth date is wrong (expected 9, found 2)" in m for m in messages)
    assert any("composite" in m for m in messages)
    # the MRZ now says 1984, the visual zone 1974
    assert codes(result, "birth_date") == ["inconsistent"]
    assert "inconsistent" in codes(result, "mrz_line2")


def test_mrz_disagreeing_visual_fields() -> None:
    values = {**ERIKSSON, "surname": "ERIKSON", "document_number": "L898902C4", "sex": "male"}
    result = validate(extraction(PASSPORT, **values), PASSPORT)
    assert codes(result, "surname") == ["inconsistent"]
    assert codes(result, "document_number") == ["inconsistent"]
    assert codes(result, "sex") == ["inconsistent"]
    assert codes(result, "mrz_line1") == ["inconsistent"]  # the names are on line 1 of a TD3
    assert codes(result, "mrz_line2") == ["inconsistent", "inconsistent"]  # number and sex
    assert "L898902C" not in all_messages(result)


def test_mrz_names_allow_transliteration_but_not_other_scripts_to_fail() -> None:
    line1 = "P<UTOMUELLER<<JOERG".ljust(44, "<")
    values = {**ERIKSSON, "mrz_line1": line1, "surname": "Müller", "given_names": "Jörg"}
    assert validate(extraction(PASSPORT, **values), PASSPORT).reasons == []
    values = {**ERIKSSON, "mrz_line1": line1, "surname": "米勒", "given_names": "约尔格"}
    assert validate(extraction(PASSPORT, **values), PASSPORT).reasons == []


def test_td1_document_number_check_digit_is_on_line_1() -> None:
    line1 = with_char(TD1[0], 14, "8")
    values = {"mrz_line1": line1, "mrz_line2": TD1[1], "mrz_line3": TD1[2], "document_number": "D23145890"}
    result = validate(extraction(PASSPORT, **values), PASSPORT)
    assert codes(result, "mrz_line1") == ["invalid_checksum"]
    assert "document number is wrong (expected 7, found 8)" in result.fields["mrz_line1"].errors[0].message
    assert codes(result, "mrz_line2") == ["invalid_checksum"]  # the composite covers line 1 too
    assert codes(result, "document_number") == []


def test_mrz_line_of_the_wrong_length() -> None:
    values = {**ERIKSSON, "mrz_line2": TD3[1][:-1]}
    result = validate(extraction(PASSPORT, **values), PASSPORT)
    assert codes(result, "mrz_line2") == ["invalid_format"]
    assert "wrong length (43 characters)" in result.fields["mrz_line2"].errors[0].message
    assert TD3[1][:30] not in all_messages(result)  # an MRZ line holds the document number
    assert codes(result, "birth_date") == []  # no agreement verdict on an unreadable MRZ


def test_mrz_lines_of_different_layouts() -> None:
    values = {"mrz_line1": TD3[0], "mrz_line2": TD1[1] + "<<<<<<"}  # 44 + 36
    result = validate(extraction(PASSPORT, **values), PASSPORT)
    assert codes(result, "mrz_line2") == ["invalid_format"]
    assert "expected 44" in result.fields["mrz_line2"].errors[0].message


def test_mrz_uncertain_line_skips_the_rule() -> None:
    values = {**ERIKSSON, "mrz_line2": with_char(TD3[1], 13, "?"), "birth_date": "1999-01-01"}
    result = validate(extraction(PASSPORT, **values), PASSPORT)
    assert codes(result, "mrz_line2") == ["uncertain"]
    assert codes(result, "birth_date") == []


def test_mrz_noise_is_tolerated() -> None:
    noisy = TD3[0].lower().replace("<<", "«<", 1) + " "
    result = validate(extraction(PASSPORT, **{**ERIKSSON, "mrz_line1": noisy}), PASSPORT)
    assert result.reasons == []


def test_invoice_amounts_sum() -> None:
    ok = validate(extraction(INVOICE, amount="1000.00", tax="130.00", total="1130.00"), INVOICE)
    assert ok.reasons == []
    bad = validate(extraction(INVOICE, amount="1000.00", tax="130.00", total="1131.00"), INVOICE)
    assert [codes(bad, name) for name in ("amount", "tax", "total")] == [["inconsistent"]] * 3
    assert "1130.00" in bad.fields["total"].errors[0].message


@pytest.mark.parametrize(
    ("rules", "properties", "match"),
    [
        (("no_such_rule",), {"x": {}}, "unknown rule 'no_such_rule'"),
        (("cn_ric_consistency",), {"x": {}}, "needs the properties id_number"),
    ],
)
def test_schema_bugs_raise_configuration_error(rules: tuple[str, ...], properties: dict, match: str) -> None:
    bad = doctype("bad", properties, required=[], rules=rules)
    with pytest.raises(ConfigurationError, match=match):
        validate(extraction(bad, x="1"), bad)


# --- contract: every bundled schema ----------------------------------------------------


def test_bundled_schemas() -> None:
    try:
        doctypes = load_doctypes()
    except ConfigurationError:
        doctypes = {}
    if not doctypes:
        pytest.skip("no bundled schemas yet")
    problems = []
    for name, doc in doctypes.items():
        Draft202012Validator.check_schema(doc.schema)
        assert doc.examples, f"{name} has no examples"
        for i, example in enumerate(doc.examples):
            # The whole stage, formats and rules included; a masked number on an allow_masked
            # field (a ticket's ID) is recorded as unverifiable but blocks nothing.
            result = validate(extraction(doc, confidence=1.0, **example), doc)
            problems += [f"{name} example {i}: {r.code} on {r.field}: {r.message}" for r in result.reasons]
            for field, value in result.fields.items():
                problems += [
                    f"{name} example {i}: blocking {e.code} on {field}"
                    for e in blocking_errors(value, doc.fields.get(field))
                ]
    assert not problems, "\n".join(problems)


def test_a_digit_in_an_mrz_name_is_a_misread() -> None:
    # Names are not covered by check digits; 0 for O in "VZOR" (a real eval-dev read) must not pass.
    line1 = "P<CZESPECIMEN<<VZ0R".ljust(44, "<")
    values = {**ERIKSSON, "mrz_line1": line1, "surname": "SPECIMEN", "given_names": "VZ0R"}
    passport = load_doctypes()["passport"]
    result = validate(extraction(passport, **values), passport)
    assert codes(result, "given_names") == ["schema"]
    assert codes(result, "surname") == []


def test_country_codes_are_letters_and_germany_is_d() -> None:
    passport = load_doctypes()["passport"]
    german = validate(extraction(passport, nationality="D", issuing_country="D"), passport)
    misread = validate(extraction(passport, nationality="UT0", issuing_country="UTO"), passport)
    assert codes(german, "nationality") == [] and codes(german, "issuing_country") == []
    assert codes(misread, "nationality") == ["schema"] and codes(misread, "issuing_country") == []


def test_a_fields_own_threshold_raises_the_runs_and_never_lowers_it() -> None:
    receipt = load_doctypes()["receipt"]  # company asks for 0.97
    read = dict(company="SHOP SDN BHD", date="2018-12-25", address="1 JALAN A, 81100 JOHOR", total="9.00")
    assert codes(validate(extraction(receipt, 0.95, **read), receipt), "company") == ["low_confidence"]
    strict = validate(extraction(receipt, 0.985, **read), receipt, min_confidence=0.99)
    assert codes(strict, "company") == ["low_confidence"]
