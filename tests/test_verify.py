"""Matching a value against an independent reading, as the field's normaliser compares."""

from __future__ import annotations

import pytest

from ocrflow.doctypes import load_doctypes
from ocrflow.models import Grounding, OcrLine, OcrResult, OcrTask
from ocrflow.verify import ground

DOCTYPES = load_doctypes()
RECEIPT = DOCTYPES["receipt"].fields
CARD = DOCTYPES["bank_card"].fields
PASSPORT = DOCTYPES["passport"].fields


def reading(*rows: str | tuple[str, ...], page: int = 1, score: float = 0.95) -> list[OcrResult]:
    """A page read as ``rows``, top to bottom; a tuple is several lines side by side on one row."""
    lines = []
    for y, row in enumerate(rows):
        parts = (row,) if isinstance(row, str) else row
        for x, text in enumerate(parts):
            box = [[100.0 * x, 20.0 * y], [100.0 * x + 90, 20.0 * y], [100.0 * x + 90, 20.0 * y + 15]]
            lines.append(OcrLine(text=text, box=[*box, [100.0 * x, 20.0 * y + 15]], score=score))
    task = OcrTask.TEXT_RECOGNITION
    return [OcrResult(engine="local", model="m", task=task, page_number=page, lines=lines)]


RECEIPT_PAGE = reading(
    "BOOK TA .K (TAMAN DAYA) SDN BHD",
    "NO.53 55,57 & 59, JALAN SAGU 18,",
    "TAMAN DAYA,",
    "81100 JOHOR BAHRU,",
    "JOHOR.",
    ("DATE:25/12/2018", "15:02"),
    ("1 x PENCIL", "9.00"),
    ("SUBTOTAL", "8.49"),
    ("TOTAL RM", "99.0O"),
    ("CASH", "RM 100.00"),
)


def test_an_amount_is_found_as_a_number_whatever_is_printed_around_it():
    match = ground("100.00", RECEIPT["total"], RECEIPT_PAGE)
    assert match.outcome is Grounding.GROUNDED and match.reading == "100.00"
    assert match.page == 1 and match.boxes[0].line == "RM 100.00" and len(match.boxes[0].box) == 4


def test_the_readers_own_digit_letter_slip_does_not_hide_an_amount():
    assert ground("99.00", RECEIPT["total"], RECEIPT_PAGE).outcome is Grounding.GROUNDED


def test_a_misread_digit_in_an_amount_is_near_and_says_which_digit():
    match = ground("98.00", RECEIPT["total"], RECEIPT_PAGE)
    assert match.outcome is Grounding.NEAR
    assert match.reading == "99.00" and match.differs_at == (1,)


def test_an_amount_not_on_the_page_is_not_found_and_a_quantity_is_not_an_amount():
    assert ground("57.30", RECEIPT["total"], RECEIPT_PAGE).outcome is Grounding.NOT_FOUND
    # "1" (the quantity) would read as 1.00; a printed amount has its cents.
    assert ground("1.00", RECEIPT["total"], RECEIPT_PAGE).outcome is not Grounding.GROUNDED


def test_a_date_is_compared_parsed_and_day_first_like_its_normaliser():
    assert ground("2018-12-25", RECEIPT["date"], RECEIPT_PAGE).outcome is Grounding.GROUNDED
    year_off = ground("2019-12-25", RECEIPT["date"], RECEIPT_PAGE)
    assert year_off.outcome is Grounding.NEAR and year_off.reading == "2018-12-25"
    page = reading("DATE: 03/12/2018")
    assert ground("2018-12-03", RECEIPT["date"], page).outcome is Grounding.GROUNDED
    # Day and month swapped is another date, not the one printed.
    assert ground("2018-03-12", RECEIPT["date"], page).outcome is not Grounding.GROUNDED


def test_a_speck_beside_a_dates_separator_is_not_part_of_it():
    # wildreceipt_c80355fe12fa as RapidOCR read it.
    page = reading("Server: Marcos 02,/22/2014", "Patio/1 1:15 AM")
    assert ground("2014-02-22", RECEIPT["date"], page).outcome is Grounding.GROUNDED
    assert ground("2014-02-23", RECEIPT["date"], page).outcome is Grounding.NEAR  # a digit still counts


