"""The small typed models that stages pass to each other.

Stages exchange references (paths and hashes), never pixels: a :class:`PageRef`
names a PNG on disk, so Prefect can hash task inputs and persist results cheaply.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_serializer

Box = list[list[float]]
"""Four ``[x, y]`` corners, clockwise from top-left, in original-page pixels."""

Affine = list[list[float]]
"""A 2x3 affine matrix ``[[a, b, c], [d, e, f]]`` mapping ``(x, y)`` to ``(ax+by+c, dx+ey+f)``."""

IDENTITY: Affine = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


def shown_path(path: Path | str) -> str:
    r"""A path as text every UTF-8 writer takes (result JSON, the database, Prefect's API).

    A file name need not be UTF-8 (bytes from another system's encoding): those bytes show as
    backslash escapes (``\xe9``). Any other path is unchanged.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Status(StrEnum):
    ACCEPTED = "accepted"
    NEEDS_REVIEW = "needs_review"
    REJECTED = "rejected"


class Stage(StrEnum):
    INGEST = "ingest"
    PREPROCESS = "preprocess"
    OCR = "ocr"
    EXTRACT = "extract"
    VALIDATE = "validate"
    ROUTE = "route"
    STORE = "store"


class Reason(Frozen):
    """Why a document did not simply pass: machine-readable and readable by a person."""

    stage: Stage
    code: str
    message: str
    field: str | None = None
    page: int | None = None


class SourceRef(Frozen):
    """An input file and its identity (the SHA-256 of its bytes)."""

    path: Path
    document_id: str
    size: int
    media_type: str


class StepRecord(Frozen):
    """What one preprocessing step measured and whether it changed the page."""

    step: str
    applied: bool
    detail: str = ""
    measurements: dict[str, float] = Field(default_factory=dict)


class PageRef(Frozen):
    """One page image on disk, ready for the next stage.

    ``to_original`` maps this image's pixel coordinates back to the page as first
    rendered or decoded, so OCR boxes can be reported in original-image pixels.
    """

    document_id: str
    page_number: int
    path: Path
    sha256: str
    width: int
    height: int
    to_original: Affine = Field(default_factory=lambda: [row[:] for row in IDENTITY])
    steps: tuple[StepRecord, ...] = ()


class IngestResult(Frozen):
    """A document split into pages; ``reasons`` say which pages could not be used."""

    source: SourceRef
    pages: tuple[PageRef, ...] = ()
    reasons: tuple[Reason, ...] = ()
    page_count: int = 0


class OcrTask(StrEnum):
    """The task names of Qwen-OCR; each engine says which it supports."""

    TEXT_RECOGNITION = "text_recognition"
    ADVANCED_RECOGNITION = "advanced_recognition"
    KEY_INFORMATION_EXTRACTION = "key_information_extraction"
    TABLE_PARSING = "table_parsing"
    DOCUMENT_PARSING = "document_parsing"
    FORMULA_RECOGNITION = "formula_recognition"
    MULTI_LAN = "multi_lan"


class OcrLine(Frozen):
    text: str
    box: Box
    score: float
    char_scores: tuple[float, ...] | None = Field(default=None, exclude=True)
    """The recogniser's confidence in each character of ``text`` that is not a space, in order,
    where the engine gives them (RapidOCR does); evidence for grounding, not kept in result files."""


class TokenLogprob(Frozen):
    """One piece of an answer and the natural-log probability the model gave the tokens that spell it.

    A character the model spelt over several tokens (bytes of one UTF-8 character) is one piece,
    its log probability the sum of theirs, so the pieces join into the answer's text exactly.
    """

    token: str
    logprob: float


class Usage(Frozen):
    """What a call cost: tokens for API engines, pages and seconds for every engine."""

    pages: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    image_tokens: int = 0
    seconds: float = 0.0
    verify_cpu_seconds: float = 0.0
    """CPU seconds of the independent reading that grounds an API engine's fields (:mod:`ocrflow.verify`)."""

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            pages=self.pages + other.pages,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            image_tokens=self.image_tokens + other.image_tokens,
            seconds=round(self.seconds + other.seconds, 3),
            verify_cpu_seconds=round(self.verify_cpu_seconds + other.verify_cpu_seconds, 3),
        )


class OcrResult(Frozen):
    """An engine's reading of one page."""

    engine: str
    model: str
    task: OcrTask
    page_number: int
    lines: tuple[OcrLine, ...] = ()
    text: str = ""
    key_values: dict[str, Any] | None = None
    usage: Usage = Field(default_factory=Usage)
    reading_frame: Affine | None = None
    """Maps ``lines``' boxes onto the upright page the engine read, where rows are horizontal."""
    logprobs: tuple[TokenLogprob, ...] | None = None
    """The answer's tokens with their log probabilities; ``None`` when the response carried none."""


class FieldError(Frozen):
    code: str
    message: str


class FieldOverride(BaseModel):
    """A reviewer kept a value that fails validation, on purpose, and said why.

    Such a value is not ground truth until another reviewer confirms it.
    """

    reviewer: str
    note: str
    confirmed_by: str | None = None


class FieldBox(Frozen):
    """Where on a page a field's value is printed: one OCR line it came from (or was found in)."""

    page: int
    box: Box
    """The line's four corners in original-page pixels."""
    line: str
    """The line's text as read."""


class Grounding(StrEnum):
    """How an independent reading of the page supports a field's value (:mod:`ocrflow.verify`)."""

    GROUNDED = "grounded"
    """Printed on the page as the value says, compared the way the field's normaliser compares."""
    NEAR = "near"
    """Printed nearly so: a few characters differ (``differs_at``)."""
    NOT_FOUND = "not_found"
    """Nowhere on the page the independent reading saw."""
    UNVERIFIED = "unverified"
    """No independent reading was made (switched off, or the engine has none)."""


class FieldEvidence(BaseModel):
    """What vouches for a field's value, and how its confidence was made (:mod:`ocrflow.confidence`)."""

    outcome: Grounding = Grounding.UNVERIFIED
    reader: str | None = None
    """The independent reader, ``engine:model`` (e.g. ``local:PP-OCRv6``)."""
    reading: str | None = None
    """The independent reading's text where the value was found, or its nearest text."""
    differs_at: list[int] = Field(default_factory=list)
    """Positions in the field's value the reading does not have (characters replaced or left out)."""
    page: int | None = None
    boxes: list[FieldBox] = Field(default_factory=list)
    """Where the independent reading found the value (or its nearest text)."""
    reader_score: float | None = None
    """The independent reader's own score for the lines it found the value in."""
    factors: dict[str, float] = Field(default_factory=dict)
    """The evidence the confidence was combined from, by name (``grounding``, ``reader_score``,
    ``checksum``, ``pattern``, ``logprob``, ``ocr_score``), each in [0, 1]; and, recorded but not
    weighed, ``reader_char_score``: the reader's highest score among its characters where a near
    reading differs."""


class FieldResult(BaseModel):
    """One extracted field: its normalised value, how sure we are, and what is wrong."""

    value: Any = None
    confidence: float = 0.0
    errors: list[FieldError] = Field(default_factory=list)
    raw: str | None = None
    page: int | None = None
    override: FieldOverride | None = None
    """Set when a reviewer approved this value despite its errors (see :class:`FieldOverride`)."""
    candidates: list[Any] = Field(default_factory=list)
    """Other values the document gives for this field (an ``ambiguous`` field, or an independent
    reading that disagrees), for a reviewer to pick."""
    boxes: list[FieldBox] = Field(default_factory=list)
    """Where the value is printed: the lines it came from, with their pages and boxes."""
    evidence: FieldEvidence | None = None
    """What vouches for the value; ``None`` in results written before evidence was recorded."""

    @model_serializer(mode="wrap")
    def _leave_out_what_is_unset(self, handler):
        # A field nobody overrode, with one reading, no location and no evidence is written as
        # before: results and the files of older versions keep one shape.
        data = handler(self)
        for name in ("override", "evidence"):
            if data.get(name) is None:
                data.pop(name, None)
        for name in ("candidates", "boxes"):
            if not data.get(name):
                data.pop(name, None)
        return data


class Extraction(BaseModel):
    doc_type: str
    fields: dict[str, FieldResult] = Field(default_factory=dict)
    reasons: list[Reason] = Field(default_factory=list)


class PageResult(BaseModel):
    page_number: int
    width: int
    height: int
    lines: list[OcrLine] = Field(default_factory=list)
    """The page's lines as the document's engine read them (none for a key-information answer)."""
    independent_lines: list[OcrLine] = Field(default_factory=list)
    """The independent reading's lines of an API engine's page (:mod:`ocrflow.verify`), where one
    was made: the page's text and positions when the engine answered with fields only."""

    @model_serializer(mode="wrap")
    def _leave_out_no_independent_reading(self, handler):
        # Pages without one (the embedded engine's, grounding off) keep the shape they always had.
        data = handler(self)
        if not data.get("independent_lines"):
            data.pop("independent_lines", None)
        return data


class TableOutput(BaseModel):
    """One table a table-parsing answer held: its HTML, its cells as a grid, and its files."""

    page: int
    index: int
    """1-based, in reading order across the document."""
    html: str
    grid: list[list[str]] = Field(default_factory=list)
    """Rows of cell texts; a merged cell's text in its top-left place (``ocrflow.tables``)."""
    rows: int = 0
    columns: int = 0
    problem: str | None = None
    """Why the table did not pass its check (rows of different widths...), else ``None``."""


class TaskOutputs(BaseModel):
    """What a task beyond text and fields produced, kept in the result and written beside it."""

    task: OcrTask
    tables: list[TableOutput] = Field(default_factory=list)
    markdown: str | None = None
    latex: str | None = None
    kv: dict[str, str | None] | None = None
    """Schema-less key-information extraction: every key-value pair the model found."""
    language: str | None = None
    """ISO 639-1 code of the text's main language (multilingual recognition)."""
    language_score: float | None = None
    files: list[str] = Field(default_factory=list)
    """Files written beside ``<document_id>.json`` (names relative to the output folder)."""


class Reread(BaseModel):
    """A machine reading made after a person decided the document: kept beside the decision, never over it."""

    status: Status
    engine: str | None = None
    reasons: list[Reason] = Field(default_factory=list)
    fields: dict[str, FieldResult] = Field(default_factory=dict)
    differs: list[str] = Field(default_factory=list)
    """The fields whose newer value is not the decided one (what a reviewer is shown)."""


class DocumentResult(BaseModel):
    """The result contract: one ``<out>/<document_id>.json`` per document."""

    document_id: str
    source: str
    doc_type: str | None
    status: Status
    reasons: list[Reason] = Field(default_factory=list)
    fields: dict[str, FieldResult] = Field(default_factory=dict)
    text: str = ""
    pages: list[PageResult] = Field(default_factory=list)
    engine: str | None = None
    usage: Usage = Field(default_factory=Usage)
    preprocessing: dict[int, list[StepRecord]] = Field(default_factory=dict)
    task: OcrTask | None = None
    """The OCR task the document was read with."""
    outputs: TaskOutputs | None = None
    """Tables, Markdown/LaTeX, schema-less key-values or the language, for tasks that give them."""
    reread: Reread | None = None
    """The latest reading of a document re-processed after a person decided it (``--reprocess``)."""
