"""Signing in and out: ``GET/POST /login``, ``POST /logout``."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ocrflow.review.auth import csrf_matches
from ocrflow.review.web.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    BadCsrf,
    CheckedForm,
    Form,
    ReviewServices,
    Services,
    form_text,
    new_login_token,
    render,
)
from ocrflow.store import now

router = APIRouter()


def _login_form(request: Request, review: ReviewServices, error: str, status_code: int = 200) -> HTMLResponse:
    token = new_login_token()
    response = render(request, review, "login.html", None, csrf_token=token, error=error)
    response.status_code = status_code
    _set_cookie(response, review, LOGIN_CSRF_COOKIE, token)
    return response


def _set_cookie(response: Response, review: ReviewServices, name: str, value: str, **options) -> None:
    """Every cookie the app sets: hidden from scripts, never sent cross-site, HTTPS-only if configured."""
    response.set_cookie(
        name, value, httponly=True, samesite="strict", secure=review.settings.review.secure_cookies, **options
    )


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, review: Services, error: str = "") -> HTMLResponse:
    return _login_form(request, review, "Wrong username or password." if error else "")


@router.post("/login")
def login(request: Request, review: Services, form: Form) -> Response:
    if not csrf_matches(request.cookies.get(LOGIN_CSRF_COOKIE) or "", form_text(form, "csrf_token")):
        raise BadCsrf()
    username, password = form_text(form, "username"), form_text(form, "password")
    address = request.client.host if request.client else None
    locked_until = review.throttle.locked_until(username, address)
    if locked_until is not None:
        # The password is not even checked, so a locked name answers the same whether it exists or not.
        minutes = math.ceil((locked_until - now()).total_seconds() / 60)
        message = f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
        response = _login_form(request, review, message, status_code=429)
        response.headers["Retry-After"] = str(minutes * 60)
        return response
    if not review.accounts.authenticate(username, password):
        review.throttle.failed(username, address)
        return RedirectResponse("/login?error=1", status_code=303)
    review.throttle.succeeded(username)
    token, _ = review.accounts.open_session(username)
    response = RedirectResponse("/", status_code=303)
    _set_cookie(
        response, review, SESSION_COOKIE, token, max_age=int(review.settings.review.session_hours * 3600)
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, review: Services, _form: CheckedForm) -> Response:
    review.accounts.close_session(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
