"""What a person watching the Prefect UI reads: flow-run names and links to the review items."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ocrflow.models import DocumentResult, Status


def documents_run_name(paths: Sequence[str]) -> str:
    """Say what a run processes: ``inbox 'inbox' (12 files)``, ``upload of 5 files in 'inbox'``, ``a.png``."""
    paths = [Path(str(p)) for p in paths]
    if not paths:
        return "nothing to process"
    if len(paths) == 1 and paths[0].is_dir():
        return f"inbox '{paths[0].name}' ({_count_files(paths[0])} files)"
    if len(paths) == 1:
        return paths[0].name
    parents = {p.parent.name for p in paths}
    where = f" in '{parents.pop()}'" if len(parents) == 1 else ""
    return f"upload of {len(paths)} files{where}"


def _count_files(folder: Path) -> int:
    # Naming must never fail a run: a folder that vanished or cannot be read counts as empty.
    from ocrflow.errors import OcrflowError
    from ocrflow.ingest import discover

    try:
        return len(discover([folder]))
    except (OcrflowError, OSError):
        return 0


def review_links_markdown(results: Sequence[DocumentResult], review_url: str | None) -> str:
    """A markdown list linking each document that waits for review to its item in the review app."""
    waiting = [r for r in results if r.status is Status.NEEDS_REVIEW]
    if not waiting:
        return ""
    lines = ["", f"## Waiting for review ({len(waiting)})", ""]
    for result in waiting:
        name = os.path.basename(result.source)
        reasons = ", ".join(r.code for r in result.reasons) or "-"
        if review_url:
            lines.append(f"- [{name}]({review_url.rstrip('/')}/items/{result.document_id}): {reasons}")
        else:
            lines.append(f"- {name} (`ocrflow review show {result.document_id[:12]}`): {reasons}")
    return "\n".join(lines) + "\n"
