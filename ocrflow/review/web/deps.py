"""What every review route needs, as FastAPI dependencies instead of closures over ``create_app``.

The app's services live in one :class:`ReviewServices` on ``app.state``; a route asks for
them, for the signed-in reviewer, for a CSRF-checked form or for a checked item number by
naming the dependency in its signature. Every input is checked here, at the boundary: a
request a route cannot serve is answered 401, 403, 404 or 422, never 500.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from ocrflow.review.auth import Accounts, SignedIn, SignInThrottle, csrf_matches
from ocrflow.review.queue import ReviewQueue, item_number
from ocrflow.settings import Settings

SESSION_COOKIE = "ocrflow_session"
LOGIN_CSRF_COOKIE = "ocrflow_login_csrf"


class NotSignedIn(Exception):
    pass


class BadCsrf(Exception):
    pass


@dataclass
class ReviewServices:
    """Everything the routes share, built once by ``create_app``."""

    settings: Settings
    queue: ReviewQueue
    accounts: Accounts
    throttle: SignInThrottle
    templates: Jinja2Templates
    page_cache: Path


def services(request: Request) -> ReviewServices:
    return request.app.state.review


Services = Annotated[ReviewServices, Depends(services)]


def signed_in(request: Request, review: Services) -> SignedIn:
    user = review.accounts.signed_in(request.cookies.get(SESSION_COOKIE))
    if user is None:
        raise NotSignedIn()
    return user


Reviewer = Annotated[SignedIn, Depends(signed_in)]


async def posted_form(request: Request) -> dict[str, Any]:
    return dict(await request.form())


# Bodies are read in async dependencies, so the handlers can be plain functions: FastAPI
# runs those in a thread pool, and a query waiting for a lock never stalls the event loop.
Form = Annotated[dict[str, Any], Depends(posted_form)]


def checked_form(user: Reviewer, form: Form) -> dict[str, Any]:
    """The posted form of a signed-in reviewer, refused unless it carries their CSRF token."""
    if not csrf_matches(user.csrf_token, _text(form.get("csrf_token"))):
        raise BadCsrf()
    return form


CheckedForm = Annotated[dict[str, Any], Depends(checked_form)]


async def posted_json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise HTTPException(422, "the body is not JSON") from None


Json = Annotated[Any, Depends(posted_json)]


def checked_json(request: Request, user: Reviewer, body: Json) -> Any:
    """A JSON body of a signed-in reviewer, refused unless its ``X-CSRF-Token`` header matches."""
    if not csrf_matches(user.csrf_token, request.headers.get("x-csrf-token")):
        raise BadCsrf()
    return body


CheckedJson = Annotated[Any, Depends(checked_json)]


def item_id(item_id: str) -> int:
    """The ``{item_id}`` of a path, checked before any query: an impossible number is a 404."""
    number = item_number(item_id)
    if number is None:
        raise HTTPException(404, "no such item")
    return number


ItemId = Annotated[int, Depends(item_id)]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def form_text(form: dict[str, Any], name: str) -> str:
    """A form field as text (an uploaded file where text belongs counts as nothing)."""
    return _text(form.get(name)) or ""


def render(
    request: Request, review: ReviewServices, template: str, user: SignedIn | None, **context: Any
) -> HTMLResponse:
    return review.templates.TemplateResponse(
        request, template, {"user": user, "nonce": request.state.nonce, **context}
    )


def back_to_item(item: int, message: str) -> RedirectResponse:
    return RedirectResponse(f"/items/{item}?" + urlencode({"message": message}), status_code=303)


def new_login_token() -> str:
    return secrets.token_urlsafe(32)
