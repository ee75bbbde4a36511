"""What the tasks beyond text and fields produce, checked, and written beside the result.

- ``table_parsing``: ``tables``, the HTML and the cell grid of each ``<table>``; checked that a
  table is found and that its rows and columns add up (:mod:`ocrflow.tables`).
- ``document_parsing``: ``latex`` (Qwen-OCR answers LaTeX) or ``markdown`` (Qianfan-OCR), and
  the HTML tables in it; the LaTeX must balance and the tables add up.
- ``formula_recognition``: ``latex``, which must balance.
- ``key_information_extraction`` without a document type: ``kv``, every key-value pair the model
  found; the answer must be a JSON object of flat strings.
- ``multi_lan``: ``language``, by py3langid (its model ships in its wheel); nothing to check.

A failed check is a reason (stage ``validate``), never an exception: the document goes to review.
Files beside ``<document_id>.json`` (:func:`write_output_files`): ``.table-<n>.html`` and
``.table-<n>.csv`` per table, ``.md`` or ``.tex`` for a parsed document or formula.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

from ocrflow.models import OcrResult, OcrTask, Reason, Stage, TableOutput, TaskOutputs
from ocrflow.tables import check_table, parse_tables

OUTPUT_TASKS = frozenset(
    {OcrTask.TABLE_PARSING, OcrTask.DOCUMENT_PARSING, OcrTask.FORMULA_RECOGNITION, OcrTask.MULTI_LAN}
)
"""Tasks whose product is more than text with fields (schema-less extraction is one too)."""
_LATEX_SIGNS = re.compile(r"\\(documentclass|begin\{|section|title\{|frac|\[)|\$\$")


def gives_outputs(task: OcrTask, *, has_doctype: bool) -> bool:
    """Whether ``task`` produces :class:`TaskOutputs` (key-information extraction only without a type)."""
    return task in OUTPUT_TASKS or (task is OcrTask.KEY_INFORMATION_EXTRACTION and not has_doctype)


def task_outputs(task: OcrTask, ocr_results: Sequence[OcrResult]) -> tuple[TaskOutputs, list[Reason]]:
    """The outputs of ``task`` from a document's readings, and the reasons any check failed."""
    ordered = sorted(ocr_results, key=lambda result: result.page_number)
    outputs = TaskOutputs(task=task)
    reasons: list[Reason] = []
    if task is OcrTask.TABLE_PARSING:
        outputs.tables = _tables(ordered)
        if not outputs.tables:
            reasons.append(_reason("table_not_found", "no table was found in the table-parsing answer"))
    elif task in (OcrTask.DOCUMENT_PARSING, OcrTask.FORMULA_RECOGNITION):
        body = "\n\n".join(result.text.strip() for result in ordered if result.text.strip())
        if task is OcrTask.FORMULA_RECOGNITION or _LATEX_SIGNS.search(body):
            outputs.latex = body
            for result in ordered:
                if problem := latex_problem(result.text):
                    reasons.append(
                        _reason("latex_unbalanced", f"the LaTeX {problem}", page=result.page_number)
                    )
        else:
            outputs.markdown = body
        outputs.tables = _tables(ordered)
        if not body:
            reasons.append(_reason("no_output", f"the {task.value} answer is empty"))
    elif task is OcrTask.KEY_INFORMATION_EXTRACTION:
        outputs.kv, problem = flat_key_values(ordered)
        if problem:
            reasons.append(_reason("kv_not_flat", problem))
    elif task is OcrTask.MULTI_LAN:
        outputs.language, outputs.language_score = detect_language("\n".join(r.text for r in ordered))
    for table in outputs.tables:
        if table.problem:
            where = f"table {table.index} (page {table.page})"
            reasons.append(_reason("table_inconsistent", f"{where}: {table.problem}", page=table.page))
    return outputs, reasons


def _reason(code: str, message: str, *, page: int | None = None) -> Reason:
    return Reason(stage=Stage.VALIDATE, code=code, message=message, page=page)


def _tables(results: Sequence[OcrResult]) -> list[TableOutput]:
    tables = []
    for result in results:
        for table in parse_tables(result.text):
            grid = table.grid
            tables.append(
                TableOutput(
                    page=result.page_number,
                    index=len(tables) + 1,
                    html=table.html,
                    grid=grid,
                    rows=len(grid),
                    columns=max((len(row) for row in grid), default=0),
                    problem=check_table(table),
                )
            )
    return tables


# --- LaTeX ----------------------------------------------------------------------------------