def test_a_card_number_printed_in_groups_is_one_value():
    page = reading("CHINA MERCHANTS BANK", "6225 7580 1234 5670", "VALID THRU 09/27")
    assert ground("6225758012345670", CARD["card_number"], page).outcome is Grounding.GROUNDED
    one_digit = ground("6225758012345679", CARD["card_number"], page)
    assert one_digit.outcome is Grounding.NEAR and one_digit.differs_at == (15,)
    assert ground("09/27", CARD["expiry"], page).outcome is Grounding.GROUNDED


def test_text_knows_ocr_confusions_and_ignores_spacing_and_punctuation():
    page = reading("B00K TA.K(TAMAN DAYA) 5DN BHD")
    assert ground("BOOK TA .K (TAMAN DAYA) SDN BHD", RECEIPT["company"], page).outcome is Grounding.GROUNDED


def test_a_character_the_reader_garbled_into_a_mark_does_not_count_against_the_value():
    page = reading("NO.5: 55,57 & 59, JALAN SAGU 18,")
    assert ground("NO.53 55,57 & 59, JALAN SAGU 18,", RECEIPT["address"], page).outcome is Grounding.GROUNDED
    # A letter the reader read as another letter does.
    page = reading("NO.53 55,57 & 59, JALAN SAGV 18,")
    assert ground("NO.53 55,57 & 59, JALAN SAGU 18,", RECEIPT["address"], page).outcome is Grounding.NEAR


def test_a_run_of_marks_is_read_as_nothing():
    # A model's name from another receipt against a rule of asterisks (eval-dev wildreceipt_06025ebe4a88).
    page = reading("ASTONS", "******木*****************************", "13/03/2013 12:10")
    assert ground("THEPANCAKEPARLOUR", RECEIPT["company"], page).outcome is Grounding.NOT_FOUND
    # One garbled character between two read ones is still forgiven; two in a row are differences.
    assert ground("NO.53 JALAN", RECEIPT["address"], reading("NO.5: JALAN")).outcome is Grounding.GROUNDED
    match = ground("NO.539 JALAN", RECEIPT["address"], reading("NO.5:: JALAN"))
    assert match.outcome is Grounding.NEAR and match.differs_at == (4, 5)


def test_a_letter_slip_in_text_is_near_and_names_the_letter():
    match = ground("BOOK TA .K (TAMAN DAYA) SDN BHP", RECEIPT["company"], RECEIPT_PAGE)
    assert match.outcome is Grounding.NEAR
    assert match.differs_at == (30,) and match.reading == "BOOK TA .K (TAMAN DAYA) SDN BHD"


def test_a_multi_line_value_is_found_across_line_breaks_with_every_line_boxed():
    address = "NO.53 55,57 & 59, JALAN SAGU 18, TAMAN DAYA, 81100 JOHOR BAHRU, JOHOR."
    match = ground(address, RECEIPT["address"], RECEIPT_PAGE)
    assert match.outcome is Grounding.GROUNDED
    assert [box.line for box in match.boxes] == [
        "NO.53 55,57 & 59, JALAN SAGU 18,",
        "TAMAN DAYA,",
        "81100 JOHOR BAHRU,",
        "JOHOR.",
    ]


def test_a_dropped_word_is_near_and_a_made_up_value_is_not_found():
    address = "NO.53 55,57 & 59, JALAN SAGU 18, 81100 JOHOR BAHRU, JOHOR."
    dropped = ground(address, RECEIPT["address"], RECEIPT_PAGE)
    assert dropped.outcome is Grounding.NEAR and dropped.distance == len("TAMANDAYA")
    assert dropped.differs_at == (address.index("81100"),), "the gap is marked where the word is missing"
    invented = ground("KEDAI RUNCIT AH HOCK", RECEIPT["company"], RECEIPT_PAGE)
    assert invented.outcome is Grounding.NOT_FOUND


def test_an_mrz_line_keeps_its_fillers():
    line = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<"
    page = reading("PASSPORT", line.replace("<", "«", 3))
    assert ground(line, PASSPORT["mrz_line1"], page).outcome is Grounding.GROUNDED
    assert ground(line.replace("ANNA", "ANNE"), PASSPORT["mrz_line1"], page).outcome is Grounding.NEAR


