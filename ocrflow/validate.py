"""The validation stage: check an extraction against its document type's JSON Schema.

Problems are recorded as data, never raised: each :class:`FieldResult` gets
:class:`FieldError` items (codes in ``schemas/README.md``), and every error that should stop
automatic acceptance also becomes a :class:`Reason` on the extraction. In order:

1. per field: ``uncertain`` (a ``?`` in the value) and ``unverifiable`` (a masked number);
   such values cannot be checked, so the schema's verdict on them is not recorded;
2. JSON Schema Draft 2020-12 with ocrflow's formats: ``missing``, ``invalid_format``,
   ``invalid_checksum``, ``invalid_component`` (by the stdnum exception's type), ``schema``;
3. the schema's cross-field ``rules``: ``inconsistent``, or ``invalid_checksum`` on an MRZ line;
4. ``low_confidence`` below ``min_confidence``.

Only a schema bug raises (:class:`ConfigurationError`): an unknown rule or format.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema import ValidationError as SchemaError

from ocrflow import icao
from ocrflow.checks import (
    FORMAT_CHECKS,
    InvalidChecksum,
    InvalidComponent,
    InvalidFormat,
    InvalidLength,
    MrzData,
    ValidationError,
    cn_ric,
    is_masked,
    mrz_line,
    parse_mrz,
)
from ocrflow.doctypes import DocType, FieldSpec
from ocrflow.errors import ConfigurationError
from ocrflow.masking import mask_value
from ocrflow.models import Extraction, FieldError, FieldResult, Reason, Stage
from ocrflow.verify import READINGS_DISAGREE, UNGROUNDED

__all__ = ["FORMATS", "RULES", "blocking_errors", "format_checker", "mask_value", "validate"]

# Formats whose values are personal (an MRZ line holds the document number and birth date):
# shown masked in every message.
_UNREADABLE = ("?", "？")


# --- formats -------------------------------------------------------------------------

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?")
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _check_date(value: object) -> bool:
    # fromisoformat alone would also take "20240131" and week dates; the README fixes YYYY-MM-DD.
    if not isinstance(value, str):
        return True
    if not _DATE.fullmatch(value):
        raise InvalidFormat()
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        raise InvalidComponent() from None
    return True


def _check_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATETIME.fullmatch(value):
        raise InvalidFormat()
    try:
        datetime.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidComponent() from None
    return True


def _check_decimal(value: object) -> bool:
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        raise InvalidFormat()
    return True


def _number_format(name: str) -> Callable[[object], bool]:
    check = FORMAT_CHECKS[name]

    def check_format(value: object) -> bool:
        return not isinstance(value, str) or bool(check.validate(value))

    return check_format


def _code_format(valid: Callable[[str], bool]) -> Callable[[object], bool]:
    """A check that letters are a code of the set; that they are letters is the pattern's job."""

    def check_format(value: object) -> bool:
        if isinstance(value, str) and re.fullmatch(r"[A-Z]{1,3}", value) and not valid(value):
            raise InvalidComponent()
        return True

    return check_format


FORMATS: dict[str, Callable[[object], bool]] = {
    "date": _check_date,
    "date-time": _check_datetime,
    "decimal": _check_decimal,
    "icao-country": _code_format(icao.is_country_code),
    "icao-document-code": _code_format(icao.is_document_code),
    **{name: _number_format(name) for name in FORMAT_CHECKS},
}
"""Every ``format`` a schema may use; each returns True or raises a stdnum ValidationError."""


def format_checker() -> FormatChecker:
    """A FormatChecker with exactly ocrflow's formats; the stdnum exception becomes ``error.cause``."""
    checker = FormatChecker(formats=())
    for name, func in FORMATS.items():
        checker.checks(name, raises=ValidationError)(func)
    return checker


# --- messages ------------------------------------------------------------------------


def _is_secret(spec: FieldSpec | None) -> bool:
    return spec is not None and spec.masked_in_views


def _shown(value: Any, spec: FieldSpec | None) -> str:
    """The value as a message may show it: masked for ID and card numbers, cut if long."""
    text = str(value)
    if _is_secret(spec):
        return mask_value(text)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _title(name: str, spec: FieldSpec | None) -> str:
    return spec.title if spec is not None else name.replace("_", " ")


