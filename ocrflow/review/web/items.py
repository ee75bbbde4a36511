"""One review item: its page, claim, release, decide, live validation and page images.

``GET /items/{ref}`` takes an item number or a full document id (what run summaries and
Prefect artifacts link to, since a run knows documents, not items); a document id answers
with a redirect to its item's number, the one address of the page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from ocrflow.errors import ClaimConflict, InvalidDecision, ItemNotFound, OcrflowError
from ocrflow.masking import masked_values
from ocrflow.models import DocumentResult, FieldResult
from ocrflow.review.decisions import TYPE_REASONS, live_errors
from ocrflow.review.evidence import highlights, readings
from ocrflow.review.pages import page_crop, page_png, region_of
from ocrflow.review.queue import item_number
from ocrflow.review.suggestions import field_repairs
from ocrflow.review.web.deps import (
    CheckedForm,
    CheckedJson,
    ItemId,
    Reviewer,
    ReviewServices,
    Services,
    back_to_item,
    form_text,
    render,
)
from ocrflow.store import ReviewItemRow, ReviewState

router = APIRouter()

FIELD_PREFIX = "field:"
DOCUMENT_ID = re.compile(r"[0-9a-f]{64}")


class ValidateBody(BaseModel):
    """What the item page posts while the reviewer types: the form's values by field."""

    model_config = ConfigDict(extra="ignore")
    values: dict[str, str | None] = {}


def load_item(review: ReviewServices, number: int) -> tuple[ReviewItemRow, DocumentResult]:
    """The item and its document's result; 404 when either is gone."""
    try:
        item = review.queue.get(number)
    except ItemNotFound:
        raise HTTPException(404, "no such item") from None
    result = review.queue.store.load(item.document_id)
    if result is None:
        raise HTTPException(404, "the item's result is missing")
    return item, result


@router.get("/items/{item_id}", response_class=HTMLResponse)
def item_page(
    request: Request, user: Reviewer, review: Services, item_id: str, message: str = ""
) -> Response:
    number = item_number(item_id)
    if number is None and DOCUMENT_ID.fullmatch(item_id):
        try:
            found = review.queue.for_document(item_id)
        except ItemNotFound:
            raise HTTPException(404, "no review item for that document") from None
        return RedirectResponse(f"/items/{found.id}", status_code=303)
    if number is None:
        raise HTTPException(404, "no such item")
    return item_view(request, user, review, number, message)


