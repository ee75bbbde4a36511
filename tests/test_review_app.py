"""The review app's pages and JSON over real HTTP: filters, live validation, repairs, leases."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from ocrflow.doctypes import load_doctypes
from ocrflow.masking import mask_value
from ocrflow.models import FieldResult
from ocrflow.review.app import create_app
from ocrflow.review.auth import Accounts
from ocrflow.review.queue import ReviewQueue
from ocrflow.settings import Settings
from ocrflow.store import ResultStore
from tests.review_support import Clock, live_server, needs_review, sign_in

READ = "6222021234567897"
REPAIRED = "6222021234561897"


@pytest.fixture
def served(tmp_path: Path):
    settings = Settings(out_dir=tmp_path / "out")
    store = ResultStore(settings.out_dir, settings.resolved_database_url())
    store.save(
        needs_review(1, card_number=FieldResult(value=READ, confidence=0.9), bank=FieldResult(value="ICBC"))
    )
    receipt = needs_review(2).model_copy(update={"doc_type": "receipt", "fields": {}, "reasons": []})
    store.save(receipt.model_copy(update={"status": needs_review(2).status}))
    Accounts(store.engine).add_user("alice", "correct horse")
    clock = Clock()
    queue = ReviewQueue(store, load_doctypes(), lease_seconds=600, clock=clock)
    with live_server(create_app(settings, queue=queue)) as base, httpx.Client() as client:
        sign_in(client, base)
        yield base, client, queue, clock
    store.engine.dispose()


def _csrf(client: httpx.Client, base: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(base + "/").text).group(1)


def test_the_list_filters_by_type_and_reason(served):
    base, client, _, _ = served
    everything = client.get(base + "/").text
    assert everything.count("<tr>") == 3  # header and two items
    only_cards = client.get(base + "/", params={"type": "bank_card"}).text
    assert only_cards.count("<tr>") == 2 and "bank_card" in only_cards
    by_reason = client.get(base + "/", params={"reason": "invalid_checksum"}).text
    assert by_reason.count("<tr>") == 2
    old = client.get(base + "/", params={"age": "1d"}).text
    assert "No items match." in old


def test_the_list_masks_id_numbers_and_mrz_lines(served):
    base, client, queue, _ = served
    line2 = "L898902C36UTO7408122F1204159ZE184226B<<<<<10"
    passport = needs_review(3).model_copy(
        update={
            "doc_type": "passport",
            "fields": {
                "document_number": FieldResult(value="L898902C3"),
                "mrz_line2": FieldResult(value=line2),
                "surname": FieldResult(value="ERIKSSON"),
            },
        }
    )
    queue.store.save(passport)
    listing = client.get(base + "/", params={"type": "passport"}).text
    assert "ERIKSSON" in listing
    assert "L898902C3" not in listing and line2 not in listing and "******2C3" in listing


def test_live_validation_returns_messages_and_repairs_as_the_reviewer_types(served):
    base, client, queue, _ = served
    token = _csrf(client, base)
    client.post(base + "/items/1/claim", data={"csrf_token": token})
    check = lambda values: client.post(  # noqa: E731
        base + "/items/1/validate", json={"values": values}, headers={"X-CSRF-Token": token}
    ).json()
    found = check({"card_number": READ, "bank": "ICBC"})
    assert any("check digit is wrong" in m for m in found["errors"]["card_number"])
    assert found["repairs"] == {"card_number": [REPAIRED]}
    fixed = check({"card_number": REPAIRED, "bank": "ICBC"})
    assert fixed["errors"]["card_number"] == [] and fixed["repairs"] == {}
    empty = check({"card_number": "", "bank": "ICBC"})
    assert empty["errors"]["card_number"] == ["Card number was not found"]
    assert queue.get(1).state == "claimed"  # validating never decides


def test_typing_keeps_a_claim_alive(served):
    base, client, queue, clock = served
    token = _csrf(client, base)
    client.post(base + "/items/1/claim", data={"csrf_token": token})
    first_expiry = queue.get(1).lease_expires_at
    clock.current += timedelta(seconds=400)  # under half the lease left
    client.post(base + "/items/1/validate", json={"values": {}}, headers={"X-CSRF-Token": token})
    assert queue.get(1).lease_expires_at == clock.current + timedelta(seconds=600) > first_expiry
    assert [e.action for e in queue.events(1)][-1] == "renewed"
    client.post(base + "/items/1/validate", json={"values": {}}, headers={"X-CSRF-Token": token})
    assert [e.action for e in queue.events(1)].count("renewed") == 1  # not an event per keystroke


def test_review_next_claims_the_oldest_free_item_and_says_when_none_is_left(served):
    base, client, queue, clock = served
    token = _csrf(client, base)
    first = client.post(base + "/next", data={"csrf_token": token}, follow_redirects=False)
    assert first.headers["location"] == "/items/1"
    second = client.post(base + "/next", data={"csrf_token": token}, follow_redirects=False)
    assert second.headers["location"] == "/items/2"
    done = client.post(base + "/next", data={"csrf_token": token}, follow_redirects=True)
    assert "Nothing left to review." in done.text
    assert "lease ran out" not in done.text
    clock.current += timedelta(seconds=601)  # alice walked away: the list says the items are free again
    assert client.get(base + "/").text.count("lease ran out: free to claim") == 2
    again = client.post(base + "/next", data={"csrf_token": token}, follow_redirects=False)
    assert again.headers["location"] == "/items/1"
    assert [queue.get(i).claimed_by for i in (1, 2)] == ["alice", "alice"]


def test_a_pdf_page_image_is_rendered_once_with_the_pages_before_it(tmp_path: Path, engine):
    from ocrflow.pipeline import Context, process_document
    from ocrflow.review.pages import page_png
    from ocrflow.settings import IngestOptions, Settings
    from tests.conftest import EXAMPLES

    ctx = Context(Settings(out_dir=tmp_path / "out"), given_engine=engine)
    result = process_document(ctx, EXAMPLES / "receipt_pages.pdf")
    cache = tmp_path / "pages"
    second = page_png(result, 2, cache, IngestOptions())
    assert second is not None and second.startswith(b"\x89PNG")
    first, other = (cache / f"{result.document_id}-{n}.png" for n in (1, 2))
    assert first.is_file() and other.read_bytes() == second
    assert page_png(result, 1, cache, IngestOptions()) == first.read_bytes()
    assert page_png(result, 3, cache, IngestOptions()) is None


def test_decided_items_list_the_decided_values_and_stop_waiting_at_the_decision(served):
    base, client, queue, clock = served
    clock.current += timedelta(hours=3)
    queue.claim("alice", 1)
    queue.decide(1, "alice", values={"card_number": REPAIRED})
    clock.current += timedelta(days=4)
    decided = client.get(base + "/", params={"state": "decided"}).text
    row = decided.split("<tbody>")[1]
    assert mask_value(REPAIRED) in row and mask_value(READ) not in row  # the decision's value, masked
    assert "<td>3 h</td>" in row  # not 4 days: the wait ended when alice decided
    pending = client.get(base + "/").text
    assert "<td>4 d</td>" in pending  # the other item is still waiting


def test_a_decided_items_page_shows_a_newer_machine_reading_that_differs_and_keeps_the_decision(
    served,
):
    base, client, queue, _ = served
    queue.claim("alice", 1)
    queue.decide(1, "alice", values={"card_number": REPAIRED})
    assert 'id="newer-reading"' not in client.get(base + "/items/1").text
    reread = needs_review(
        1, card_number=FieldResult(value=READ, confidence=0.9), bank=FieldResult(value="ICBC")
    )
    queue.store.save(reread)  # what `ocrflow run --reprocess` stores
    page = client.get(base + "/items/1").text
    newer = page.split('id="newer-reading"')[1].split("</p>")[0]
    assert "<b>card_number</b> = " + READ in newer  # alice decided it: she sees it in full
    assert "bank" not in newer  # only what differs from the decision
    assert 'value="' + REPAIRED + '"' in page  # the form still holds the decision


def test_a_large_page_is_served_at_screen_size_and_zoomed_crops_come_from_full_resolution_tiles(
    served, tmp_path: Path
):
    import io

    from PIL import Image, ImageDraw

    from ocrflow.ingest import identify
    from ocrflow.review.pages import SCREEN_SIDE, TILE

    base, client, queue, _ = served
    scan = tmp_path / "big.png"
    image = Image.new("L", (4800, 3200), 255)  # 15.4 MP: within what ingest keeps
    ImageDraw.Draw(image).rectangle((4000, 3000, 4099, 3099), fill=0)  # a black square near a corner
    image.save(scan)
    page = needs_review(5, source=scan, doc_id=identify(scan).document_id)
    page.pages[0] = page.pages[0].model_copy(update={"width": 4800, "height": 3200})
    queue.store.save(page)
    number = queue.for_document(page.document_id).id

    shown = client.get(f"{base}/items/{number}/pages/1.png")
    assert shown.status_code == 200 and shown.content.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(shown.content)).size == (SCREEN_SIDE, 1333)  # not 4800 x 3200

    cache = tmp_path / "out" / ".review-pages"
    assert len(list(cache.glob(f"{page.document_id}-1-t*.jpg"))) == 5 * 4  # 1024-pixel tiles
    crop = client.get(f"{base}/items/{number}/pages/1/crop.jpg", params={"region": "0.82,0.92,0.86,0.98"})
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    pixels = Image.open(io.BytesIO(crop.content)).convert("L")
    assert pixels.size == (192, 192)  # full resolution: 4% of 4800 by 6% of 3200 pixels
    assert pixels.getpixel((113, 105)) < 40 and pixels.getpixel((20, 20)) > 215  # the square, where it is
    assert TILE == 1024
    for bad in ("", "0,0,1", "0.5,0.5,0.4,0.6", "0,0,2,1", "nan,0,1,1", "a,b,c,d"):
        answer = client.get(f"{base}/items/{number}/pages/1/crop.jpg", params={"region": bad})
        assert answer.status_code == 422, bad
    assert (
        client.get(f"{base}/items/{number}/pages/2/crop.jpg", params={"region": "0,0,1,1"}).status_code == 404
    )


def test_doubtful_fields_look_flagged_and_other_readings_are_one_click_values(served):
    from ocrflow.models import FieldError

    base, client, queue, _ = served
    receipt = needs_review(7).model_copy(
        update={
            "doc_type": "receipt",
            "fields": {
                "total": FieldResult(
                    value="9.90",
                    confidence=0.97,
                    candidates=["19.90"],
                    errors=[
                        FieldError(code="ambiguous", message="Total: the document gives 2 different values")
                    ],
                ),
                "company": FieldResult(value="ACME", confidence=0.41),
                "date": FieldResult(value="2024-01-05", confidence=0.99),
            },
        }
    )
    queue.store.save(receipt)
    number = queue.for_document(receipt.document_id).id
    queue.claim("alice", number)
    page = client.get(f"{base}/items/{number}").text
    total = page.split('data-field="total"')[1].split('data-field="')[0]
    company = page.split('data-field="company"')[1].split('data-field="')[0]
    date = page.split('data-field="date"')[1].split('data-field="')[0]
    assert "several readings" in total and 'class="repair candidate" data-value="19.90"' in total
    assert "low confidence (0.41)" in company
    assert "⚑" not in date  # a field read surely looks like one
    assert 'class="field valid flagged"' in page and page.count(" flagged") == 2


def test_the_health_page_shows_waiting_items_and_is_linked_from_every_page(served):
    base, client, _, _ = served
    listing = client.get(base + "/").text
    assert 'href="/health"' in listing
    health = client.get(base + "/health")
    assert health.status_code == 200
    waiting = health.text.split('id="waiting"')[1].split("</table>")[0]
    assert "<td>bank_card</td><td>1</td>" in waiting and "<td>receipt</td><td>1</td>" in waiting
    assert "Audit sample agreement" in health.text and 'id="accuracy"' in health.text