def _format_error(name: str, spec: FieldSpec | None, error: SchemaError) -> FieldError:
    """Map a failed ``format`` to a field error by the stdnum exception's type, never its text."""
    fmt, value, cause = error.validator_value, error.instance, error.cause
    title, shown = _title(name, spec), _shown(value, spec)
    check = FORMAT_CHECKS.get(fmt)
    if isinstance(cause, InvalidChecksum):
        expected = check.expected_check_digits(value) if check is not None else None
        hint = f" (expected {expected})" if expected else ""
        return FieldError(code="invalid_checksum", message=f"{title} {shown}: the check digit is wrong{hint}")
    if isinstance(cause, InvalidComponent):
        return FieldError(
            code="invalid_component", message=f"{title} {shown}: {_component_problem(fmt, value)}"
        )
    if isinstance(cause, InvalidLength) and check is not None:
        problem = f"has the wrong length ({len(check.compact(value))} characters)"
    elif fmt == "mrz-line":
        bad = sorted(set(re.sub(r"[A-Z0-9<]", "", mrz_line.compact(value))))
        problem = f"has characters outside A-Z, 0-9 and '<': {' '.join(bad)}"
    else:
        problem = f"is not in the {fmt} format"
    return FieldError(code="invalid_format", message=f"{title} {shown} {problem}")


def _component_problem(fmt: str, value: Any) -> str:
    if fmt == "cn-ric":
        try:
            ric_birth = cn_ric.compact(value)[6:14]
            datetime.datetime.strptime(ric_birth, "%Y%m%d")
        except ValueError:
            return "the birth date in it is not a real date"
        return "the region code in it is unknown"
    if fmt == "iban":
        return "the country or bank code is not valid"
    if fmt in ("date", "date-time"):
        return "is not a real calendar date or time"
    if fmt == "icao-country":
        return "is not a country code of ICAO 9303 (ISO 3166-1 alpha-3 or one of ICAO's own codes)"
    if fmt == "icao-document-code":
        return "is not an ICAO 9303 document code (P for passports, A, C or I for cards, V for visas)"
    return "a part of it is not valid"


def _schema_error(name: str, spec: FieldSpec | None, error: SchemaError) -> FieldError:
    """A type, pattern or enum failure, said without echoing a possibly secret value."""
    title = _title(name, spec)
    if error.validator == "type":
        expected = error.validator_value
        kinds = " or ".join(expected) if isinstance(expected, list) else expected
        message = f"{title} should be a {kinds}"
    elif error.validator == "pattern":
        message = f"{title} {_shown(error.instance, spec)} does not have the expected form"
    elif error.validator == "enum":
        choices = ", ".join(str(choice) for choice in error.validator_value)
        message = f"{title} {_shown(error.instance, spec)} is not one of: {choices}"
    else:
        message = f"{title} fails the schema's {error.validator!r} rule"
    return FieldError(code="schema", message=message)


# --- cross-field rules ---------------------------------------------------------------

_Found = list[tuple[str, FieldError]]
"""(field name, error) pairs a rule found."""

_SEX = {"male": "male", "m": "male", "男": "male", "female": "female", "f": "female", "女": "female"}


def _sex(value: Any) -> str | None:
    return _SEX.get(value.strip().lower()) if isinstance(value, str) else None


def _iso_date(value: Any) -> datetime.date | None:
    try:
        return datetime.date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _cn_ric_consistency(values: dict[str, Any], doctype: DocType) -> _Found:
    """Birth date and sex must agree with what the PRC ID number encodes."""
    number = values.get("id_number")
    if not cn_ric.is_valid(number):
        return []  # missing, masked, uncertain or invalid: reported already, nothing to compare
    found: _Found = []
    id_title = _title("id_number", doctype.fields.get("id_number"))
    birth = _iso_date(values.get("birth_date"))
    if birth is not None and birth != cn_ric.birth_date(number):
        message = f"birth date does not match the birth date in the {id_title}"
        found += [
            (field, FieldError(code="inconsistent", message=message)) for field in ("birth_date", "id_number")
        ]
    sex = _sex(values.get("sex"))
    if sex is not None and sex != cn_ric.sex(number):
        message = (
            f"sex does not match the {id_title} (its 17th digit is {'odd' if sex == 'female' else 'even'})"
        )
        found += [(field, FieldError(code="inconsistent", message=message)) for field in ("sex", "id_number")]
    return found


