"""The review web app: server-rendered pages over the queue, no front-end build step.

Routes (everything but ``/login`` needs a session; every POST needs the CSRF token)::

    GET  /login, POST /login, POST /logout
    GET  /                           the queue, filtered by type, reason, age and state
    POST /next                       claim the oldest free item and open it
    GET  /items/{id}                 page images with OCR boxes, the schema's form
    POST /items/{id}/claim | release | decide
    POST /items/{id}/validate        live validation and repair suggestions (JSON)
    GET  /items/{id}/pages/{n}.png   a page image, by item and page number only
"""

from __future__ import annotations

import math
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ocrflow.doctypes import load_doctypes
from ocrflow.errors import ClaimConflict, ItemNotFound, OcrflowError
from ocrflow.masking import masked_values
from ocrflow.models import FieldResult
from ocrflow.review.auth import Accounts, SignedIn, SignInThrottle, csrf_matches
from ocrflow.review.decisions import live_errors
from ocrflow.review.pages import page_png
from ocrflow.review.queue import ReviewQueue
from ocrflow.review.suggestions import field_repairs
from ocrflow.settings import Settings
from ocrflow.store import ResultStore, ReviewState, now

SESSION_COOKIE = "ocrflow_session"
LOGIN_CSRF_COOKIE = "ocrflow_login_csrf"
FIELD_PREFIX = "field:"
AGES = {"": None, "1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7)}
LIST_LIMIT = 500
"""Rows the queue page shows at most (oldest first); filters narrow the rest."""
STATE_FILTERS = {"open": ReviewState.OPEN, "decided": ReviewState.DECIDED, "all": ReviewState.ALL}


async def _posted_form(request: Request) -> dict[str, Any]:
    return dict(await request.form())


async def _posted_json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# Bodies are read here, so the handlers can be plain functions: FastAPI runs those in a
# thread pool, and a query waiting for a lock never stalls the event loop.
Form = Annotated[dict[str, Any], Depends(_posted_form)]
Json = Annotated[dict[str, Any], Depends(_posted_json)]


class NotSignedIn(Exception):
    pass


class BadCsrf(Exception):
    pass


def create_app(settings: Settings, queue: ReviewQueue | None = None) -> FastAPI:
    if queue is None:
        store = ResultStore(settings.out_dir, settings.resolved_database_url())
        queue = ReviewQueue(
            store, load_doctypes(settings.schema_dir), lease_seconds=settings.review.lease_seconds
        )
    accounts = Accounts(queue.store.engine, settings.review.session_hours)
    throttle = SignInThrottle(queue.store.engine, settings.review)
    templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
    page_cache = settings.out_dir / ".review-pages"
    app = FastAPI(title="ocrflow review", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        request.state.nonce = secrets.token_urlsafe(16)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; script-src 'nonce-{request.state.nonce}'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(NotSignedIn)
    async def to_login(request: Request, _exc: NotSignedIn):
        if request.method == "GET" and "application/json" not in request.headers.get("accept", ""):
            return RedirectResponse("/login", status_code=303)
        return JSONResponse({"error": "sign in first"}, status_code=401)

    @app.exception_handler(BadCsrf)
    async def bad_csrf(_request: Request, _exc: BadCsrf):
        return HTMLResponse("The form was stale or forged (CSRF token mismatch). Reload the page.", 403)

    @app.exception_handler(404)
    async def not_found(_request: Request, _exc):
        return HTMLResponse("Not found.", 404)

    def signed_in(request: Request) -> SignedIn:
        user = accounts.signed_in(request.cookies.get(SESSION_COOKIE))
        if user is None:
            raise NotSignedIn()
        return user

    def check_csrf(user: SignedIn, form: dict[str, Any]) -> None:
        if not csrf_matches(user.csrf_token, form.get("csrf_token")):
            raise BadCsrf()

    def render(request: Request, template: str, user: SignedIn | None, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request, template, {"user": user, "nonce": request.state.nonce, **context}
        )

    # --- signing in ----------------------------------------------------------------------

    def login_form(request: Request, error: str, status_code: int = 200) -> HTMLResponse:
        token = secrets.token_urlsafe(32)
        response = render(request, "login.html", None, csrf_token=token, error=error)
        response.status_code = status_code
        response.set_cookie(
            LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=settings.review.secure_cookies
        )
        return response

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, error: str = "") -> HTMLResponse:
        return login_form(request, "Wrong username or password." if error else "")

    @app.post("/login")
    def login(request: Request, form: Form) -> Response:
        if not csrf_matches(request.cookies.get(LOGIN_CSRF_COOKIE) or "", form.get("csrf_token")):
            raise BadCsrf()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        address = request.client.host if request.client else None
        locked_until = throttle.locked_until(username, address)
        if locked_until is not None:
            # The password is not even checked, so a locked name answers the same whether it exists or not.
            minutes = math.ceil((locked_until - now()).total_seconds() / 60)
            message = f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
            response = login_form(request, message, status_code=429)
            response.headers["Retry-After"] = str(minutes * 60)
            return response
        if not accounts.authenticate(username, password):
            throttle.failed(username, address)
            return RedirectResponse("/login?error=1", status_code=303)
        throttle.succeeded(username)
        token, _ = accounts.open_session(username)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=settings.review.secure_cookies,
            max_age=int(settings.review.session_hours * 3600),
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response

    @app.post("/logout")
    def logout(request: Request, form: Form) -> Response:
        user = signed_in(request)
        check_csrf(user, form)
        accounts.close_session(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # --- the queue -----------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def queue_list(
        request: Request,
        type: str = "",
        reason: str = "",
        age: str = "",
        state: str = "open",
        message: str = "",
    ) -> HTMLResponse:
        user = signed_in(request)
        items = queue.items(
            states=STATE_FILTERS.get(state, ReviewState.OPEN),
            doc_type=type or None,
            reason=reason or None,
            older_than=AGES.get(age),
        )
        shown = items[:LIST_LIMIT]
        sources = queue.store.sources([item.document_id for item in shown])
        current = queue.clock()
        rows = [
            {
                "item": item,
                "name": Path(sources.get(item.document_id, "?")).name,
                "values": masked_values(item.extracted_values or {}, queue.doctypes.get(item.doc_type or "")),
                "age": _age(current - item.created_at),
                "reasons": sorted({r.get("code", "") for r in item.reasons}),
                "lease_over": item.lease_expires_at is not None and item.lease_expires_at <= current,
            }
            for item in shown
        ]
        types, reasons = queue.facets()
        return render(
            request,
            "queue.html",
            user,
            rows=rows,
            total=len(items),
            types=types,
            reasons=reasons,
            filters={"type": type, "reason": reason, "age": age, "state": state},
            message=message,
        )

    @app.post("/next")
    def claim_next(request: Request, form: Form) -> Response:
        user = signed_in(request)
        check_csrf(user, form)
        claim = queue.claim(user.username, doc_type=str(form.get("type") or "") or None)
        if claim is None:
            return RedirectResponse("/?" + urlencode({"message": "Nothing left to review."}), status_code=303)
        return RedirectResponse(f"/items/{claim.item_id}", status_code=303)

    # --- one item ------------------------------------------------------------------------

    def load_item(item_id: int):
        try:
            item = queue.get(item_id)
        except ItemNotFound:
            return None, None
        return item, queue.store.load(item.document_id)

    @app.get("/items/{item_id}", response_class=HTMLResponse)
    def item_page(request: Request, item_id: int, message: str = "") -> Response:
        user = signed_in(request)
        item, result = load_item(item_id)
        if item is None or result is None:
            return HTMLResponse("Not found.", 404)
        doctype = queue.doctypes.get(result.doc_type or "")
        values = {name: field.value for name, field in result.fields.items()}
        if item.state in ReviewState.DECIDED and item.final_values is not None:
            values = {**values, **item.final_values}
        fields = _form_fields(doctype, result, values)
        return render(
            request,
            "item.html",
            user,
            item=item,
            result=result,
            name=Path(result.source).name,
            fields=fields,
            errors=live_errors(values, doctype) if doctype else {},
            repairs=field_repairs(result.fields, doctype),
            held=queue.is_held_by(item, user.username),
            decided=item.state in ReviewState.DECIDED,
            events=queue.events(item_id),
            message=message,
        )

    @app.post("/items/{item_id}/claim")
    def claim_item(request: Request, item_id: int, form: Form) -> Response:
        user = signed_in(request)
        check_csrf(user, form)
        try:
            queue.claim(user.username, item_id)
        except ItemNotFound:
            return HTMLResponse("Not found.", 404)
        except ClaimConflict as exc:
            return _back(item_id, exc.message)
        return RedirectResponse(f"/items/{item_id}", status_code=303)

    @app.post("/items/{item_id}/release")
    def release_item(request: Request, item_id: int, form: Form) -> Response:
        user = signed_in(request)
        check_csrf(user, form)
        try:
            queue.release(item_id, user.username)
        except OcrflowError as exc:
            return _back(item_id, exc.message)
        return RedirectResponse("/", status_code=303)

    @app.post("/items/{item_id}/decide")
    def decide_item(request: Request, item_id: int, form: Form) -> Response:
        user = signed_in(request)
        check_csrf(user, form)
        values = {k[len(FIELD_PREFIX) :]: str(v) for k, v in form.items() if k.startswith(FIELD_PREFIX)}
        item, result = load_item(item_id)
        if item is None or result is None:
            return HTMLResponse("Not found.", 404)
        doctype = queue.doctypes.get(result.doc_type or "")
        known = set(result.fields) | set(doctype.fields if doctype else ())
        values = {name: value for name, value in values.items() if name in known}
        try:
            outcome = queue.decide(
                item_id,
                user.username,
                reject=form.get("action") == "reject",
                values=values,
                note=str(form.get("note", "")),
            )
        except OcrflowError as exc:
            return _back(item_id, exc.message)
        if form.get("then") == "next":
            claim = queue.claim(user.username)
            if claim is not None:
                return RedirectResponse(f"/items/{claim.item_id}", status_code=303)
            return RedirectResponse("/?" + urlencode({"message": "Nothing left to review."}), status_code=303)
        return _back(
            item_id, f"{outcome.decision.value.capitalize()}: the document is {outcome.result.status.value}."
        )

    @app.post("/items/{item_id}/validate")
    def validate_item(request: Request, item_id: int, body: Json) -> Response:
        user = signed_in(request)
        if not csrf_matches(user.csrf_token, request.headers.get("x-csrf-token")):
            raise BadCsrf()
        item, result = load_item(item_id)
        if item is None or result is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        if queue.is_held_by(item, user.username) and item.lease_expires_at - queue.clock() < queue.lease / 2:
            # The reviewer is typing: keep their claim alive (an audit event at most every half lease).
            queue.claim(user.username, item_id)
        doctype = queue.doctypes.get(result.doc_type or "")
        values = {
            str(k): (v if isinstance(v, str) else None) for k, v in dict(body.get("values", {})).items()
        }
        if doctype is None:
            return JSONResponse({"errors": {}, "repairs": {}})
        fields = {name: FieldResult(value=value) for name, value in values.items()}
        return JSONResponse(
            {"errors": live_errors(values, doctype), "repairs": field_repairs(fields, doctype)}
        )

    @app.get("/items/{item_id}/pages/{page_number}.png")
    def page_image(request: Request, item_id: int, page_number: int) -> Response:
        signed_in(request)
        item, result = load_item(item_id)
        data = page_png(result, page_number, page_cache, settings.ingest) if result else None
        if data is None:
            return Response("Not found.", status_code=404, media_type="text/plain")
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})

    return app


def _back(item_id: int, message: str) -> RedirectResponse:
    return RedirectResponse(f"/items/{item_id}?" + urlencode({"message": message}), status_code=303)


def _age(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"


def _form_fields(doctype, result, values: dict[str, Any]) -> list[dict[str, Any]]:
    """One form input per schema property (in schema order), then any extra fields the result has."""
    specs = doctype.fields if doctype else {}
    names = list(specs) + [name for name in result.fields if name not in specs]
    fields = []
    for name in names:
        spec = specs.get(name)
        read = result.fields.get(name)
        fields.append(
            {
                "name": name,
                "title": spec.title if spec else name.replace("_", " "),
                "description": spec.schema.get("description", "") if spec else "",
                "required": bool(spec and spec.required),
                "value": "" if values.get(name) is None else str(values[name]),
                "confidence": read.confidence if read else None,
                "page": read.page if read else None,
            }
        )
    return fields