_ENVIRONMENT = re.compile(r"\\(begin|end)\s*\{([^}]*)\}")


def latex_problem(latex: str) -> str | None:
    """What does not balance in ``latex`` (braces, environments, math delimiters), or ``None``."""
    text = re.sub(r"(?<!\\)%.*", "", latex)  # comments
    depth = 0
    i = 0
    plain = []
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            plain.append(text[i : i + 2])
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return "closes a brace that was never opened"
        plain.append(ch)
        i += 1
    if depth:
        return f"leaves {depth} brace{'s' if depth > 1 else ''} open"
    stack: list[str] = []
    for kind, name in _ENVIRONMENT.findall(text):
        if kind == "begin":
            stack.append(name)
        elif not stack or stack[-1] != name:
            open_one = f"is not the open one ({stack[-1]!r})" if stack else "was never begun"
            return f"ends environment {name!r} that {open_one}"
        else:
            stack.pop()
    if stack:
        return f"never ends environment {stack[-1]!r}"
    joined = "".join(plain)
    for opening, closing, name in ((r"\[", r"\]", "display math"), (r"\(", r"\)", "inline math")):
        opened, closed = joined.count(opening), joined.count(closing)
        if opened != closed:
            return f"has unpaired {name} delimiters ({opened} {opening}, {closed} {closing})"
    lefts, rights = len(re.findall(r"\\left\b", text)), len(re.findall(r"\\right\b", text))
    if lefts != rights:
        return f"has {lefts} \\left but {rights} \\right"
    dollars = re.sub(r"\\\$", "", joined)
    if dollars.count("$$") % 2:
        return "has an unpaired $$"
    if dollars.replace("$$", "").count("$") % 2:
        return "has an unpaired $"
    return None


# --- schema-less key-values -------------------------------------------------------------------


def flat_key_values(results: Sequence[OcrResult]) -> tuple[dict[str, str | None] | None, str | None]:
    """Every page's key-values merged, as flat strings; and what is wrong, if anything.

    Numbers and booleans become their text. A nested object or list is not a flat key-value
    pair: it is kept as its JSON text and the document goes to review.
    """
    if not any(result.key_values is not None for result in results):
        return None, "the answer held no JSON object of key-value pairs"
    merged: dict[str, str | None] = {}
    nested = []
    for result in results:
        for key, value in (result.key_values or {}).items():
            name = str(key)
            if value is None or isinstance(value, str):
                merged[name] = value
            elif isinstance(value, bool | int | float):
                merged[name] = str(value).lower() if isinstance(value, bool) else str(value)
            else:
                merged[name] = json.dumps(value, ensure_ascii=False)
                nested.append(name)
    if nested:
        return merged, f"values are not flat strings: {', '.join(nested[:5])} hold lists or objects"
    return merged, None


# --- language ----------------------------------------------------------------------------------


def detect_language(text: str) -> tuple[str | None, float | None]:
    """The main language of ``text`` (ISO 639-1) and its probability; ``(None, None)`` for no text."""
    letters = sum(ch.isalpha() for ch in text)
    if letters < 3:
        return None, None
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    language, score = identifier.classify(text)
    return language, round(float(score), 3)


# --- files beside the result -------------------------------------------------------------------


def output_files(document_id: str, outputs: TaskOutputs) -> dict[str, str]:
    """File name (beside ``<document_id>.json``) -> content, for the outputs people open directly."""
    files = {}
    for table in outputs.tables:
        stem = f"{document_id}.table-{table.index}"
        files[f"{stem}.html"] = _html_page(
            f"{document_id[:12]} table {table.index} (page {table.page})", table.html
        )
        files[f"{stem}.csv"] = _csv(table.grid)
    if outputs.markdown:
        files[f"{document_id}.md"] = outputs.markdown + "\n"
    if outputs.latex:
        files[f"{document_id}.tex"] = outputs.latex + "\n"
    return files


def write_output_files(out_dir: Path, document_id: str, outputs: TaskOutputs) -> list[str]:
    """Write :func:`output_files` durably (temporary file, fsync, rename); return their names."""
    from ocrflow.store import write_json_atomically

    files = output_files(document_id, outputs)
    for name, content in files.items():
        write_json_atomically(Path(out_dir) / name, content)
    return sorted(files)


def _html_page(title: str, table_html: str) -> str:
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        "<style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px}</style>"
        f"</head><body>\n{table_html}\n</body></html>\n"
    )


def _csv(grid: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(grid)
    return buffer.getvalue()
