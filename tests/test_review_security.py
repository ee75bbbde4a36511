"""The review app's access rules, over real HTTP to the app under uvicorn.

Nothing but sign-in without a session; every form refuses a forged CSRF token; the image
route takes an item and a page number, and no request path reaches the file system.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.orm import Session

from ocrflow.doctypes import load_doctypes
from ocrflow.ingest import identify
from ocrflow.masking import mask_value
from ocrflow.review.app import SESSION_COOKIE, create_app
from ocrflow.review.auth import Accounts, hash_password
from ocrflow.review.queue import ReviewQueue
from ocrflow.settings import ReviewOptions, Settings
from ocrflow.store import ResultStore, ReviewerRow, ReviewState
from tests.conftest import EXAMPLES
from tests.review_support import CARD, live_server, needs_review, sign_in

SECRET_FILE_TEXT = "top secret, outside the results folder"


@pytest.fixture
def app_setup(tmp_path: Path):
    source = tmp_path / "inbox" / "card.png"
    source.parent.mkdir()
    shutil.copy(EXAMPLES / "bank_card_bad_luhn.png", source)
    (tmp_path / "secret.txt").write_text(SECRET_FILE_TEXT)
    settings = Settings(out_dir=tmp_path / "out")
    store = ResultStore(settings.out_dir, settings.resolved_database_url())
    store.save(needs_review(1, source=source, doc_id=identify(source).document_id))
    store.save(needs_review(2))
    Accounts(store.engine).add_user("alice", "correct horse")
    Accounts(store.engine).add_user("bob", "battery staple")
    queue = ReviewQueue(store, load_doctypes())
    app = create_app(settings, queue=queue)
    with live_server(app) as base:
        yield app, base, queue
    store.engine.dispose()


def _routes(app) -> list[tuple[str, str]]:
    # The app is built from routers: FastAPI keeps each as one node in app.routes and
    # iter_route_contexts walks them to every path operation.
    found = []
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            path = context.path.replace("{item_id}", "1").replace("{page_number}", "1")
            found.extend((method, path) for method in sorted(context.methods))
    return found


def test_every_route_but_sign_in_needs_a_session(app_setup):
    app, base, queue = app_setup
    routes = _routes(app)
    assert len(routes) >= 10  # the test must see the real route table, not an empty one
    with httpx.Client(follow_redirects=False) as client:
        for method, path in routes:
            response = client.request(method, base + path, data={"csrf_token": "x"})
            if path == "/login":
                assert response.status_code in (200, 303, 403), (method, path)
                continue
            assert response.status_code in (303, 401), (method, path, response.status_code)
            if response.status_code == 303:
                assert response.headers["location"] == "/login"
            assert CARD not in response.text and "card.png" not in response.text
    for extra in ("/docs", "/openapi.json", "/redoc", "/static/x"):
        assert httpx.get(base + extra).status_code in (303, 404)
    assert queue.get(1).state == ReviewState.PENDING  # nothing changed


def test_a_signed_in_reviewer_reaches_the_pages_and_the_cookie_is_locked_down(app_setup):
    _, base, _ = app_setup
    with httpx.Client() as client:
        sign_in(client, base)
        cookie = next(c for c in client.cookies.jar if c.name == SESSION_COOKIE)
        assert cookie.has_nonstandard_attr("HttpOnly")
        assert (cookie.get_nonstandard_attr("SameSite") or "").lower() == "strict"
        listing = client.get(base + "/")
        assert listing.status_code == 200 and "card.png" in listing.text
        policy = listing.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'nonce-" in policy
        nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
        assert (
            f'<script nonce="{nonce}">' in listing.text
        )  # the page's one script runs, nothing injected would
        assert CARD not in listing.text and "***************3445" in listing.text  # masked in the list
        image = client.get(base + "/items/1/pages/1.png")
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        assert client.get(base + "/items/2/pages/1.png").status_code == 404  # its source file does not exist


def test_wrong_passwords_and_unknown_users_do_not_sign_in(app_setup):
    _, base, _ = app_setup
    with httpx.Client() as client:
        page = client.get(f"{base}/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        for username, password in (("alice", "wrong password"), ("mallory", "correct horse")):
            response = client.post(
                f"{base}/login", data={"csrf_token": token, "username": username, "password": password}
            )
            assert response.status_code == 303 and response.headers["location"] == "/login?error=1"
        assert client.get(base + "/", follow_redirects=False).status_code == 303


def test_a_forged_csrf_token_is_refused_on_every_form(app_setup):
    _, base, queue = app_setup
    with httpx.Client() as alice, httpx.Client() as bob:
        sign_in(alice, base)
        sign_in(bob, base, "bob", "battery staple")
        bobs_token = re.search(r'name="csrf_token" value="([^"]+)"', bob.get(base + "/").text).group(1)
        for forged in ("", "forged", bobs_token):
            for path in ("/items/1/claim", "/next", "/items/1/decide", "/items/1/release", "/logout"):
                response = alice.post(base + path, data={"csrf_token": forged, "action": "approve"})
                assert response.status_code == 403, (path, forged)
            response = alice.post(
                base + "/items/1/validate", json={"values": {}}, headers={"X-CSRF-Token": forged}
            )
            assert response.status_code == 403
        assert queue.get(1).state == ReviewState.PENDING
        assert [e.action for e in queue.events(1)] == ["queued"]
        assert alice.get(base + "/", follow_redirects=False).status_code == 200  # still signed in
    with httpx.Client() as fresh:
        fresh.get(base + "/login")
        response = fresh.post(
            base + "/login", data={"csrf_token": "forged", "username": "alice", "password": "correct horse"}
        )
        assert response.status_code == 403 and SESSION_COOKIE not in response.cookies


def _raw_get(base: str, path: str, cookie: str) -> tuple[int, bytes]:
    """A request whose path goes out exactly as written (clients would normalise the dots)."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Cookie: {SESSION_COOKIE}={cookie}\r\nConnection: close\r\n\r\n"
        )
        connection.sendall(request.encode())
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


