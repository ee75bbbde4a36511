"""Number checks with python-stdnum's contract: ``compact``, ``validate``, ``is_valid``.

Each check is a small stateless object shaped like a stdnum module:

- ``compact(s)`` removes separators and OCR noise that cannot change the number's meaning;
- ``validate(s)`` returns the compact number or raises stdnum's :class:`InvalidFormat`
  (incl. :class:`InvalidLength`), :class:`InvalidChecksum` or :class:`InvalidComponent`;
- ``is_valid(s)`` never raises.

stdnum does the work where it covers a number (PRC resident ID, Luhn, IBAN); ocrflow adds
the ICAO 9303 machine-readable zone (check digits, TD1/TD2/TD3 and visa layouts) in the
same shape. :data:`FORMAT_CHECKS` maps the schema ``format`` names to their checks.

Nothing here guesses a character: ``compact`` never turns an ``O`` into a ``0``, because a
"repaired" digit would make a misread number look verified.
"""

from __future__ import annotations

import datetime
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from stdnum import iban as _iban
from stdnum import luhn
from stdnum.cn import ric
from stdnum.exceptions import (
    InvalidChecksum,
    InvalidComponent,
    InvalidFormat,
    InvalidLength,
    ValidationError,
)
from stdnum.util import clean, isdigits

__all__ = [
    "FORMAT_CHECKS",
    "BankCard",
    "CnRic",
    "Iban",
    "InvalidChecksum",
    "InvalidComponent",
    "InvalidFormat",
    "InvalidLength",
    "Mrz",
    "MrzCheck",
    "MrzData",
    "MrzLine",
    "NumberCheck",
    "ValidationError",
    "bank_card",
    "cn_ric",
    "iban",
    "is_masked",
    "mrz",
    "mrz_check_digit",
    "mrz_line",
    "mrz_score",
    "parse_mrz",
]


class NumberCheck(ABC):
    """The stdnum contract; subclasses implement :meth:`compact` and :meth:`_validate`."""

    name: str = ""

    @abstractmethod
    def compact(self, number: str) -> str:
        """Remove separators and noise; raise InvalidFormat for what is not text."""

    @abstractmethod
    def _validate(self, number: str) -> str:
        """Check an already compacted number; return it or raise a ValidationError."""

    def validate(self, number: str) -> str:
        """Return the compact number, or raise InvalidFormat/InvalidChecksum/InvalidComponent."""
        if not isinstance(number, str):
            raise InvalidFormat()
        return self._validate(self.compact(number))

    def is_valid(self, number: str) -> bool:
        """True only for a valid number; never raises, whatever it is given."""
        try:
            return bool(self.validate(number))
        except ValidationError:
            return False

    def expected_check_digits(self, number: str) -> str | None:
        """The check digit(s) that would make ``number`` valid, if they differ from the printed ones.

        For messages such as "the check digit is wrong (expected 7)"; None when it cannot
        be said (not enough digits, or the checksum that failed is not the main one).
        """
        return None


class CnRic(NumberCheck):
    """PRC resident identity card number (18 characters, ISO 7064 MOD 11-2)."""

    name = "cn-ric"

    def compact(self, number: str) -> str:
        # stdnum keeps inner spaces; OCR puts them between digit groups.
        return clean(number, " -").upper().strip()

    def _validate(self, number: str) -> str:
        try:
            return ric.validate(number)
        except KeyError as exc:
            # stdnum's region table has prefixes without a county entry; such a region is unknown.
            raise InvalidComponent() from exc

    def expected_check_digits(self, number: str) -> str | None:
        number = self.compact(number)
        if len(number) != 18 or not isdigits(number[:-1]):
            return None
        expected = ric.calc_check_digit(number)
        return expected if expected != number[-1] else None

    def birth_date(self, number: str) -> datetime.date:
        """The birth date encoded in a valid number (digits 7 to 14)."""
        return ric.get_birth_date(self.validate(number))

    def sex(self, number: str) -> Literal["male", "female"]:
        """The sex encoded in a valid number: the 17th digit is odd for men."""
        return "male" if int(self.validate(number)[16]) % 2 else "female"


class BankCard(NumberCheck):
    """A payment card number: 12 to 19 digits passing the Luhn check."""

    name = "bank-card"

    def compact(self, number: str) -> str:
        return clean(number, " -").strip()

    def _validate(self, number: str) -> str:
        if not isdigits(number):
            raise InvalidFormat()
        if not 12 <= len(number) <= 19:
            raise InvalidLength()
        return luhn.validate(number)

    def expected_check_digits(self, number: str) -> str | None:
        number = self.compact(number)
        if len(number) < 2 or not isdigits(number):
            return None
        expected = luhn.calc_check_digit(number[:-1])
        return expected if expected != number[-1] else None


