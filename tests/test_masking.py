"""Masking by length: at most a third of a number's characters shown, never more than its last four."""

from __future__ import annotations

import pytest

from ocrflow.checks import FORMAT_CHECKS
from ocrflow.doctypes import load_doctypes
from ocrflow.masking import mask_value, masked_values

# A valid number of every checked format (schemas/README.md), short and long where lengths vary.
CHECKED = {
    "cn-ric": ["110101199003071233", "11010519491231002X"],
    "bank-card": ["6222021234567894", "6222020200112233446", "4111111111111111"],
    "iban": [
        "DE89370400440532013000",
        "DE89 3704 0044 0532 0130 00",
        "NO9386011117947",
        "GB82WEST12345698765432",
    ],
    "mrz-line": [
        "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
        "L898902C36UTO7408122F1204159ZE184226B<<<<<10",
        "I<UTOD231458907<<<<<<<<<<<<<<<",
        "7408122F1204159UTO<<<<<<<<<<<6",
    ],
}
SHORT = ["L898902C3", "D23145890", "E1234567", "12345", "1234", "123", "1"]
"""Passport and ID-card document numbers and other short values a masked field may hold."""


def _check_masked(value: str) -> str:
    masked = mask_value(value)
    significant = [c for c in value if c.isalnum()]
    shown = [c for c in masked if c.isalnum()]
    assert len(masked) == len(value)
    assert len(shown) <= len(significant) / 3 and len(shown) <= 4, (value, masked)
    # What is shown is the tail of the number, in place; separators stay.
    assert shown == significant[len(significant) - len(shown) :], (value, masked)
    for original, hidden in zip(value, masked, strict=True):
        assert hidden == original or (original.isalnum() and hidden == "*")
    return masked


def test_every_checked_number_format_is_covered():
    assert set(CHECKED) == set(FORMAT_CHECKS)
    for name, values in CHECKED.items():
        for value in values:
            assert FORMAT_CHECKS[name].is_valid(value), (name, value)


@pytest.mark.parametrize("value", [v for values in CHECKED.values() for v in values] + SHORT)
def test_at_most_a_third_and_at_most_the_last_four_are_shown(value):
    _check_masked(value)


def test_known_values():
    assert mask_value("110101199003071233") == "**************1233"
    assert mask_value("L898902C3") == "******2C3"  # was L898*02C3: 8 of 9 characters shown
    assert mask_value("1234") == "***4"
    assert mask_value("12") == "**"
    assert mask_value("DE89 3704 0044 0532 0130 00") == "**** **** **** **** **30 00"


def test_every_masked_field_of_every_bundled_type_is_masked_by_length():
    doctypes = load_doctypes()
    for doctype in doctypes.values():
        for example in doctype.schema.get("examples", []):
            masked = masked_values(example, doctype)
            for name in doctype.masked_fields():
                if example.get(name):
                    assert masked[name] == _check_masked(str(example[name])), (doctype.name, name)