_MRZ_LINES = ("mrz_line1", "mrz_line2", "mrz_line3")
_MRZ_LENGTHS = {3: (30,), 2: (36, 44)}
# Transliterations ICAO 9303 allows besides plain accent stripping (Müller -> MUELLER).
_TRANSLIT = str.maketrans({"Ä": "AE", "Ö": "OE", "Ü": "UE", "Å": "AA", "Æ": "AE", "Ø": "OE"})


def _letters(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.upper())
    return "".join(char for char in decomposed if "A" <= char <= "Z")


def _same_name(visual: Any, printed: str) -> bool | None:
    """Whether a visual name matches the MRZ's, allowing ICAO transliteration.

    None (cannot say) for a name without Latin letters, such as 张三 against ZHANG SAN.
    """
    if not isinstance(visual, str) or not printed or not _letters(visual):
        return None
    return _letters(printed) in {_letters(visual), _letters(visual.upper().translate(_TRANSLIT))}


def _same_date(visual: Any, printed: str) -> bool | None:
    date = _iso_date(visual)
    if date is None or not printed.isdigit():
        return None
    return date.strftime("%y%m%d") == printed  # YYMMDD: no century to guess


def _same_text(visual: Any, printed: str) -> bool | None:
    if not isinstance(visual, str) or not printed:
        return None
    return re.sub(r"[\s<-]", "", visual.upper()) == printed.replace(" ", "")


def _same_sex(visual: Any, printed: str) -> bool | None:
    return None if _sex(visual) is None or printed not in ("M", "F") else _sex(visual) == _sex(printed)


# Visual field -> (MRZ component, comparison).
_MRZ_AGREEMENT: dict[str, tuple[str, Callable[[Any, str], bool | None]]] = {
    "document_number": ("document_number", _same_text),
    "birth_date": ("birth_date", _same_date),
    "expiry_date": ("expiry_date", _same_date),
    "sex": ("sex", _same_sex),
    "surname": ("surname", _same_name),
    "given_names": ("given_names", _same_name),
}


def _mrz_check_digits(values: dict[str, Any], doctype: DocType) -> _Found:
    """Every ICAO 9303 check digit must hold, and the MRZ must agree with the visual fields."""
    names = [name for name in _MRZ_LINES if isinstance(values.get(name), str)]
    if "mrz_line1" not in names or "mrz_line2" not in names:
        return []  # a missing or unreadable line is reported already
    lines = [mrz_line.compact(values[name]) for name in names]
    try:
        data = parse_mrz(lines)
    except InvalidLength:
        # Each line has a valid length on its own (the mrz-line format), so the layouts are
        # mixed: line 1, which names the document type, decides which one was meant.
        expected = min(_MRZ_LENGTHS[len(lines)], key=lambda n: abs(n - len(lines[0])))
        return [
            (
                name,
                FieldError(
                    code="invalid_format", message=f"MRZ line has {len(line)} characters, expected {expected}"
                ),
            )
            for name, line in zip(names, lines, strict=True)
            if len(line) != expected
        ]
    except ValidationError:
        return []  # a character outside A-Z 0-9 <: the mrz-line format reported it
    found: _Found = [
        (
            f"mrz_line{check.line}",
            FieldError(
                code="invalid_checksum",
                message=f"MRZ check digit for the {check.name.replace('_', ' ')} is wrong "
                f"(expected {check.expected}, found {check.found})",
            ),
        )
        for check in data.checks
        if not check.valid
    ]
    found += _mrz_codes(data)
    for field, (component, same) in _MRZ_AGREEMENT.items():
        if field in doctype.fields and same(values.get(field), getattr(data, component)) is False:
            message = f"{_title(field, doctype.fields[field])} does not match the machine-readable zone"
            found.append((field, FieldError(code="inconsistent", message=message)))
            found.append(
                (f"mrz_line{data.line_of(component)}", FieldError(code="inconsistent", message=message))
            )
    return found