def test_the_image_route_takes_no_path_from_the_client(app_setup, tmp_path: Path):
    _, base, _ = app_setup
    with httpx.Client() as client:
        sign_in(client, base)
        cookie = client.cookies[SESSION_COOKIE]
    secret = str(tmp_path / "secret.txt")
    attempts = [
        "/items/1/pages/../../../../../../etc/passwd",
        "/items/1/pages/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        f"/items/1/pages/{secret}",
        "/items/1/pages/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/items/..%2F..%2Fsecret.txt/pages/1.png",
        "/items/1/pages/1.png%00.txt",
        "/items/-1/pages/1.png",
        "/items/1/pages/0.png",
        "/items/1/pages/2.png",
        "/items/99/pages/1.png",
    ]
    for path in attempts:
        status, body = _raw_get(base, path, cookie)
        assert status in (400, 404, 422), (path, status)
        assert b"root:" not in body and SECRET_FILE_TEXT.encode() not in body
    status, body = _raw_get(base, "/items/1/pages/1.png", cookie)
    assert status == 200 and b"\x89PNG" in body


def test_signing_out_ends_the_session(app_setup):
    _, base, _ = app_setup
    with httpx.Client() as client:
        sign_in(client, base)
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get(base + "/").text).group(1)
        cookie = client.cookies[SESSION_COOKIE]
        assert (
            client.post(base + "/logout", data={"csrf_token": token}, follow_redirects=False).status_code
            == 303
        )
    with httpx.Client(cookies={SESSION_COOKIE: cookie}) as stale:
        assert stale.get(base + "/", follow_redirects=False).status_code == 303


def test_decisions_are_refused_for_an_item_someone_else_holds(app_setup):
    _, base, queue = app_setup
    queue.claim("bob", 1)
    with httpx.Client() as client:
        sign_in(client, base)
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get(base + "/").text).group(1)
        response = client.post(
            base + "/items/1/decide", data={"csrf_token": token, "action": "approve"}, follow_redirects=False
        )
        assert response.status_code == 303 and "claimed+by+bob" in response.headers["location"]
    assert queue.get(1).state == ReviewState.CLAIMED and queue.get(1).claimed_by == "bob"
    assert (
        json.loads(queue.store.result_path(queue.get(1).document_id).read_text())["status"] == "needs_review"
    )