def item_view(
    request: Request,
    user,
    review: ReviewServices,
    number: int,
    message: str = "",
    *,
    posted: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The item page; ``posted`` values (a refused decision's) replace the stored ones in the form."""
    item, result = load_item(review, number)
    queue = review.queue
    doctype = queue.doctypes.get(result.doc_type or "")
    values = {name: field.value for name, field in result.fields.items()}
    if item.state in ReviewState.DECIDED and item.final_values is not None:
        values = {**values, **item.final_values}
    if posted:
        values = {**values, **posted}
    held = queue.is_held_by(item, user.username)
    errors = live_errors(values, doctype) if doctype else {}
    repairs = field_repairs(result.fields, doctype)
    in_full = sees_in_full(review, item, user.username)
    fields = form_fields(doctype, result, values, review.settings.routing.min_field_confidence)
    if not in_full:
        masked = masked_values(values, doctype)
        secret = doctype.masked_fields() if doctype else set()
        for field in fields:
            field["value"] = "" if masked.get(field["name"]) is None else str(masked[field["name"]])
            if field["name"] in secret:
                field["candidates"] = []
                field["readings"] = None
        repairs = {}
    newer_reading = {}
    if item.state in ReviewState.DECIDED and result.reread is not None:
        reread = result.reread
        newer_reading = {name: reread.fields[name].value for name in reread.differs if name in reread.fields}
        if not in_full:
            newer_reading = masked_values(newer_reading, doctype)
    waiting_confirmation = [
        name
        for name, f in result.fields.items()
        if f.override is not None and f.override.confirmed_by is None
    ]
    response = render(
        request,
        review,
        "item.html",
        user,
        item=item,
        result=result,
        name=Path(result.source).name,
        fields=fields,
        errors=errors,
        repairs=repairs,
        line_text=in_full,
        held=held,
        decided=item.state in ReviewState.DECIDED,
        types=sorted(queue.doctypes),
        needs_type=doctype is None or any(r.get("code") in TYPE_REASONS for r in item.reasons),
        unconfirmed=waiting_confirmation if item.state in ReviewState.DECIDED else [],
        newer_reading=newer_reading,
        highlights=highlights(result),
        events=queue.events(number),
        message=message,
    )
    response.status_code = status_code
    return response


@router.post("/items/{item_id}/claim")
def claim_item(user: Reviewer, number: ItemId, review: Services, _form: CheckedForm) -> Response:
    try:
        review.queue.claim(user.username, number)
    except ItemNotFound:
        raise HTTPException(404, "no such item") from None
    except ClaimConflict as exc:
        return back_to_item(number, exc.message)
    return RedirectResponse(f"/items/{number}", status_code=303)


@router.post("/items/{item_id}/release")
def release_item(user: Reviewer, number: ItemId, review: Services, _form: CheckedForm) -> Response:
    try:
        review.queue.release(number, user.username)
    except OcrflowError as exc:
        return back_to_item(number, exc.message)
    return RedirectResponse("/", status_code=303)


@router.post("/items/{item_id}/decide")
def decide_item(
    request: Request, user: Reviewer, number: ItemId, review: Services, form: CheckedForm
) -> Response:
    values = {
        key.removeprefix(FIELD_PREFIX): value
        for key, value in form.items()
        if key.startswith(FIELD_PREFIX) and isinstance(value, str)
    }
    _, result = load_item(review, number)
    doctype = review.queue.doctypes.get(result.doc_type or "")
    known = set(result.fields) | set(doctype.fields if doctype else ())
    values = {name: value for name, value in values.items() if name in known}
    try:
        outcome = review.queue.decide(
            number,
            user.username,
            reject=form_text(form, "action") == "reject",
            values=values,
            note=form_text(form, "note"),
            override=form_text(form, "override") == "yes",
        )
    except InvalidDecision as exc:
        # Shown again with what the reviewer typed, so nothing typed is lost.
        return item_view(request, user, review, number, exc.message, posted=values, status_code=422)
    except OcrflowError as exc:
        return back_to_item(number, exc.message)
    if form_text(form, "then") == "next":
        claim = review.queue.claim(user.username)
        if claim is not None:
            return RedirectResponse(f"/items/{claim.item_id}", status_code=303)
        return RedirectResponse("/?" + urlencode({"message": "Nothing left to review."}), status_code=303)
    return back_to_item(
        number, f"{outcome.decision.value.capitalize()}: the document is {outcome.result.status.value}."
    )


def _then_back(number: int, act, said) -> Response:
    """Run a queue operation on the item and go back to its page, saying what happened (or why not)."""
    try:
        done = act()
    except OcrflowError as exc:
        return back_to_item(number, exc.message)
    return back_to_item(number, said(done))


@router.post("/items/{item_id}/type")
def choose_type(user: Reviewer, number: ItemId, review: Services, form: CheckedForm) -> Response:
    doc_type = form_text(form, "doc_type")
    threshold = review.settings.routing.min_field_confidence
    return _then_back(
        number,
        lambda: review.queue.choose_type(number, user.username, doc_type, min_confidence=threshold),
        lambda _: f"Read as a {doc_type} from the stored OCR; check the fields and decide.",
    )


@router.post("/items/{item_id}/reopen")
def reopen_item(user: Reviewer, number: ItemId, review: Services, form: CheckedForm) -> Response:
    return _then_back(
        number,
        lambda: review.queue.reopen(number, user.username, form_text(form, "reason")),
        lambda _: "Reopened: the item is yours to decide again.",
    )


@router.post("/items/{item_id}/confirm")
def confirm_item(user: Reviewer, number: ItemId, review: Services, form: CheckedForm) -> Response:
    return _then_back(
        number,
        lambda: review.queue.confirm(number, user.username, form_text(form, "note")),
        lambda fields: f"Confirmed the overridden {', '.join(fields)}: now ground truth.",
    )


@router.post("/items/{item_id}/assign")
def assign_item(user: Reviewer, number: ItemId, review: Services, form: CheckedForm) -> Response:
    return _then_back(
        number,
        lambda: review.queue.assign(number, user.username, form_text(form, "to") or None),
        lambda row: f"Assigned to {row.assigned_to or 'nobody'}.",
    )


@router.post("/items/{item_id}/validate")
def validate_item(user: Reviewer, number: ItemId, review: Services, body: CheckedJson) -> Response:
    try:
        values = ValidateBody.model_validate(body).values
    except ValidationError:
        raise HTTPException(422, 'the body must be {"values": {field: text or null}}') from None
    item, result = load_item(review, number)
    queue = review.queue
    if queue.is_held_by(item, user.username) and item.lease_expires_at - queue.clock() < queue.lease / 2:
        # The reviewer is typing: keep their claim alive (an audit event at most every half lease).
        queue.claim(user.username, number)
    doctype = queue.doctypes.get(result.doc_type or "")
    if doctype is None:
        return JSONResponse({"errors": {}, "repairs": {}})
    fields = {name: FieldResult(value=value) for name, value in values.items()}
    # A repair spells the whole number: only for whoever may see it in full.
    repairs = field_repairs(fields, doctype) if sees_in_full(review, item, user.username) else {}
    return JSONResponse({"errors": live_errors(values, doctype), "repairs": repairs})


@router.get("/items/{item_id}/pages/{page_number}.png")
def page_image(_user: Reviewer, number: ItemId, page_number: int, review: Services) -> Response:
    """The page at screen size (its long side at most ``pages.SCREEN_SIDE`` pixels)."""
    _, result = load_item(review, number)
    data = page_png(result, page_number, review.page_cache, review.settings.ingest)
    if data is None:
        raise HTTPException(404, "no such page")
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})


