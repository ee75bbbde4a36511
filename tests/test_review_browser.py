"""The review app in a real headless Chromium (Debian's, driven by Playwright; no browser download).

A document goes through the real pipeline (RapidOCR) to the queue; a reviewer signs in,
opens it, sees the page with its OCR boxes, corrects the card number through the offered
repair while the validation message changes, approves with the keyboard and moves on.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import expect

from ocrflow.doctypes import load_doctypes
from ocrflow.models import Status
from ocrflow.pipeline import Context, process_document
from ocrflow.review.app import create_app
from ocrflow.review.auth import Accounts
from ocrflow.review.queue import ReviewQueue
from ocrflow.settings import Settings
from ocrflow.store import ResultStore
from tests.conftest import EXAMPLES
from tests.review_support import VALID_CARD, live_server, needs_review, untyped

CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 1400, "height": 900}
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
        page.keyboard.press("Control+Enter")  # approve as read, from inside a field...
        page.wait_for_selector("text=invalid values block the approval")  # ...refused: it fails Luhn
        assert queue.get(2).state == "claimed"
        page.check("#override")
        page.fill("#note", "the card really prints this number")
        page.locator("#f-card_number").focus()
        page.keyboard.press("Control+Enter")
        page.wait_for_selector("text=Approved: the document is accepted.")
        assert json.loads(ctx.store.result_path(second.document_id).read_text())["status"] == "accepted"
        assert queue.get(2).state == "approved"
        page.close()


def test_choose_a_type_block_an_invalid_approval_override_it_and_reopen(browser, tmp_path: Path):
    settings = Settings(out_dir=tmp_path / "out")
    store = ResultStore(settings.out_dir, settings.resolved_database_url())
    document = untyped(1, tmp_path / "scan.png")
    store.save(document)
    queue = ReviewQueue(store, load_doctypes())

    with alice_on_item_one(browser, settings, queue) as page:
        page.click("#claim")
        page.wait_for_selector("text=Choose the document type")
        assert page.locator("#decision .field").count() == 0  # no type, no fields yet
        page.select_option("#doc-type", "bank_card")
        page.click("#choose-type")
        page.wait_for_selector("text=Read as a bank_card from the stored OCR")
        card = page.locator("#f-card_number")
        assert card.input_value() == VALID_CARD  # read from the stored lines, no OCR ran
        assert store.load(document.document_id).doc_type == "bank_card"

        page.locator("h1").click()  # keys act on the page, not inside a field
        page.keyboard.press("+")
        expect(page.locator("#zoom-level")).to_have_text("150%")
        assert page.locator(".page").evaluate("p => p.style.width") == "150%"
        page.keyboard.press("0")
        expect(page.locator("#zoom-level")).to_have_text("100%")
        page.keyboard.press("j")  # to the first field, then Enter goes on to the next
        assert page.evaluate("document.activeElement.id") == "f-card_number"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "f-bank"
        assert queue.get(1).state == "claimed"  # Enter in a field moves on; it does not submit

        card.fill("abc")
        expect(page.locator("#errors-card_number")).not_to_be_empty()
        page.click("#approve")
        page.wait_for_selector("text=invalid values block the approval")
        assert page.locator("#f-card_number").input_value() == "abc"  # what was typed is still there
        assert queue.get(1).state == "claimed"
        assert store.load(document.document_id).status.value == "needs_review"

        page.check("#override")
        page.click("#approve")  # an override without a note is refused too
        page.wait_for_selector("text=write a note saying why")
        page.check("#override")
        page.fill("#note", "the card is a test card")
        page.click("#approve")
        page.wait_for_selector("text=Corrected: the document is accepted.")
        final = store.load(document.document_id)
        assert final.fields["card_number"].value == "abc"
        assert final.fields["card_number"].override.note == "the card is a test card"
        flag = page.locator(".field[data-field=card_number] .flag").inner_text()
        assert flag.startswith("⚑ kept despite errors")
        assert page.locator("#confirm").count() == 1

        page.fill("#reopen-reason", "the number was misread after all")
        page.click("#reopen")
        page.wait_for_selector("text=Reopened: the item is yours to decide again.")
        assert page.locator("#state").inner_text() == "claimed"
        assert store.load(document.document_id).status.value == "needs_review"
        page.locator("#f-card_number").fill(VALID_CARD)
        page.keyboard.press("Control+Enter")
        page.wait_for_selector("text=Corrected: the document is accepted.")
        assert store.load(document.document_id).fields["card_number"].override is None
        actions = [e.action for e in queue.events(1)]
        assert actions == ["queued", "claimed", "typed", "corrected", "reopened", "corrected"]
        assert queue.events(1)[4].after["note"] == "the number was misread after all"
    store.engine.dispose()


@contextmanager
def alice_on_item_one(browser, settings: Settings, queue: ReviewQueue, **page_options) -> Iterator:
    """The app over ``queue`` in a new page, where reviewer alice has signed in and opened item 1."""
    Accounts(queue.store.engine).add_user("alice", "correct horse")
    with live_server(create_app(settings, queue=queue)) as base:
        page = browser.new_page(**page_options)
        page.goto(base + "/login")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "correct horse")
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")
        page.goto(base + "/items/1")
        yield page
        page.close()


def test_zooming_past_the_screen_sized_page_fetches_the_visible_part_at_full_resolution(
    browser, tmp_path: Path
):
    from PIL import Image, ImageDraw

    from ocrflow.ingest import identify

    scan = tmp_path / "big.png"
    image = Image.new("L", (4800, 3200), 255)
    ImageDraw.Draw(image).text((100, 100), "TOTAL 9.90", fill=0)
    image.save(scan)
    document = needs_review(1, source=scan, doc_id=identify(scan).document_id)
    document.pages[0] = document.pages[0].model_copy(update={"width": 4800, "height": 3200})
    settings = Settings(out_dir=tmp_path / "out")
    store = ResultStore(settings.out_dir, settings.resolved_database_url())
    store.save(document)
    with alice_on_item_one(browser, settings, ReviewQueue(store, load_doctypes()), viewport=VIEWPORT) as page:
        shown = page.locator(".page img:not(.crop)")
        shown.evaluate("img => img.decode()")
        assert shown.evaluate("img => img.naturalWidth") == 2000  # the screen-sized rendition
        assert page.locator("img.crop").count() == 0
        page.locator("h1").click()
        for _ in range(3):
            page.keyboard.press("+")  # 338%: past what the rendition holds
        crop = page.locator("img.crop")
        expect(crop).to_have_count(1)
        crop.evaluate("img => img.decode()")
        src = crop.get_attribute("src")
        assert "/items/1/pages/1/crop.jpg?region=" in src
        assert crop.evaluate("img => img.naturalWidth") > 0
        viewport = page.locator(".viewport")
        before = viewport.evaluate("v => v.scrollLeft")
        box = viewport.bounding_box()
        page.mouse.move(box["x"] + 300, box["y"] + 300)
        page.mouse.down()
        page.mouse.move(box["x"] + 100, box["y"] + 250, steps=5)
        page.mouse.up()
        assert viewport.evaluate("v => v.scrollLeft") > before  # dragging pans the page
    store.engine.dispose()


def _rect(left: float, top: float, right: float, bottom: float) -> list[list[float]]:
    return [[left, top], [right, top], [right, bottom], [left, bottom]]


def test_a_focused_field_lights_up_its_boxes_on_its_page_and_the_independent_reading_is_one_click(
    browser, tmp_path: Path
):
    from ocrflow.ingest import identify
    from ocrflow.models import (
        FieldBox,
        FieldError,
        FieldEvidence,
        FieldResult,
        Grounding,
        OcrLine,
        PageResult,
        Reason,
        Stage,
    )

    pdf = EXAMPLES / "receipt_pages.pdf"  # two pages of 1000 x 1700 px
    total_line = _rect(600, 1180, 900, 1220)
    date_box = FieldBox(page=1, box=_rect(80, 420, 380, 450), line="DATE: 25/12/2018")
    fields = {
        # The engine read 28.00; the independent reading found 25.00 on page 2.
        "total": FieldResult(
            value="28.00",
            confidence=0.3,
            raw="28.00",
            page=2,
            candidates=["25.00"],
            errors=[
                FieldError(
                    code="readings_disagree", message="total: the model read 28.00; the reading has 25.00"
                )
            ],
            evidence=FieldEvidence(
                outcome=Grounding.NEAR,
                reader="local:PP-OCRv5",
                reading="25.00",
                differs_at=[1],
                page=2,
                boxes=[FieldBox(page=2, box=total_line, line="TOTAL: 25.00")],
            ),
        ),
        "date": FieldResult(value="2018-12-25", confidence=0.95, raw="25/12/2018", page=1, boxes=[date_box]),
        # A result without boxes: the stored line of its page that holds its raw text is its place.
        "company": FieldResult(
            value="ABC MINI MARKET SDN BHD", confidence=0.95, raw="ABC MINI MARKET SDN BHD", page=2
        ),
    }
    lines = {
        1: [OcrLine(text="DATE: 25/12/2018", box=date_box.box, score=0.98)],
        2: [
            OcrLine(text="ABC MINI MARKET SDN BHD", box=_rect(150, 90, 850, 140), score=0.97),
            OcrLine(text="TOTAL: 25.00", box=total_line, score=0.96),
        ],
    }
    document = needs_review(1, source=pdf, doc_id=identify(pdf).document_id).model_copy(
        update={
            "doc_type": "receipt",
            "fields": fields,
            "reasons": [
                Reason(
                    stage=Stage.VALIDATE,
                    code="readings_disagree",
                    message="total: the engine read 28.00, the independent reading 25.00 (page 2)",
                    field="total",
                    page=2,
                )
            ],
            "pages": [PageResult(page_number=n, width=1000, height=1700, lines=lines[n]) for n in (1, 2)],
        }
    )
    settings = Settings(out_dir=tmp_path / "out")
    store = ResultStore(settings.out_dir, settings.resolved_database_url())
    store.save(document)
    with alice_on_item_one(browser, settings, ReviewQueue(store, load_doctypes()), viewport=VIEWPORT) as page:
        page.click("#claim")
        page.wait_for_selector("#approve")
        readings = page.locator("#readings-total")
        assert readings.locator("mark").inner_text() == "8"  # where the readings differ
        assert "25.00" in readings.inner_text() and "found with different characters" in readings.inner_text()
        total_boxes = page.locator("polygon.field-box[data-field=total]")
        expect(total_boxes).to_have_count(1)  # only the independent reading's; the engine gave none
        expect(total_boxes.first).to_be_hidden()
        viewer = page.locator("#viewer")
        assert viewer.evaluate("v => v.scrollTop") == 0

        page.locator("#f-total").focus()
        found = page.locator("polygon.field-box.independent[data-field=total]")
        expect(found).to_have_class(re.compile(r"\bactive\b"))
        expect(found).to_be_visible()
        assert found.evaluate("b => b.closest('.viewport').dataset.page") == "2"
        assert viewer.evaluate("v => v.scrollTop") > 0  # scrolled down to page 2
        shown, seen = found.bounding_box(), viewer.bounding_box()
        assert seen["y"] <= shown["y"] and shown["y"] + shown["height"] <= seen["y"] + seen["height"]

        page.locator("#f-company").focus()  # located from the stored line
        expect(page.locator("polygon.field-box.engine[data-field=company]")).to_be_visible()
        expect(found).to_be_hidden()
        page.locator("#f-date").focus()
        date = page.locator("polygon.field-box.engine[data-field=date]")
        expect(date).to_be_visible()
        assert date.evaluate("b => b.closest('.viewport').dataset.page") == "1"
        shown, seen = date.bounding_box(), viewer.bounding_box()
        assert seen["y"] <= shown["y"] and shown["y"] + shown["height"] <= seen["y"] + seen["height"]

        page.click(".reasons li[data-field=total]")  # the reason takes the reviewer to its field
        assert page.evaluate("document.activeElement.id") == "f-total"
        expect(found).to_be_visible()
        assert page.locator("#candidates-total").count() == 0  # offered once, as the independent reading
        page.click("#use-independent-total")
        assert page.locator("#f-total").input_value() == "25.00"
        page.screenshot(path=str(tmp_path / "evidence.png"), full_page=True)
    store.engine.dispose()


def test_a_wrong_total_from_the_api_engine_is_shown_beside_the_independent_reading(
    browser, engine, fake_dashscope, tmp_path: Path, monkeypatch
):
    from ocrflow.settings import DashScopeOptions

    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-review-evidence")
    fake_dashscope.kv = {"date": "25/12/2018", "total": "9.80"}  # the receipt prints TOTAL: 9.00
    settings = Settings(
        out_dir=tmp_path / "out",
        engine="dashscope",
        dashscope=DashScopeOptions(base_url=fake_dashscope.native_url),
    )
    ctx = Context(settings, given_verifier=engine)
    result = process_document(ctx, EXAMPLES / "receipt_valid.png", "receipt")
    assert result.status is Status.NEEDS_REVIEW and result.fields["total"].value == "9.80"
    with alice_on_item_one(
        browser, settings, ReviewQueue(ctx.store, ctx.doctypes), viewport=VIEWPORT
    ) as page:
        page.click("#claim")
        page.wait_for_selector("#approve")
        assert "readings_disagree" in page.inner_text(".reasons")
        # The engine answered with fields only: the page's boxes and text are the independent reading's.
        ocr_boxes = page.locator(".page polygon:not(.field-box)")
        assert ocr_boxes.count() == len(result.pages[0].independent_lines) > 3
        assert any("TOTAL" in title for title in ocr_boxes.locator("title").all_text_contents())
        readings = page.locator("#readings-total")
        assert readings.locator(".engine-reading").inner_text() == "9.80"
        assert "9.00" in readings.locator(".independent-reading").inner_text()
        page.locator("#f-total").focus()
        expect(page.locator("polygon.field-box.independent[data-field=total]")).to_be_visible()
        page.click("#use-independent-total")
        assert page.locator("#f-total").input_value() == "9.00"
        page.close()
