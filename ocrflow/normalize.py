"""Normalisers named by a schema's ``x-ocrflow.normalize``: raw OCR text in, canonical value out.

Each returns ``None`` when the text cannot be read as that kind of value; the
extraction stage records that as an ``invalid_format`` error, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal, InvalidOperation

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1
    )
}
_SPACES = re.compile(r"\s+")


def text(raw: str) -> str | None:
    value = _SPACES.sub(" ", raw).strip(" :：;,")
    return value or None


def upper(raw: str) -> str | None:
    value = text(raw)
    return value.upper() if value else None


def _year(digits: str) -> int:
    # Two-digit years on receipts and tickets are this century's.
    year = int(digits)
    return 2000 + year if len(digits) == 2 else year


def _iso(year: int, month: int, day: int) -> str | None:
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def to_date(raw: str) -> str | None:
    """Day-first numeric dates (the receipts' convention), ISO, CJK and month-name dates."""
    s = raw.strip().upper()
    if m := re.search(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})", s):
        return _iso(int(m[1]), int(m[2]), int(m[3]))
    if m := re.search(r"(\d{4})[/.-](\d{1,2})[/.-](\d{1,2})", s):
        return _iso(int(m[1]), int(m[2]), int(m[3]))
    if m := re.search(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4}|\d{2})(?!\d)", s):
        # Day first unless that is impossible (a US receipt's 02/22/2014).
        return _iso(_year(m[3]), int(m[2]), int(m[1])) or _iso(_year(m[3]), int(m[1]), int(m[2]))
    if m := re.search(r"(\d{1,2})[ -]?([A-Z]{3})[A-Z]*[ -]?(\d{4}|\d{2})(?!\d)", s):
        month = _MONTHS.get(m[2])
        return _iso(_year(m[3]), month, int(m[1])) if month else None
    # Month first, as US receipts print it: "Mar 05, 2017", "DEC23'14" (not "DEC23 02:52PM").
    if m := re.search(r"([A-Z]{3})[A-Z]*\.? ?(\d{1,2})[,.']? ?(\d{4}|\d{2})(?![\d:])", s):
        month = _MONTHS.get(m[1])
        return _iso(_year(m[3]), month, int(m[2])) if month else None
    return None


def to_datetime(raw: str) -> str | None:
    day = to_date(raw)
    m = re.search(r"(\d{1,2})\s*[:：]\s*(\d{2})(?!.*[:：]\s*\d{2})", raw)
    if not day or not m or int(m[1]) > 23 or int(m[2]) > 59:
        return None
    return f"{day}T{int(m[1]):02d}:{m[2]}"


def amount(raw: str) -> str | None:
    """A money amount as a plain two-decimal string: ``"RM 1,130.5"`` -> ``"1130.50"``."""
    m = re.search(r"-?\d[\d,]*(?:\.\d+)?", raw.replace(" ", ""))
    if not m:
        return None
    try:
        value = Decimal(m[0].replace(",", ""))
    except InvalidOperation:
        return None
    return str(value.quantize(Decimal("0.01")))


def digits(raw: str) -> str | None:
    value = re.sub(r"\D", "", raw)
    return value or None


def id_number(raw: str) -> str | None:
    """Keep digits, the check character X and mask stars; drop spaces the OCR inserted."""
    value = re.sub(r"[^\dXx*＊]", "", raw).upper().replace("＊", "*")
    return value or None


def card_number(raw: str) -> str | None:
    value = re.sub(r"[\s-]", "", raw)
    return value if value.isdigit() else None


def sex(raw: str) -> str | None:
    s = raw.strip().upper()
    if s in {"男", "M", "MALE"}:
        return "male"
    if s in {"女", "F", "FEMALE"}:
        return "female"
    return None


def expiry(raw: str) -> str | None:
    m = re.search(r"(\d{1,2})\s*/\s*(\d{2})", raw)
    if not m or not 1 <= int(m[1]) <= 12:
        return None
    return f"{int(m[1]):02d}/{m[2]}"


def mrz(raw: str) -> str | None:
    value = re.sub(r"\s", "", raw.upper()).replace("«", "<")
    return value if re.fullmatch(r"[A-Z0-9<]+", value) else None


NORMALIZERS: dict[str, Callable[[str], str | None]] = {
    "text": text,
    "upper": upper,
    "date": to_date,
    "datetime": to_datetime,
    "amount": amount,
    "digits": digits,
    "id_number": id_number,
    "card_number": card_number,
    "sex": sex,
    "expiry": expiry,
    "mrz": mrz,
}


def levenshtein(a: str, b: str) -> int:
    """The edit distance between two strings (insertions, deletions, substitutions)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]