@router.get("/items/{item_id}/pages/{page_number}/crop.jpg")
def page_crop_image(
    _user: Reviewer, number: ItemId, page_number: int, review: Services, region: str = ""
) -> Response:
    """A zoomed crop: ``region=left,top,right,bottom`` as fractions of the page, up to full resolution."""
    box = region_of(region)
    if box is None:
        raise HTTPException(422, "region is left,top,right,bottom, fractions of the page")
    _, result = load_item(review, number)
    data = page_crop(result, page_number, review.page_cache, review.settings.ingest, box)
    if data is None:
        raise HTTPException(404, "no such page")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=600"})


def sees_in_full(review: ReviewServices, item: ReviewItemRow, username: str) -> bool:
    """The claimant and the decider see ID and card numbers in full; a bystander per the setting."""
    return (
        review.settings.review.bystanders_see == "full"
        or review.queue.is_held_by(item, username)
        or (item.state in ReviewState.DECIDED and item.decided_by == username)
    )


def form_fields(
    doctype, result: DocumentResult, values: dict[str, Any], min_confidence: float = 0.9
) -> list[dict[str, Any]]:
    """One form input per schema property (in schema order), then any extra fields the result has.

    Each field is one component on the page (``templates/_field.html``) with room for the
    evidence behind its value (``evidence``: a list other stages may fill). ``flags`` say why
    the machine doubts it (low confidence, several readings, an independent reading that does
    not agree); ``candidates`` are the other readings, offered as one-click values;
    ``readings`` the engine's and the independent reading side by side
    (:func:`ocrflow.review.evidence.readings`), whose differing value is offered the same way.
    """
    specs = doctype.fields if doctype else {}
    names = list(specs) + [name for name in result.fields if name not in specs]
    fields = []
    for name in names:
        spec = specs.get(name)
        read = result.fields.get(name)
        flags = []
        if read is not None and read.value not in (None, "") and read.confidence < min_confidence:
            flags.append(f"low confidence ({read.confidence:.2f})")
        if read is not None and any(e.code == "ambiguous" for e in read.errors):
            flags.append("several readings")
        if read is not None and read.override is not None:
            who = read.override
            flags.append(
                f"kept despite errors by {who.reviewer}: {who.note}"
                + (f" (confirmed by {who.confirmed_by})" if who.confirmed_by else " (not confirmed)")
            )
        both = readings(read, result.engine)
        if both and not both["grounded"]:
            flags.append(f"the independent reading: {both['outcome']}")
        fields.append(
            {
                "name": name,
                "title": spec.title if spec else name.replace("_", " "),
                "description": spec.schema.get("description", "") if spec else "",
                "required": bool(spec and spec.required),
                "value": "" if values.get(name) is None else str(values[name]),
                "confidence": read.confidence if read else None,
                "page": read.page if read else None,
                "flags": flags,
                "candidates": [
                    c
                    for c in (read.candidates if read else [])
                    if str(c) not in (str(values.get(name)), str(both and both["offer"]))
                ],
                "readings": both,
                "evidence": [],
            }
        )
    return fields