@contextmanager
def _served(tmp_path: Path, **review_options):
    """Two app instances (as two processes would be) over one queue database, with ``review_options``."""
    settings = Settings(out_dir=tmp_path / "out", review=ReviewOptions(**review_options))
    store = ResultStore(settings.out_dir, settings.resolved_database_url())
    store.save(needs_review(1))
    Accounts(store.engine).add_user("alice", "correct horse")
    Accounts(store.engine).add_user("bob", "battery staple")
    queue = ReviewQueue(store, load_doctypes())
    with (
        live_server(create_app(settings, queue=queue)) as first,
        live_server(create_app(settings, queue=queue)) as second,
    ):
        yield first, second, settings
    store.engine.dispose()


def _try_sign_in(base: str, username: str, password: str) -> httpx.Response:
    with httpx.Client() as client:
        page = client.get(f"{base}/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        return client.post(
            f"{base}/login", data={"csrf_token": token, "username": username, "password": password}
        )


def _alert(response: httpx.Response) -> str:
    return re.search(r'role="alert">([^<]*)<', response.text).group(1)


def test_failed_sign_ins_lock_the_name_for_a_cooldown_and_a_success_resets_the_count(tmp_path: Path):
    with _served(tmp_path, sign_in_attempts=3, sign_in_cooldown_seconds=2) as (first, second, _):
        for _ in range(2):
            assert _try_sign_in(first, "alice", "wrong password").headers["location"] == "/login?error=1"
        assert _try_sign_in(first, "alice", "correct horse").headers["location"] == "/"  # resets the count
        for _ in range(3):  # three more: the two before the success no longer count
            assert _try_sign_in(first, "alice", "wrong password").headers["location"] == "/login?error=1"

        refused = _try_sign_in(second, "alice", "correct horse")  # the other instance sees the lock
        assert refused.status_code == 429 and SESSION_COOKIE not in refused.cookies
        assert _alert(refused).startswith("Too many failed sign-ins. Try again in")
        assert int(refused.headers["retry-after"]) > 0
        assert 'name="csrf_token"' in refused.text  # the form is there to try again later

        for _ in range(3):  # a name nobody has is counted and refused the same way
            assert _try_sign_in(second, "mallory", "correct horse").headers["location"] == "/login?error=1"
        unknown = _try_sign_in(first, "mallory", "correct horse")
        assert unknown.status_code == 429 and _alert(unknown) == _alert(refused)

        assert _try_sign_in(first, "bob", "battery staple").headers["location"] == "/"  # others sign in
        time.sleep(2.2)
        assert _try_sign_in(first, "alice", "correct horse").headers["location"] == "/"


def test_failed_sign_ins_from_one_address_lock_it_across_names(tmp_path: Path):
    with _served(tmp_path, sign_in_attempts=3, sign_in_attempts_per_address=4) as (first, second, _):
        for n, base in enumerate((first, second, first, second)):  # one guess each at four names
            assert _try_sign_in(base, f"user{n}", "guess").headers["location"] == "/login?error=1"
        refused = _try_sign_in(first, "bob", "battery staple")
        assert refused.status_code == 429 and SESSION_COOKIE not in refused.cookies