def _mrz_codes(data: MrzData) -> _Found:
    """The MRZ's document code and country codes must be in ICAO 9303's sets: no check digit covers them."""
    found: _Found = []
    codes = [
        ("document_type", "document code", icao.is_document_code(data.document_type, data.kind)),
        ("issuing_country", "issuing state", icao.is_country_code(data.issuing_country)),
        ("nationality", "nationality", icao.is_country_code(data.nationality)),
    ]
    for component, what, valid in codes:
        if valid:
            continue
        value = getattr(data, component)
        if component == "document_type":
            message = f"MRZ {what} {value!r} is not an ICAO 9303 document code for a {data.kind} document"
        else:
            message = f"MRZ {what} {value!r} is not an ICAO 9303 country code"
        # The decoded field, where the schema has one, fails its own format check.
        found.append(
            (f"mrz_line{data.line_of(component)}", FieldError(code="invalid_component", message=message))
        )
    return found


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(value) if isinstance(value, str) else None
    except InvalidOperation:
        return None


def _invoice_amounts_sum(values: dict[str, Any], doctype: DocType) -> _Found:
    """The amount before tax plus the tax must equal the total."""
    amount, tax, total = (_decimal(values.get(name)) for name in ("amount", "tax", "total"))
    if amount is None or tax is None or total is None or amount + tax == total:
        return []
    message = f"amount before tax {amount} + tax {tax} = {amount + tax}, but the total is {total}"
    return [(name, FieldError(code="inconsistent", message=message)) for name in ("amount", "tax", "total")]


RULES: dict[str, tuple[Callable[[dict[str, Any], DocType], _Found], tuple[str, ...]]] = {
    "cn_ric_consistency": (_cn_ric_consistency, ("id_number",)),
    "mrz_check_digits": (_mrz_check_digits, ("mrz_line1", "mrz_line2")),
    "invoice_amounts_sum": (_invoice_amounts_sum, ("amount", "tax", "total")),
}
"""Cross-field rules by the name used in ``x-ocrflow.rules``, with the fields each needs."""


def _check_doctype(doctype: DocType) -> None:
    """Refuse a schema that names an unknown rule or format, or a rule without its fields."""
    for rule in doctype.rules:
        if rule not in RULES:
            known = ", ".join(sorted(RULES))
            raise ConfigurationError(f"{doctype.name}: unknown rule {rule!r}; known rules: {known}")
        missing = [name for name in RULES[rule][1] if name not in doctype.fields]
        if missing:
            raise ConfigurationError(
                f"{doctype.name}: rule {rule!r} needs the properties {', '.join(missing)}"
            )
    for spec in doctype.fields.values():
        if spec.format is not None and spec.format not in FORMATS:
            known = ", ".join(sorted(FORMATS))
            raise ConfigurationError(
                f"{doctype.name}.{spec.name}: unknown format {spec.format!r}; known formats: {known}"
            )


# --- the stage -----------------------------------------------------------------------


def _is_number_field(spec: FieldSpec | None) -> bool:
    """Fields where a '*' or 'xx' run means masking rather than text."""
    return spec is not None and (spec.masked_in_views or spec.allow_masked)


def _unjudgeable(name: str, value: Any, spec: FieldSpec | None) -> FieldError | None:
    """An error for a value that cannot be checked at all: unreadable or masked."""
    if not isinstance(value, str):
        return None
    title = _title(name, spec)
    if any(mark in value for mark in _UNREADABLE):
        return FieldError(code="uncertain", message=f"{title} has an unreadable character (?)")
    if _is_number_field(spec) and is_masked(value):
        return FieldError(
            code="unverifiable", message=f"{title} is printed partly masked, so it cannot be verified"
        )
    return None


def _schema_errors(instance: dict[str, Any], doctype: DocType) -> Iterator[tuple[str | None, FieldError]]:
    """JSON Schema errors as (field or None for the whole document, error)."""
    validator = Draft202012Validator(doctype.schema, format_checker=format_checker())
    missing: set[str] = set()
    for error in validator.iter_errors(instance):
        field = str(error.path[0]) if error.path else None
        spec = doctype.fields.get(field) if field is not None else None
        if error.validator == "required":
            # jsonschema yields one error per missing name, each carrying the whole list.
            for name in error.validator_value:
                if isinstance(error.instance, dict) and name not in error.instance and name not in missing:
                    missing.add(name)
                    title = _title(name, doctype.fields.get(name))
                    yield (field or name), FieldError(code="missing", message=f"{title} was not found")
        elif error.validator == "format":
            yield field, _format_error(field or "document", spec, error)
        else:
            yield field, _schema_error(field or "document", spec, error)


