"""Rows along each line's baseline: tilted and curved phone photos, two columns, reading order."""

from __future__ import annotations

import json
import math
import re

import pytest

from ocrflow.layout import rows
from ocrflow.models import OcrLine, OcrTask
from ocrflow.routing import reading_order_text
from tests.conftest import eval_dev, text_reading

ITEMS = ["SUBTOTAL", "SVC CHG", "GST", "TOTAL", "CASH", "CHANGE"]
PRICES = ["36.50", "3.65", "2.81", "42.95", "44.00", "1.05"]


def _printed(text: str, x: float, baseline, width: float, height: float = 20.0) -> OcrLine:
    """A line from ``x`` to ``x + width`` along ``baseline(x) -> (y, slope)``, its box tilted with it."""
    y, slope = baseline(x + width / 2)
    y -= slope * width / 2
    angle = math.atan(slope)
    dx, dy = width * math.cos(angle), width * math.sin(angle)
    hx, hy = -height * math.sin(angle), height * math.cos(angle)
    box = [[x, y - hy], [x + dx, y + dy - hy], [x + dx - hx, y + dy], [x - hx, y]]
    return OcrLine(text=text, box=[[round(a, 1), round(b, 1)] for a, b in box], score=0.99)


def _receipt(baselines) -> list[OcrLine]:
    """Two columns (an item at the left, its amount at the right) on each printed row, shuffled."""
    lines = []
    for k, (item, price) in enumerate(zip(ITEMS, PRICES, strict=True)):
        lines.append(_printed(price, 420, baselines(k), 70))
        lines.append(_printed(item, 20, baselines(k), 15 * len(item)))
    return lines[::3] + lines[1::3] + lines[2::3]


@pytest.mark.parametrize("slope", [-0.15, -0.08, 0.0, 0.05, 0.12])
def test_tilted_rows_pair_each_item_with_its_own_amount(slope):
    # Rows 30 px apart: at 0.12 a row's right end is 50 px (nearly two rows) below its left end.
    def baselines(k):
        return lambda x: (100 + 30 * k + slope * x, slope)

    found = [row.text for row in rows([text_reading(*_receipt(baselines))])]
    assert found == [f"{item} {price}" for item, price in zip(ITEMS, PRICES, strict=True)]


def test_a_curved_receipt_bends_but_rows_follow_it():
    # Like a receipt lifting off the table: steep at the left (0.16), nearly level at the right (0.04).
    def baselines(k):
        return lambda x: (100 + 32 * k + 0.16 * x - 0.00012 * x * x, 0.16 - 0.00024 * x)

    found = [row.text for row in rows([text_reading(*_receipt(baselines))])]
    assert found == [f"{item} {price}" for item, price in zip(ITEMS, PRICES, strict=True)]


def test_stacked_lines_never_share_a_row_and_text_is_in_reading_order():
    # An address block: short lines one above the other, closer together than their height,
    # beside a column of amounts on a page tilted by 0.1.
    def level(k):
        return lambda x: (100 + 18 * k + 0.1 * x, 0.1)

    lines = [
        _printed("NO 4, JALAN PERJIRANAN 10", 40, level(0), 250),
        _printed("TAMAN AIR BIRU", 80, level(1), 150),
        _printed("81700 PASIR GUDANG", 60, level(2), 190),
        _printed("Tel 07-2523", 400, level(1), 110),
    ]
    page = text_reading(*reversed(lines))
    assert [row.text for row in rows([page])] == [
        "NO 4, JALAN PERJIRANAN 10",
        "TAMAN AIR BIRU Tel 07-2523",
        "81700 PASIR GUDANG",
    ]
    assert reading_order_text(page).splitlines() == [row.text for row in rows([page])]


def test_a_level_page_keeps_rows_of_lines_of_different_heights():
    # A large name printed beside small text that sits within its height, level boxes.
    def level(k):
        return lambda x: (100 + 40 * k, 0.0)

    lines = [
        _printed("BOOK TA.K", 20, lambda x: (130, 0.0), 200, height=50),
        _printed("(TAMAN DAYA)", 260, level(0), 150),
        _printed("SDN BHD", 260, level(1), 100),
    ]
    assert [row.text for row in rows([text_reading(*lines)])] == ["BOOK TA.K (TAMAN DAYA)", "SDN BHD"]


def test_flat_boxes_share_a_row_where_they_share_a_line():
    # An API model's word boxes may have no height: distances in text heights must not divide by 0.
    flat = [
        OcrLine(text=text, box=[[x, 10], [x + 40, 10], [x + 40, 10], [x, 10]], score=0.9)
        for text, x in (("b", 100), ("a", 0), ("c", 0))
    ]
    flat[2] = flat[2].model_copy(update={"box": [[0, 50], [40, 50], [40, 50], [0, 50]]})
    assert [row.text for row in rows([text_reading(*flat)])] == ["a b", "c"]


def _fold(text: str) -> str:
    return re.sub(r"\s+", "", text).casefold()


def test_a_tilted_photos_address_lines_come_out_as_their_own_rows(engine):
    # A WildReceipt phone photo tilted by about 4 degrees: built from axis-aligned boxes, the
    # name and both address lines ran into the lines beside them ("280 Bleecker St. New York,
    # NY 10014" was one row, and the name's row held the table number).
    image = eval_dev("photos/wildreceipt_skew_12998d6f0939.jpeg")
    gt = json.loads(image.with_name(image.stem + ".gt.json").read_text())
    reading = engine.recognize(image, OcrTask.TEXT_RECOGNITION)
    found = rows([reading])
    texts = [_fold(row.text) for row in found]
    for line in gt["fields"]["store_addr"]:
        assert _fold(line) in texts, (line, texts[:6])
    # The result's text is written from the same rows: the address reads top to bottom.
    text = [_fold(line) for line in reading_order_text(reading).splitlines()]
    assert [text.index(_fold(line)) for line in gt["fields"]["store_addr"]] == sorted(
        text.index(_fold(line)) for line in gt["fields"]["store_addr"]
    )
    total = next(row for row in found if "Total Due" in row.text)
    assert total.text.endswith(gt["fields"]["total"][-1])