def test_a_removed_reviewer_is_signed_out_at_once_and_cannot_sign_in(app_setup, tmp_path: Path):
    from typer.testing import CliRunner

    from ocrflow.cli import app as cli

    _, base, queue = app_setup
    with httpx.Client() as alice, httpx.Client() as bob:
        sign_in(alice, base)
        sign_in(bob, base, "bob", "battery staple")
        token = re.search(r'name="csrf_token" value="([^"]+)"', alice.get(base + "/").text).group(1)
        claimed = alice.post(base + "/items/1/claim", data={"csrf_token": token})
        assert claimed.headers["location"] == "/items/1"

        removed = CliRunner().invoke(cli, ["review", "remove-user", "alice", "--out", str(tmp_path / "out")])
        assert removed.exit_code == 0 and "removed reviewer alice" in removed.output

        assert alice.get(base + "/", follow_redirects=False).headers["location"] == "/login"
        refused = alice.post(base + "/items/1/release", data={"csrf_token": token}, follow_redirects=False)
        assert refused.status_code == 401
        assert bob.get(base + "/", follow_redirects=False).status_code == 200  # nobody else is affected
    assert _try_sign_in(base, "alice", "correct horse").headers["location"] == "/login?error=1"
    # A session that raced the removal (opened just before it landed) does not work either.
    raced, _ = Accounts(queue.store.engine).open_session("alice")
    with httpx.Client(cookies={SESSION_COOKIE: raced}) as late:
        assert late.get(base + "/", follow_redirects=False).headers["location"] == "/login"
    assert [(e.action, e.actor) for e in queue.events(1)] == [("queued", "pipeline"), ("claimed", "alice")]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_malformed_requests_are_refused_at_the_boundary_never_a_500(backend, tmp_path: Path, request):
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    settings = Settings(out_dir=tmp_path / "out", database_url=url)
    store = ResultStore(settings.out_dir, settings.resolved_database_url())
    store.save(needs_review(1))
    Accounts(store.engine).add_user("alice", "correct horse")
    queue = ReviewQueue(store, load_doctypes())
    with live_server(create_app(settings, queue=queue)) as base, httpx.Client() as client:
        sign_in(client, base)
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get(base + "/").text).group(1)
        for number in (
            "99999999999999999999999",
            "9223372036854775808",
            "2147483648",
            "0",
            "-1",
            "1e3",
            "１",
        ):
            assert client.get(f"{base}/items/{number}").status_code == 404, number
            assert client.get(f"{base}/items/{number}/pages/1.png").status_code == 404, number
            for action in ("claim", "release", "decide"):
                answer = client.post(f"{base}/items/{number}/{action}", data={"csrf_token": token})
                assert answer.status_code == 404, (number, action)
        headers = {"X-CSRF-Token": token, "Accept": "application/json"}
        for body in ({"values": "abc"}, {"values": 7}, {"values": ["a"]}, {"values": {"bank": 3}}, [1], "x"):
            answer = client.post(f"{base}/items/1/validate", json=body, headers=headers)
            assert answer.status_code == 422 and "error" in answer.json(), body
        not_json = client.post(f"{base}/items/1/validate", content=b"{", headers=headers)
        assert not_json.status_code == 422
        big_page = client.get(f"{base}/items/1/pages/99999999999999999999999.png")
        assert big_page.status_code == 404
        ok = client.post(f"{base}/items/1/validate", json={"values": {"bank": "ICBC"}}, headers=headers)
        assert ok.status_code == 200 and "errors" in ok.json()
    assert queue.get(1).state == ReviewState.PENDING
    store.engine.dispose()


def _sign_in_from(base: str, forwarded_for: str, username: str, password: str) -> httpx.Response:
    with httpx.Client(headers={"X-Forwarded-For": forwarded_for}) as client:
        page = client.get(f"{base}/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        return client.post(
            f"{base}/login", data={"csrf_token": token, "username": username, "password": password}
        )


def test_x_forwarded_for_is_ignored_unless_the_proxy_is_trusted(tmp_path: Path):
    # By default nobody is a trusted proxy, not even loopback: a guesser on the same host cannot
    # make each guess look like another address to slip under the per-address limit.
    with _served(tmp_path, sign_in_attempts=50, sign_in_attempts_per_address=3) as (first, _, _settings):
        for n in range(3):
            assert _sign_in_from(first, f"203.0.113.{n}", f"user{n}", "guess").status_code == 303
        assert _sign_in_from(first, "198.51.100.7", "bob", "battery staple").status_code == 429
    with _served(
        tmp_path / "trusted",
        sign_in_attempts=50,
        sign_in_attempts_per_address=3,
        trusted_proxies=["127.0.0.1"],
    ) as (first, _, _settings):
        for n in range(3):
            assert _sign_in_from(first, f"203.0.113.{n}", f"user{n}", "guess").status_code == 303
        # Behind a trusted proxy each client address is counted on its own.
        assert _sign_in_from(first, "198.51.100.7", "bob", "battery staple").headers["location"] == "/"
        for _ in range(3):
            _sign_in_from(first, "203.0.113.9", "carol", "guess")
        assert _sign_in_from(first, "203.0.113.9", "bob", "battery staple").status_code == 429