def test_a_lower_case_l_and_an_accent_are_read_as_the_letter_they_are():
    # eval-dev's WildReceipt labels are upper case without spaces; the photos print mixed case.
    page = reading("The Pancake Parlour", "NO. 31G&33G, JALAN SETIA INDAH X ,U13/X 40170 SETIA ÁLAM")
    assert ground("THEPANCAKEPARLOUR", RECEIPT["company"], page).outcome is Grounding.GROUNDED
    address = "NO. 31G&33G, JALAN SETIA INDAH X,U13/X 40170 SETIA ALAM"
    assert ground(address, RECEIPT["address"], page).outcome is Grounding.GROUNDED
    # A lower-case l still stands for a 1, and an upper-case L is not a 1.
    assert ground("LEVEL 1", RECEIPT["address"], reading("Level l")).outcome is Grounding.GROUNDED
    assert ground("LEVEL 1", RECEIPT["address"], reading("LEVEL L")).outcome is Grounding.NEAR


def test_a_value_whose_line_goes_on_with_more_words_is_cut_short():
    page = reading("LOT 3, JALAN PELABUR 23/1,", "40300 SHAH ALAM, SELANGOR.", "(TEL: 03-5511 2233)")
    whole = ground("LOT 3, JALAN PELABUR 23/1, 40300 SHAH ALAM, SELANGOR.", RECEIPT["address"], page)
    assert whole.outcome is Grounding.GROUNDED
    last_dropped = "LOT 3, JALAN PELABUR 23/1, 40300 SHAH ALAM,"
    cut = ground(last_dropped, RECEIPT["address"], page)
    assert cut.outcome is Grounding.NEAR and cut.differs_at == (last_dropped.index("ALAM") + 3,)
    first_dropped = "3, JALAN PELABUR 23/1, 40300 SHAH ALAM, SELANGOR."
    assert ground(first_dropped, RECEIPT["address"], page).differs_at == (0,)
    # A registration number, a telephone or a bracketed aside on the same line is not more of it.
    page = reading("MR. D.I.Y. (M) SDN BHD (860671-D)", "JOHOR. Tel No.: 07-387 3322")
    assert ground("MR. D.I.Y. (M) SDN BHD", RECEIPT["company"], page).outcome is Grounding.GROUNDED
    assert ground("JOHOR.", RECEIPT["address"], page).outcome is Grounding.GROUNDED


def test_a_value_printed_twice_counts_where_it_stands_whole():
    page = reading("Thai Village", "Your satisfaction is Thai Village")
    assert ground("THAI VILLAGE", RECEIPT["company"], page).outcome is Grounding.GROUNDED


def test_chinese_text_has_no_words_to_cut():
    page = reading("姓名 王小明", "性别 男 民族汉")
    assert ground("汉", DOCTYPES["cn_id_card"].fields["ethnicity"], page).outcome is Grounding.GROUNDED


@pytest.mark.parametrize("value", [None, "", 12])
def test_no_value_is_never_grounded(value):
    assert ground(value, RECEIPT["total"], RECEIPT_PAGE).outcome is Grounding.NOT_FOUND


def test_a_near_reading_says_how_sure_the_reader_was_of_each_character_it_read_differently():
    # RapidOCR read "MENARA DION" as "HENARA DION", unsure of its H (scores as it gave them).
    line = OcrLine(
        text="HENARA DION",
        box=[[0.0, 0.0], [90.0, 0.0], [90.0, 15.0], [0.0, 15.0]],
        score=0.93,
        char_scores=(0.41, 0.99, 0.98, 0.99, 0.97, 0.99, 0.99, 0.98, 0.99, 0.97),
    )
    page = [OcrResult(engine="local", model="m", task=OcrTask.TEXT_RECOGNITION, page_number=1, lines=[line])]
    match = ground("MENARA DION", RECEIPT["address"], page)
    assert match.outcome is Grounding.NEAR and match.differs_at == (0,) and match.differing_scores == (0.41,)
    # A letter the reader read surely is scored as such; one it left out has no score.
    assert ground("MENARA DIAN", RECEIPT["address"], page).differing_scores == (0.41, 0.99)
    assert ground("MENARA DIOON", RECEIPT["address"], page).differing_scores == (0.41, None)
