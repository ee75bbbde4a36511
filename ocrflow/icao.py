"""ICAO 9303 code sets for machine-readable zones, and the one repair they allow.

No check digit covers an MRZ's document code, issuing state or nationality, so a misread
there (``1D`` for ``ID``, ``UT0`` for ``UTO``) would pass every check. These fields take
their values from defined sets, which is what makes them checkable:

- document code (Doc 9303 parts 4-7): ``P`` then a letter or ``<`` on a passport (TD3);
  ``A``, ``C`` or ``I`` then a letter other than ``V``, or ``<``, on an identity card
  (TD1, TD2); ``V`` then a letter or ``<`` on a visa (MRV-A, MRV-B);
- issuing state and nationality (Doc 9303 part 3): an ISO 3166-1 alpha-3 code, or one of
  ICAO's own codes (``D`` for Germany, British nationality classes, United Nations
  bodies, stateless persons and refugees ...), or ``UTO``, the specimen state of
  Doc 9303's examples.

These fields hold only letters (and fillers), so a digit in one is a misread. A digit
is read back as a letter (:data:`DIGIT_LOOKALIKES`) only when exactly one of the
possible readings is in the field's set; otherwise the field stays as read and fails
its check. Names have no set, but the page prints them in its visual zone: a name is
repaired only when exactly one reading is a word printed there. A repair is always
reported, never silent.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from iso3166 import countries_by_alpha3

ICAO_CODES: dict[str, str] = {
    "D": "Germany",
    "EUE": "European Union",
    "GBD": "British Overseas Territories citizen",
    "GBN": "British National (Overseas)",
    "GBO": "British Overseas citizen",
    "GBP": "British protected person",
    "GBS": "British subject",
    "RKS": "Kosovo",
    "UNA": "specialized agency of the United Nations",
    "UNK": "resident of Kosovo to whom UNMIK issued a travel document",
    "UNO": "United Nations Organization",
    "XBA": "African Development Bank",
    "XCC": "Caribbean Community (CARICOM)",
    "XCE": "Council of Europe",
    "XCO": "Common Market for Eastern and Southern Africa (COMESA)",
    "XDC": "Southern African Development Community",
    "XEC": "Economic Community of West African States (ECOWAS)",
    "XES": "Organisation of Eastern Caribbean States",
    "XIM": "African Export-Import Bank",
    "XMP": "Parliamentary Assembly of the Mediterranean",
    "XOM": "Sovereign Military Order of Malta",
    "XPO": "International Criminal Police Organization (INTERPOL)",
    "XXA": "stateless person",
    "XXB": "refugee (1951 Convention)",
    "XXC": "refugee (other)",
    "XXX": "unspecified nationality",
    "UTO": "Utopia, the specimen state of ICAO Doc 9303",
}
"""Codes ICAO 9303 part 3 defines besides ISO 3166-1 alpha-3."""

COUNTRY_CODES: frozenset[str] = frozenset(countries_by_alpha3) | frozenset(ICAO_CODES)

DIGIT_LOOKALIKES: dict[str, str] = {
    "0": "ODQ",
    "1": "IL",
    "2": "Z",
    "4": "A",
    "5": "S",
    "6": "G",
    "7": "T",
    "8": "B",
}
"""The letters OCR confuses with each digit; every one is tried, so a repair is unique."""

_FIRST_LETTERS = {"TD1": "ACI", "TD2": "ACI", "TD3": "P", "MRVA": "V", "MRVB": "V"}


def is_country_code(code: str) -> bool:
    """An issuing state or nationality as decoded (fillers removed): ``UTO``, ``D``."""
    return isinstance(code, str) and code in COUNTRY_CODES


def is_document_code(code: str, kind: str | None = None) -> bool:
    """A document code (fillers removed) valid for the layout ``kind``, or for any layout."""
    if not isinstance(code, str) or not 1 <= len(code) <= 2 or not code.isascii() or not code.isalpha():
        return False
    first, second = code[0], code[1:]
    kinds = [kind] if kind else list(_FIRST_LETTERS)
    return any(
        first in _FIRST_LETTERS.get(k, "") and not (second == "V" and k in ("TD1", "TD2")) for k in kinds
    )


@dataclass(frozen=True)
class Repair:
    """A letter-only MRZ field read with digits, and its one valid reading."""

    component: str
    found: str
    repaired: str
    line: int = 0
    """The 1-based MRZ line it is on, where known."""
    basis: str = "code"
    """``code``: the one reading in ICAO's code sets; ``visual``: the one printed on the page."""

    def describe(self, title: str) -> str:
        swaps = ", ".join(f"{a} as {b}" for a, b in zip(self.found, self.repaired, strict=True) if a != b)
        why = (
            "that is printed in the visual zone"
            if self.basis == "visual"
            else "that is a valid ICAO 9303 code"
        )
        reading = f"{self.repaired!r} is its only reading {why}"
        return f"{title} was read as {self.found!r}; {reading} (read {swaps}), so it was corrected"


def repair_letters(found: str, valid: Callable[[str], bool]) -> str | None:
    """The one reading of ``found`` with its digits read as letters that ``valid`` accepts, else None."""
    if not any(ch in DIGIT_LOOKALIKES for ch in found):
        return None
    options = [DIGIT_LOOKALIKES.get(ch, ch) for ch in found]
    readings = {"".join(letters) for letters in itertools.product(*options)}
    valid_readings = [reading for reading in readings if valid(reading)]
    return valid_readings[0] if len(valid_readings) == 1 else None
