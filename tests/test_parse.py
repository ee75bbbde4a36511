"""Model output parsing: fences, pseudo-JSON, prose around JSON, boxes; junk never raises."""

from __future__ import annotations

import pytest

from ocrflow.engines._parse import parse_key_values, parse_words, rotated_rect_corners, strip_fences, word_box


@pytest.mark.parametrize(
    ("text", "inner"),
    [
        ('```json\n{"a": 1}\n```', '{"a": 1}'),
        ("```html\n<table><tr><td>x</td></tr></table>\n```", "<table><tr><td>x</td></tr></table>"),
        ("```latex\n\\documentclass{article}\n```", "\\documentclass{article}"),
        ("Here it is:\n```\nplain\n```\nDone.", "plain"),
        ("```html\n<table>\n  <tr>", "<table>\n  <tr>"),  # cut off before the closing fence
        ("no fence at all ", "no fence at all"),
    ],
)
def test_strip_fences(text, inner):
    assert strip_fences(text) == inner


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The documentation's own response example: JSON in a ```json fence.
        (
            '```json\n{\n    "发票号码": "24329116804000",\n    "车次": "G1948"\n}\n```',
            {"发票号码": "24329116804000", "车次": "G1948"},
        ),
        # Single-quoted pseudo-JSON, as the documentation's prompt examples invite.
        ("{'发票号码': 'xxx', '车次': 'G1948'}", {"发票号码": "xxx", "车次": "G1948"}),
        # Full-width colons and commas between the quoted parts, as in the prompt example.
        ("{'发票号码'：'xxx'， '车次'：'G1948'}", {"发票号码": "xxx", "车次": "G1948"}),
        # Full-width punctuation inside a value stays as printed.
        ("{'销售方': '示例：有限公司，北京'}", {"销售方": "示例：有限公司，北京"}),
        ("{'a': null, 'b': true, 'c': false, 'd': None}", {"a": None, "b": True, "c": False, "d": None}),
        ("{'a': 'x',}", {"a": "x"}),
        (
            'Sure! The fields are {"total": "12.50", "note": "a {brace} inside"} as requested.',
            {"total": "12.50", "note": "a {brace} inside"},
        ),
        ("结果如下：\n```json\n{'乘车日期': '2013-06-29'}\n```\n希望有帮助", {"乘车日期": "2013-06-29"}),
        ('{"nested": {"a": [1, 2, {"b": "c"}]}}', {"nested": {"a": [1, 2, {"b": "c"}]}}),
    ],
)
def test_parse_key_values(text, expected):
    assert parse_key_values(text) == expected


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "抱歉，我无法识别这张图片。",
        "{'发票号码'：'12345678', '开票日期'",  # cut off
        "[1, 2, 3]",
        "{'a': __import__('os').system('echo pwned')}",
        "{'a': (lambda: 1)()}",
        "{'a': open('/etc/passwd').read()}",
        "{" * 5000 + "}" * 5000,
        "{'a': '" + "x" * 300_000 + "'",
        "{1: 2, 'b': [}",
        "\x00\x01{\x02}",
    ],
)
def test_junk_gives_none_and_never_raises(junk):
    assert parse_key_values(junk) is None


def test_code_in_output_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    parse_key_values(f"{{'a': __import__('pathlib').Path({str(marker)!r}).touch()}}")
    assert not marker.exists()


def test_parse_words_reads_a_json_list_of_lines():
    text = '```json\n[{"text": "Audience", "location": [52,54,250,57,249,106,52,103]}, {"bad": 1}, "x"]\n```'
    assert parse_words(text) == [{"text": "Audience", "location": [52, 54, 250, 57, 249, 106, 52, 103]}]
    assert parse_words("no list here") == []


def test_word_box_prefers_location():
    word = {"location": [52, 54, 250, 57, 249, 106, 52, 103], "rotate_rect": [0, 0, 1, 1, 0]}
    assert word_box(word) == [[52.0, 54.0], [250.0, 57.0], [249.0, 106.0], [52.0, 103.0]]
    assert word_box({"rotate_rect": [1, 2, 3]}) is None
    assert word_box({"location": [1, 2, "x", 4, 5, 6, 7, 8]}) is None


def test_rotated_rect_matches_the_documented_location():
    # The documentation's example line gives both forms: rotate_rect [150,80,49,197,-89]
    # and location [52,54, 250,57, 249,106, 52,103] (top-left, top-right, bottom-right, bottom-left).
    corners = rotated_rect_corners(150, 80, 49, 197, -89)
    expected = [[52, 54], [250, 57], [249, 106], [52, 103]]
    for (x, y), (ex, ey) in zip(corners, expected, strict=True):
        assert abs(x - ex) <= 2 and abs(y - ey) <= 2


def test_rotated_rect_corners_start_top_left_clockwise():
    assert rotated_rect_corners(200, 250, 30, 200, 90) == [
        [100.0, 235.0],
        [300.0, 235.0],
        [300.0, 265.0],
        [100.0, 265.0],
    ]
    assert rotated_rect_corners(10, 10, 20, 10, 0) == [[0.0, 5.0], [20.0, 5.0], [20.0, 15.0], [0.0, 15.0]]