def test_passwords_are_scrypt_n_2_17_and_older_hashes_are_upgraded_at_sign_in(tmp_path: Path):
    store = ResultStore(tmp_path / "out", Settings(out_dir=tmp_path / "out").resolved_database_url())
    accounts = Accounts(store.engine)
    accounts.add_user("alice", "correct horse")
    with Session(store.engine) as session, session.begin():
        assert session.get(ReviewerRow, "alice").password_hash.startswith("scrypt$131072$8$1$")
        session.get(ReviewerRow, "alice").password_hash = hash_password("correct horse", n=2**14)
    assert not accounts.authenticate("alice", "wrong password")
    with Session(store.engine) as session:
        assert session.get(ReviewerRow, "alice").password_hash.startswith("scrypt$16384$")  # not on a failure
    assert accounts.authenticate("alice", "correct horse")
    with Session(store.engine) as session:
        upgraded = session.get(ReviewerRow, "alice").password_hash
    assert upgraded.startswith("scrypt$131072$8$1$") and accounts.authenticate("alice", "correct horse")
    store.engine.dispose()


@pytest.mark.parametrize("setting", ["masked", "full"])
def test_a_bystander_sees_id_and_card_numbers_masked_unless_the_setting_says_full(setting, tmp_path: Path):
    with _served(tmp_path, bystanders_see=setting) as (base, _, _settings), httpx.Client() as alice:
        with httpx.Client() as bob:
            sign_in(alice, base)
            sign_in(bob, base, "bob", "battery staple")
            token = re.search(r'name="csrf_token" value="([^"]+)"', alice.get(base + "/").text).group(1)
            assert alice.post(base + "/items/1/claim", data={"csrf_token": token}).status_code == 303
            assert CARD in alice.get(base + "/items/1").text  # the claimant needs the whole number

            seen = bob.get(base + "/items/1").text
            bobs = re.search(r'name="csrf_token" value="([^"]+)"', seen).group(1)
            checked = bob.post(
                base + "/items/1/validate",
                json={"values": {"card_number": CARD}},
                headers={"X-CSRF-Token": bobs},
            ).json()
            if setting == "masked":
                assert CARD not in seen and mask_value(CARD) in seen
                assert checked["repairs"] == {} and CARD not in json.dumps(checked)
            else:
                assert CARD in seen


def test_a_bystander_does_not_see_the_independent_reading_of_a_card_number(tmp_path: Path):
    from ocrflow.models import FieldError, FieldEvidence, FieldResult, Grounding
    from tests.review_support import VALID_CARD

    settings = Settings(out_dir=tmp_path / "out")
    store = ResultStore(settings.out_dir, settings.resolved_database_url())
    evidence = FieldEvidence(
        outcome=Grounding.NEAR, reader="local:PP-OCRv5", reading=VALID_CARD, differs_at=[18]
    )
    disagree = FieldError(code="readings_disagree", message="card number: the readings differ")
    card = FieldResult(
        value=CARD, confidence=0.4, raw=CARD, evidence=evidence, errors=[disagree], candidates=[VALID_CARD]
    )
    store.save(needs_review(1, card_number=card))
    Accounts(store.engine).add_user("alice", "correct horse")
    Accounts(store.engine).add_user("bob", "battery staple")
    with (
        live_server(create_app(settings, queue=ReviewQueue(store, load_doctypes()))) as base,
        httpx.Client() as alice,
        httpx.Client() as bob,
    ):
        sign_in(alice, base)
        sign_in(bob, base, "bob", "battery staple")
        token = re.search(r'name="csrf_token" value="([^"]+)"', alice.get(base + "/").text).group(1)
        assert alice.post(base + "/items/1/claim", data={"csrf_token": token}).status_code == 303
        assert f'data-value="{VALID_CARD}"' in alice.get(base + "/items/1").text  # the claimant's one click
        seen = bob.get(base + "/items/1").text
        assert VALID_CARD not in seen and CARD not in seen
    store.engine.dispose()