class Iban(NumberCheck):
    """International bank account number, with the country's own checks where stdnum has them."""

    name = "iban"

    def compact(self, number: str) -> str:
        return _iban.compact(number)

    def _validate(self, number: str) -> str:
        return _iban.validate(number)

    def expected_check_digits(self, number: str) -> str | None:
        number = _iban.compact(number)
        if len(number) < 5 or not number.isascii() or not number.isalnum():
            return None
        expected = _iban.calc_check_digits(number)
        # A national check digit inside the account number can fail while these pass.
        return expected if expected != number[2:4] else None


# --- ICAO 9303 machine-readable zone -------------------------------------------------

_MRZ_CHARS = re.compile(r"[A-Z0-9<]+")
# Chevrons and look-alikes that OCR reads for the filler '<'; never digits or letters.
_FILLER_LOOKALIKES = str.maketrans({"«": "<", "‹": "<", "〈": "<", "＜": "<", "≤": "<"})


def _compact_mrz_line(line: str) -> str:
    """Uppercase, map filler look-alikes to '<', drop spaces and trailing junk."""
    line = re.sub(r"\s+", "", line.translate(_FILLER_LOOKALIKES)).upper()
    return re.sub(r"[^A-Z0-9<]+$", "", line)


def mrz_check_digit(data: str) -> str:
    """ICAO 9303 check digit: weights 7, 3, 1 over values 0-9, A=10 ... Z=35, '<'=0."""
    if not isinstance(data, str) or not _MRZ_CHARS.fullmatch(data):
        raise InvalidFormat()
    weights = (7, 3, 1)
    total = sum((0 if char == "<" else int(char, 36)) * weights[i % 3] for i, char in enumerate(data))
    return str(total % 10)


@dataclass(frozen=True)
class MrzCheck:
    """One check digit of an MRZ: what it covers, where it is printed, and whether it holds."""

    name: str
    line: int
    found: str
    expected: str
    valid: bool


@dataclass(frozen=True)
class MrzData:
    """The decoded fields of a machine-readable zone, as printed (dates are ``YYMMDD``)."""

    kind: Literal["TD1", "TD2", "TD3", "MRVA", "MRVB"]
    document_type: str
    issuing_country: str
    document_number: str
    birth_date: str
    sex: str
    expiry_date: str
    nationality: str
    surname: str
    given_names: str
    optional_data: str
    optional_data2: str
    checks: tuple[MrzCheck, ...]

    @property
    def valid(self) -> bool:
        return all(check.valid for check in self.checks)

    @property
    def score(self) -> float:
        """Share of check digits that hold (PassportEye's ``valid_score``, as 0..1)."""
        if not self.checks:
            return 0.0
        return sum(check.valid for check in self.checks) / len(self.checks)

    def line_of(self, component: str) -> int:
        """The 1-based MRZ line on which a component (``birth_date``, ``surname`` ...) is printed."""
        if self.kind == "TD1":
            if component in ("document_type", "issuing_country", "document_number", "optional_data"):
                return 1
            return 3 if component in ("surname", "given_names") else 2
        if component in ("document_type", "issuing_country", "surname", "given_names"):
            return 1
        return 2


def _field(text: str) -> str:
    return text.replace("<", " ").strip()


def _names(text: str) -> tuple[str, str]:
    surname, _, given = text.partition("<<")
    return _field(surname), " ".join(_field(given).split())


def _check(name: str, line: int, data: str, found: str) -> MrzCheck:
    expected = mrz_check_digit(data)
    # ICAO 9303 lets an unused optional field carry '<' as its check digit.
    unused = name == "personal_number" and found == "<" and set(data) == {"<"}
    return MrzCheck(name=name, line=line, found=found, expected=expected, valid=found == expected or unused)


def _kind(lines: Sequence[str]) -> Literal["TD1", "TD2", "TD3", "MRVA", "MRVB"]:
    lengths = [len(line) for line in lines]
    visa = lines[0][:1] == "V"
    if lengths == [30, 30, 30]:
        return "TD1"
    if lengths == [36, 36]:
        return "MRVB" if visa else "TD2"
    if lengths == [44, 44]:
        return "MRVA" if visa else "TD3"
    raise InvalidLength()