GROUNDING_ERRORS = frozenset({UNGROUNDED, READINGS_DISAGREE})
"""Field error codes of :mod:`ocrflow.verify`: the page does not print the value as the engine read it."""

NOTES = frozenset({"repaired"})
"""Field error codes that record what was done to a value rather than a problem with it:
reported on the field and as a reason, but they do not stop acceptance."""


def _blocks(error: FieldError, spec: FieldSpec | None) -> bool:
    if error.code in NOTES:
        return False
    return not (error.code == "unverifiable" and spec is not None and spec.allow_masked)


def blocking_errors(field_result: FieldResult, spec: FieldSpec | None) -> list[FieldError]:
    """The errors that should stop automatic acceptance of a field.

    A masked number on a field whose document prints it masked (``allow_masked``) is
    recorded as ``unverifiable`` but does not block; every other error does.
    """
    return [error for error in field_result.errors if _blocks(error, spec)]


def validate(extraction: Extraction, doctype: DocType, *, min_confidence: float = 0.9) -> Extraction:
    """Return a copy of ``extraction`` with field errors and validation reasons added.

    Errors already present are not added twice, so validating again (after a review
    edit, or on a retried task) gives the same result.
    """
    _check_doctype(doctype)
    result = extraction.model_copy(deep=True)
    new: list[tuple[str | None, FieldError]] = []

    # A blank string is "not found" like None, so `required` catches both.
    values = {
        name: None if isinstance(field.value, str) and not field.value.strip() else field.value
        for name, field in result.fields.items()
    }
    unjudgeable: set[str] = set()
    for name, value in values.items():
        error = _unjudgeable(name, value, doctype.fields.get(name))
        if error is not None:
            unjudgeable.add(name)
            new.append((name, error))

    instance = {name: value for name, value in values.items() if value is not None}
    failed: set[str] = set()
    for field, error in _schema_errors(instance, doctype):
        if field in unjudgeable:
            continue  # a pattern or checksum verdict on a '?' or masked value means nothing
        new.append((field, error))
        if field is not None:
            failed.add(field)

    # Rules compare only values that passed their own checks; the rest are reported already.
    checked = {name: None if name in unjudgeable | failed else value for name, value in values.items()}
    for rule in doctype.rules:
        new.extend(RULES[rule][0](checked, doctype))

    for name, field in result.fields.items():
        spec = doctype.fields.get(name)
        # A schema may ask more of a field whose misreads the OCR score hides (long names), never less.
        # That is about OCR scores: a confidence made from independent evidence is a probability already.
        ocr_scored = field.evidence is None or "prior" not in field.evidence.factors
        hint = spec.hints.get("min_confidence", 0.0) if spec and ocr_scored else 0.0
        threshold = max(hint, min_confidence)
        # A value the independent reading does not support says so already; its confidence is low for that.
        explained = any(error.code in GROUNDING_ERRORS for error in field.errors)
        if values[name] is not None and field.confidence < threshold and not explained:
            title = _title(name, spec)
            message = f"{title} was read with low confidence ({field.confidence:.2f})"
            new.append((name, FieldError(code="low_confidence", message=message)))

    for name, error in new:
        _record(result, doctype, name, error)
    return result


def _record(result: Extraction, doctype: DocType, name: str | None, error: FieldError) -> None:
    """Add one error to its field (creating the field if absent) and, if it blocks, a reason."""
    page = None
    if name is not None:
        field = result.fields.setdefault(name, FieldResult())
        if error not in field.errors:
            field.errors.append(error)
        if not _blocks(error, doctype.fields.get(name)):
            return
        page = field.page
    reason = Reason(stage=Stage.VALIDATE, code=error.code, message=error.message, field=name, page=page)
    if reason not in result.reasons:
        result.reasons.append(reason)
