"""An output folder as people use it: checked writable before a run, and found by source name after.

Results are named by content hash (``<document_id>.json``), which nobody can guess. So each run
leaves ``<out>/index.csv``: one row per document whose result is in the folder, its source name,
result file, status and reasons. It is derived from the store's rows every time (never edited in
place), so it can always be rebuilt, and ``ocrflow results`` does, before it lists or exports.
:func:`fields_csv` writes accepted documents' fields, ID and card numbers masked unless asked.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from ocrflow.doctypes import DocType
from ocrflow.errors import ConfigurationError
from ocrflow.masking import masked_values
from ocrflow.models import DocumentResult, Reason, Status
from ocrflow.store import ResultStore, write_json_atomically

INDEX_NAME = "index.csv"
INDEX_COLUMNS = ("source", "document_id", "result", "status", "doc_type", "reasons", "updated_at")


def require_writable(folder: Path) -> None:
    """Raise :class:`ConfigurationError` in one line unless results can be written in ``folder``.

    Tried by writing, not by permission bits: a read-only file system or a full disk answers
    the same way for root as for anyone.
    """
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigurationError(f"cannot write results to {folder}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".ocrflow-writable-"):
            pass
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write results to {folder}: {exc.strerror or exc}; choose another --out"
        ) from exc


@dataclass(frozen=True)
class IndexEntry:
    """One document of an output folder, as its index lists it."""

    source: str
    document_id: str
    result: str
    status: Status
    doc_type: str | None
    reasons: list[Reason]
    updated_at: str

    @property
    def name(self) -> str:
        return Path(self.source).name

    def reasons_text(self) -> str:
        return "; ".join(
            f"{r.code}" + (f" ({r.field})" if r.field else "") + f": {r.message}" for r in self.reasons
        )


def index_entries(store: ResultStore, statuses: Collection[Status] = ()) -> list[IndexEntry]:
    """The documents whose result is in the store's folder, by source name (the store's rows).

    A database may be shared by several output folders; a folder's index lists what it holds.
    """
    entries = []
    for row in store.documents([s.value for s in statuses]):
        result = store.result_path(row.document_id)
        if not result.is_file():
            continue
        entries.append(
            IndexEntry(
                source=row.source,
                document_id=row.document_id,
                result=result.name,
                status=Status(row.status),
                doc_type=row.doc_type,
                reasons=[Reason.model_validate(r) for r in row.reasons or []],
                updated_at=row.updated_at.isoformat(timespec="seconds") if row.updated_at else "",
            )
        )
    return sorted(entries, key=lambda e: (e.name, e.source, e.document_id))


def write_index(store: ResultStore) -> Path:
    """Write ``<out>/index.csv`` afresh from the store's rows (atomically); return its path."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(INDEX_COLUMNS)
    for e in index_entries(store):
        row = (e.source, e.document_id, e.result, e.status.value, e.doc_type, e.reasons_text(), e.updated_at)
        writer.writerow([_cell(value or "") for value in row])
    path = store.out_dir / INDEX_NAME
    write_json_atomically(path, buffer.getvalue())
    return path


def fields_csv(
    store: ResultStore,
    entries: Sequence[IndexEntry],
    doctypes: dict[str, DocType],
    *,
    unmask: bool = False,
) -> tuple[str, int]:
    """CSV of the accepted documents among ``entries``: source, id, type, then every field.

    Only accepted documents: the others' values are not vouched for. Fields are the types'
    schema properties in schema order; ID and card numbers are masked unless ``unmask``.
    Returns the text and how many documents it holds.
    """
    results: list[DocumentResult] = []
    for entry in entries:
        if entry.status is Status.ACCEPTED and (result := store.load(entry.document_id)) is not None:
            results.append(result)
    names: dict[str, None] = {}
    for result in results:
        doctype = doctypes.get(result.doc_type or "")
        names.update(dict.fromkeys(doctype.fields if doctype else ()))
        names.update(dict.fromkeys(result.fields))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["source", "document_id", "doc_type", *names])
    for result in results:
        values = {name: field.value for name, field in result.fields.items()}
        if not unmask:
            values = masked_values(values, doctypes.get(result.doc_type or ""))
        row = [Path(result.source).name, result.document_id, result.doc_type or ""]
        row += ["" if values.get(name) is None else str(values[name]) for name in names]
        writer.writerow([_cell(value) for value in row])
    return buffer.getvalue(), len(results)


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    """A value a spreadsheet shows as text, never runs: read text can start with ``=`` (CWE-1236).

    Numbers (``-12.50``) stay as they are.
    """
    if value.startswith(_FORMULA_STARTS) and not _is_number(value):
        return "'" + value
    return value


def _is_number(value: str) -> bool:
    try:
        float(value.replace(",", ""))
    except ValueError:
        return False
    return True


def open_results(out: Path, database_url: str) -> ResultStore:
    """The store of an existing output folder; a folder that is not there is an error, never created."""
    if not out.is_dir():
        raise ConfigurationError(f"{out} is not a results folder (run 'ocrflow run ... --out {out}' first)")
    return ResultStore(out, database_url)
