"""The review app in a real headless Chromium (Debian's, driven by Playwright; no browser download).

A document goes through the real pipeline (RapidOCR) to the queue; a reviewer signs in,
opens it, sees the page with its OCR boxes, corrects the card number through the offered
repair while the validation message changes, approves with the keyboard and moves on.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from ocrflow.models import Status
from ocrflow.pipeline import Context, process_document
from ocrflow.review.app import create_app
from ocrflow.review.auth import Accounts
from ocrflow.review.queue import ReviewQueue
from ocrflow.settings import Settings
from tests.conftest import EXAMPLES
from tests.review_support import live_server, needs_review

CHROMIUM = Path("/usr/bin/chromium")
READ = "6222021234567897"  # what OCR reads on bank_card_bad_luhn.png; fails Luhn
REPAIRED = "6222021234561897"  # the one 1/7 confusion that passes


@pytest.fixture
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run scripts/setup.sh test")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield browser
        browser.close()


def test_sign_in_correct_a_field_approve_and_see_the_result(browser, engine, tmp_path: Path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    source = inbox / "card.png"
    shutil.copy(EXAMPLES / "bank_card_bad_luhn.png", source)
    settings = Settings(out_dir=tmp_path / "out")
    ctx = Context(settings, given_engine=engine)
    first = process_document(ctx, source, "bank_card")
    assert first.status is Status.NEEDS_REVIEW and first.fields["card_number"].value == READ
    second = needs_review(2)
    ctx.store.save(second)
    Accounts(ctx.store.engine).add_user("alice", "correct horse")
    queue = ReviewQueue(ctx.store, ctx.doctypes)

    with live_server(create_app(settings, queue=queue)) as base:
        page = browser.new_page()
        page.goto(base + "/items/1")
        assert page.url == base + "/login"
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "correct horse")
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")

        listing = page.inner_text("#queue")
        assert "card.png" in listing and "************7897" in listing and READ not in listing

        page.click("text=card.png")
        page.wait_for_url(base + "/items/1")
        image = page.locator(".page img")
        image.evaluate("img => img.decode()")
        assert image.evaluate("img => img.naturalWidth") == first.pages[0].width
        assert page.locator(".page polygon").count() >= 3  # OCR boxes over the image
        page.click("#claim")
        page.wait_for_selector("#approve")

        errors = page.locator("#errors-card_number")
        assert "check digit is wrong" in errors.inner_text()
        card = page.locator("#f-card_number")
        card.fill("6222")
        expect(errors).to_contain_text("wrong length")
        card.fill(READ)
        expect(errors).to_contain_text("check digit is wrong")
        assert card.input_value() == READ  # a suggestion is only offered...
        page.click(f"button.repair[data-value='{REPAIRED}']")  # ...until the reviewer picks it
        expect(errors.locator("li")).to_have_count(0)
        expect(page.locator(".field[data-field=card_number]")).to_have_class(re.compile(r"\bvalid\b"))
        assert card.input_value() == REPAIRED
        page.screenshot(path=str(tmp_path / "item.png"), full_page=True)

        page.keyboard.press("n")  # approve and go on to the next item
        page.wait_for_url(base + "/items/2")
        result = json.loads(ctx.store.result_path(first.document_id).read_text())
        assert result["status"] == "accepted"
        assert result["fields"]["card_number"]["value"] == REPAIRED
        assert queue.get(1).state == "corrected" and queue.get(1).decided_by == "alice"

        page.wait_for_selector("#approve")
        page.locator("#f-card_number").focus()
        page.keyboard.press("Control+Enter")  # approve as read, from inside a field
        page.wait_for_selector("text=Approved: the document is accepted.")
        assert json.loads(ctx.store.result_path(second.document_id).read_text())["status"] == "accepted"
        assert queue.get(2).state == "approved"
        page.close()
