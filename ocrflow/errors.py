"""ocrflow's one exception hierarchy.

Expected failures of a document (a bad checksum, a missing field, an unreadable page)
are *data*: :class:`ocrflow.models.Reason` items on the outcome. Exceptions are for
failures of the machinery, and they say whether trying again can help::

    OcrflowError
    ├── ConfigurationError      a setting is wrong; fix it and run again (user error)
    ├── InputError              a document cannot be read as given (permanent)
    ├── TransientError          try again later: rate limit, timeout, 5xx (retried)
    ├── PermanentError          trying again will not help (never retried)
    │   └── EngineError         an OCR engine refused or failed on this input
    └── ReviewError             a review-queue operation cannot be done as asked
        ├── ItemNotFound
        ├── ClaimConflict       someone else holds the item, or it was decided already
        └── InvalidDecision     the decided values fail validation and nobody overrode them

Vendor SDK errors are translated into these where the SDK is called, by exception
type and status code, never by message text. Prefect's task retries are gated by
:func:`is_retryable`, so only :class:`TransientError` is ever retried.
"""

from __future__ import annotations


class OcrflowError(Exception):
    """Base of every error ocrflow raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigurationError(OcrflowError):
    """A setting or argument is wrong; the message says what to change."""

    code = "configuration"


class InputError(OcrflowError):
    """A document cannot be read as given (corrupt, encrypted, empty, too large)."""

    code = "unreadable_input"


class TransientError(OcrflowError):
    """A failure that may pass: retry with backoff."""

    code = "transient"


class PermanentError(OcrflowError):
    """A failure that retrying cannot fix."""

    code = "permanent"


class EngineError(PermanentError):
    """An OCR engine failed on a page in a way that retrying will not change."""

    code = "engine_failed"


class ReviewError(OcrflowError):
    """A queue operation that cannot be done as asked; the message says why."""

    code = "review"


class ItemNotFound(ReviewError):
    code = "not_found"


class ClaimConflict(ReviewError):
    """Someone else holds the item, it was decided already, or the caller's lease ran out."""

    code = "claim_conflict"


class InvalidDecision(ReviewError):
    """A decision whose values fail validation, without an explicit override and its note.

    ``fields`` maps each invalid field to its messages, for the form to show.
    """

    code = "invalid_values"

    def __init__(self, message: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}


def is_retryable(exc: BaseException) -> bool:
    """True only for errors that a later attempt may not hit."""
    return isinstance(exc, TransientError)
