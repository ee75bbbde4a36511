"""The review web app: server-rendered pages over the queue, no front-end build step.

Routes (everything but ``/login`` needs a session; every POST needs the CSRF token)::

    GET  /login, POST /login, POST /logout          web/signin.py
    GET  /                           the queue, filtered by type, reason, age and state   web/listing.py
    POST /next                       claim the oldest free item and open it
    GET  /items/{id}                 page images with OCR boxes, the schema's form         web/items.py
                                     ({id} may be a full document id: redirected to its item)
    POST /items/{id}/claim | release | decide
    POST /items/{id}/validate        live validation and repair suggestions (JSON)
    GET  /items/{id}/pages/{n}.png   a page image at screen size, by item and page number only
    GET  /items/{id}/pages/{n}/crop.jpg?region=l,t,r,b   a zoomed crop at up to full resolution
    POST /items/{id}/type | reopen | confirm | assign
    GET  /health                     the queue's health                                     web/health.py

Each area is an ``APIRouter``; what routes share (the queue, accounts, the signed-in
reviewer, CSRF-checked forms, checked item numbers) are dependencies in :mod:`.web.deps`.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ocrflow.doctypes import load_doctypes
from ocrflow.review.auth import Accounts, SignInThrottle
from ocrflow.review.queue import ReviewQueue
from ocrflow.review.web import health, items, listing, signin
from ocrflow.review.web.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    BadCsrf,
    NotSignedIn,
    ReviewServices,
)
from ocrflow.settings import Settings
from ocrflow.store import ResultStore

__all__ = ["LOGIN_CSRF_COOKIE", "SESSION_COOKIE", "create_app", "server_config"]

TEMPLATES = Path(__file__).parent / "templates"


def create_app(settings: Settings, queue: ReviewQueue | None = None) -> FastAPI:
    if queue is None:
        store = ResultStore(settings.out_dir, settings.resolved_database_url())
        queue = ReviewQueue(
            store, load_doctypes(settings.schema_dir), lease_seconds=settings.review.lease_seconds
        )
    app = FastAPI(title="ocrflow review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.review = ReviewServices(
        settings=settings,
        queue=queue,
        accounts=Accounts(queue.store.engine, settings.review.session_hours),
        throttle=SignInThrottle(queue.store.engine, settings.review),
        templates=Jinja2Templates(directory=TEMPLATES),
        page_cache=settings.out_dir / ".review-pages",
    )
    for router in (signin.router, listing.router, items.router, health.router):
        app.include_router(router)
    if settings.review.trusted_proxies:
        # Only these proxies may say who the client is; the server itself trusts no header.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.review.trusted_proxies)
    app.middleware("http")(_security_headers)
    app.add_exception_handler(NotSignedIn, _to_login)
    app.add_exception_handler(BadCsrf, _bad_csrf)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    return app


def server_config(app: FastAPI, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """How ``ocrflow review serve`` runs the app, proxy headers ignored by uvicorn.

    uvicorn believes ``X-Forwarded-For`` from loopback by default; here only the app's
    ``review.trusted_proxies`` decides whose headers count.
    """
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, proxy_headers=False, server_header=False
    )


async def _security_headers(request: Request, call_next):
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


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "") or request.url.path.endswith("/validate")


async def _to_login(request: Request, _exc: NotSignedIn):
    if request.method == "GET" and "application/json" not in request.headers.get("accept", ""):
        return RedirectResponse("/login", status_code=303)
    return JSONResponse({"error": "sign in first"}, status_code=401)


async def _bad_csrf(_request: Request, _exc: BadCsrf):
    return HTMLResponse("The form was stale or forged (CSRF token mismatch). Reload the page.", 403)


async def _http_error(request: Request, exc: StarletteHTTPException):
    # Short plain answers: no framework detail, and nothing of the request echoed back.
    if _wants_json(request):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)
    text = "Not found." if exc.status_code == 404 else str(exc.detail)
    return HTMLResponse(text, exc.status_code)


async def _invalid_request(request: Request, _exc: RequestValidationError):
    message = "The request is malformed."
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=422)
    return HTMLResponse(message, 422)