def parse_mrz(lines: Sequence[str] | str) -> MrzData:
    """Decode an MRZ (a list of lines, or one text with newlines) and compute its check digits.

    Raises InvalidLength for a layout that is not 3x30, 2x36 or 2x44 and InvalidFormat for
    characters outside ``A-Z 0-9 <``; failing check digits are reported in ``checks``.
    """
    lines = mrz.compact(lines).split("\n")
    if not all(_MRZ_CHARS.fullmatch(line) for line in lines):
        raise InvalidFormat()
    kind = _kind(lines)
    if kind == "TD1":
        one, two, three = lines
        surname, given = _names(three)
        return MrzData(
            kind=kind,
            document_type=_field(one[0:2]),
            issuing_country=_field(one[2:5]),
            document_number=_field(one[5:14]),
            optional_data=_field(one[15:30]),
            birth_date=two[0:6],
            sex=two[7],
            expiry_date=two[8:14],
            nationality=_field(two[15:18]),
            optional_data2=_field(two[18:29]),
            surname=surname,
            given_names=given,
            checks=(
                _check("document_number", 1, one[5:14], one[14]),
                _check("birth_date", 2, two[0:6], two[6]),
                _check("expiry_date", 2, two[8:14], two[14]),
                _check("composite", 2, one[5:30] + two[0:7] + two[8:15] + two[18:29], two[29]),
            ),
        )
    one, two = lines
    surname, given = _names(one[5:])
    # TD2/TD3 share positions 0-27 of line 2; what follows differs by layout.
    checks = [
        _check("document_number", 2, two[0:9], two[9]),
        _check("birth_date", 2, two[13:19], two[19]),
        _check("expiry_date", 2, two[21:27], two[27]),
    ]
    if kind == "TD3":
        optional = two[28:42]
        checks.append(_check("personal_number", 2, optional, two[42]))
        checks.append(_check("composite", 2, two[0:10] + two[13:20] + two[21:43], two[43]))
    elif kind == "TD2":
        optional = two[28:35]
        checks.append(_check("composite", 2, two[0:10] + two[13:20] + two[21:35], two[35]))
    else:  # visas carry no composite check digit
        optional = two[28:]
    return MrzData(
        kind=kind,
        document_type=_field(one[0:2]),
        issuing_country=_field(one[2:5]),
        document_number=_field(two[0:9]),
        nationality=_field(two[10:13]),
        birth_date=two[13:19],
        sex=two[20],
        expiry_date=two[21:27],
        optional_data=_field(optional),
        optional_data2="",
        surname=surname,
        given_names=given,
        checks=tuple(checks),
    )


def mrz_score(lines: Sequence[str] | str) -> float:
    """Share of the MRZ's check digits that hold, 0.0 for anything that is not an MRZ."""
    try:
        return parse_mrz(lines).score
    except ValidationError:
        return 0.0


def _mrz_date_ok(yymmdd: str) -> bool:
    if "<" in yymmdd:  # ICAO 9303: an unknown date part is filled with '<'
        return True
    try:
        # 2000 + YY is a leap year exactly when YY % 4 == 0, so 29 February is judged right.
        datetime.date(2000 + int(yymmdd[0:2]), int(yymmdd[2:4]), int(yymmdd[4:6]))
    except ValueError:
        return False
    return True


class Mrz(NumberCheck):
    """A whole machine-readable zone; the "number" is its lines joined by newlines."""

    name = "mrz"

    def compact(self, number: Sequence[str] | str) -> str:
        """Normalise each line (see :func:`_compact_mrz_line`) and drop empty ones."""
        if isinstance(number, str):
            number = number.splitlines()
        try:
            lines = [_compact_mrz_line(line) for line in number]
        except (TypeError, AttributeError):
            raise InvalidFormat() from None
        return "\n".join(line for line in lines if line)

    def validate(self, number: Sequence[str] | str) -> str:
        """Return the compact MRZ if its layout, check digits, dates and sex are all valid."""
        if not isinstance(number, (str, list, tuple)):
            raise InvalidFormat()
        return self._validate(self.compact(number))

    def _validate(self, number: str) -> str:
        data = parse_mrz(number)
        if not data.valid:
            raise InvalidChecksum()
        if not (_mrz_date_ok(data.birth_date) and _mrz_date_ok(data.expiry_date)):
            raise InvalidComponent()
        if data.sex not in ("M", "F", "X", "<"):
            raise InvalidComponent()
        return number


class MrzLine(NumberCheck):
    """One MRZ line as a field value (the ``mrz-line`` format).

    Only ``A-Z``, ``0-9`` and ``<``, and 30, 36 or 44 of them: the only line lengths
    ICAO 9303 has, so a dropped or doubled character is caught on the line itself.
    """

    name = "mrz-line"

    def compact(self, number: str) -> str:
        return _compact_mrz_line(number)

    def _validate(self, number: str) -> str:
        if not _MRZ_CHARS.fullmatch(number):
            raise InvalidFormat()
        if len(number) not in (30, 36, 44):
            raise InvalidLength()
        return number


cn_ric = CnRic()
bank_card = BankCard()
iban = Iban()
mrz = Mrz()
mrz_line = MrzLine()

FORMAT_CHECKS: dict[str, NumberCheck] = {check.name: check for check in (cn_ric, bank_card, iban, mrz_line)}
"""The JSON Schema ``format`` names backed by a number check (see ``schemas/README.md``)."""


# --- masked numbers ------------------------------------------------------------------

# '*' and look-alikes, or a run of two or more x/X (a lone final X is a PRC ID check digit).
_MASK = re.compile(r"[*＊×✱•●]|[xX]{2,}")


def is_masked(number: object) -> bool:
    """True when the number is printed partly masked (``4107**********5515``): unverifiable."""
    return isinstance(number, str) and bool(_MASK.search(number))
