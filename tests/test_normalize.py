from __future__ import annotations

import pytest

from ocrflow import normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("25/12/2018 8:13:39 PM", "2018-12-25"),
        ("DATE: 02/01/18", "2018-01-02"),
        ("02/22/2014", "2014-02-22"),  # impossible day-first: a US date
        ("2019-03-05", "2019-03-05"),
        ("15-JAN-2019", "2019-01-15"),
        ("1990年3月7日", "1990-03-07"),
        ("Mar 05, 2017", "2017-03-05"),  # month first, as US receipts print it
        ("DEC23'14", "2014-12-23"),
        ("MAY08.17", "2017-05-08"),
        ("Closed DEC23 02:52PM", None),  # a day and a time, no year
        ("31/02/2018", None),
        ("no date", None),
    ],
)
def test_dates_become_iso(raw, expected):
    assert normalize.to_date(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("RM 9.00", "9.00"), ("1,130.5", "1130.50"), ("¥117.5元", "117.50"), ("TOTAL", None)],
)
def test_amounts_are_two_decimal_strings(raw, expected):
    assert normalize.amount(raw) == expected


def test_datetime_needs_a_time():
    assert normalize.to_datetime("2024年10月15日14:10开") == "2024-10-15T14:10"
    assert normalize.to_datetime("2024年10月15日") is None
    assert normalize.to_datetime("2024年10月15日 25:10") is None


def test_numbers_keep_only_what_identifies_them():
    assert normalize.id_number("3201 0619 8203 07 001x") == "32010619820307001X"
    assert normalize.id_number("3201061982****0417") == "3201061982****0417"
    assert normalize.card_number("6222 0212 3456 7894") == "6222021234567894"
    assert normalize.card_number("6222 O212") is None
    assert normalize.expiry("VALID THRU 9/28") == "09/28"
    assert normalize.expiry("13/28") is None
    assert normalize.sex("女") == "female" and normalize.sex("?") is None
    assert normalize.mrz("P<UTO ERIKSSON«ANNA") == "P<UTOERIKSSON<ANNA"
