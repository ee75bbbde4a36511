"""The queue list (``GET /``) and ``POST /next``, which claims the next free item and opens it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ocrflow.masking import masked_values
from ocrflow.review.queue import age_text, waited
from ocrflow.review.web.deps import CheckedForm, Reviewer, Services, form_text, render
from ocrflow.store import ReviewState

router = APIRouter()

AGES = {"": None, "1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7)}
LIST_LIMIT = 500
"""Rows the queue page shows at most (oldest first); filters narrow the rest."""
STATE_FILTERS = {"open": ReviewState.OPEN, "decided": ReviewState.DECIDED, "all": ReviewState.ALL}


@router.get("/", response_class=HTMLResponse)
def queue_list(
    request: Request,
    user: Reviewer,
    review: Services,
    type: str = "",
    reason: str = "",
    age: str = "",
    state: str = "open",
    message: str = "",
) -> HTMLResponse:
    queue = review.queue
    items = queue.items(
        states=STATE_FILTERS.get(state, ReviewState.OPEN),
        doc_type=type or None,
        reason=reason or None,
        older_than=AGES.get(age),
        reviewer=user.username,
    )
    shown = items[:LIST_LIMIT]
    sources = queue.store.sources([item.document_id for item in shown])
    current = queue.clock()
    rows = [
        {
            "item": item,
            "name": Path(sources.get(item.document_id, "?")).name,
            "values": masked_values(shown_values(item), queue.doctypes.get(item.doc_type or "")),
            "age": age_text(waited(item, current)),
            "reasons": sorted({r.get("code", "") for r in item.reasons}),
            "lease_over": item.lease_expires_at is not None and item.lease_expires_at <= current,
            "overdue": item.state in ReviewState.OPEN and item.due_at is not None and item.due_at <= current,
            "due": age_text(item.due_at - current) if item.due_at and item.due_at > current else None,
        }
        for item in shown
    ]
    types, reasons = queue.facets()
    return render(
        request,
        review,
        "queue.html",
        user,
        rows=rows,
        total=len(items),
        types=types,
        reasons=reasons,
        filters={"type": type, "reason": reason, "age": age, "state": state},
        message=message,
    )


@router.post("/next")
def claim_next(user: Reviewer, review: Services, form: CheckedForm) -> Response:
    claim = review.queue.claim(user.username, doc_type=form_text(form, "type") or None)
    if claim is None:
        return RedirectResponse("/?" + urlencode({"message": "Nothing left to review."}), status_code=303)
    return RedirectResponse(f"/items/{claim.item_id}", status_code=303)


def shown_values(item) -> dict:
    """A decided item shows what the reviewer decided; an open one what the machine read."""
    if item.state in ReviewState.DECIDED and item.final_values is not None:
        return {**(item.extracted_values or {}), **item.final_values}
    return item.extracted_values or {}
