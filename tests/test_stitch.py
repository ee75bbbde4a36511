from ocrflow.engines._stitch import stitch_fragments
from ocrflow.models import OcrLine, OcrTask
from tests.conftest import eval_dev


def _line(text: str, x0: float, x1: float, y0: float = 0, y1: float = 30, score: float = 1.0) -> OcrLine:
    return OcrLine(text=text, box=[[x0, y0], [x1, y0], [x1, y1], [x0, y1]], score=score)


def test_a_character_read_in_both_pieces_is_kept_once():
    # 10 px per character; the second piece starts one character inside the first.
    pieces = [_line("parallel algorithms", 0, 190), _line("s for t", 180, 250), _line("these", 240, 290)]
    (line,) = stitch_fragments(pieces)
    assert line.text == "parallel algorithms for these"
    assert line.box == [[0, 0], [290, 0], [290, 30], [0, 30]]


def test_a_cut_at_a_word_gap_gets_its_space_back():
    (line,) = stitch_fragments([_line("set up", 0, 60), _line("as", 58, 78)])
    assert line.text == "set up as"


def test_the_score_is_weighted_by_length():
    (line,) = stitch_fragments([_line("abcd", 0, 40, score=1.0), _line("ef", 38, 58, score=0.4)])
    assert line.score == (4 * 1.0 + 2 * 0.4) / 6


def test_separate_lines_stay_separate():
    apart = [_line("TOTAL", 0, 50), _line("12.00", 200, 250)]
    below = [_line("first row", 0, 90), _line("second row", 50, 150, y0=40, y1=70)]
    overprinted = [_line("abcdef", 0, 60), _line("ghijkl", 10, 70)]
    for lines in (apart, below, overprinted):
        assert stitch_fragments(lines) == tuple(lines)


def test_rotated_pieces_are_left_alone():
    tilted = OcrLine(text="abc", box=[[0, 0], [30, 10], [30, 40], [0, 30]], score=1.0)
    after = _line("cde", 25, 55, y0=5, y1=35)
    assert stitch_fragments([tilted, after]) == (tilted, after)


def test_a_real_scanned_line_reads_without_doubled_letters(engine):
    # RapidOCR cuts this 959 px line into five overlapping pieces.
    page = eval_dev("text_lines/uw3_train_010008.png")
    result = engine.recognize(page, OcrTask.TEXT_RECOGNITION)
    assert [line.text for line in result.lines] == [
        "and the existence of fast parallel algorithms for these problems."
    ]


def test_each_characters_score_stays_with_it_when_pieces_are_joined():
    left = OcrLine(
        text="set al", box=[[0, 0], [60, 0], [60, 30], [0, 30]], score=0.9, char_scores=(1, 1, 1, 1, 0.2)
    )
    right = OcrLine(
        text="lgo", box=[[50, 0], [80, 0], [80, 30], [50, 30]], score=0.9, char_scores=(0.3, 0.9, 0.8)
    )
    (line,) = stitch_fragments([left, right])
    # The shared "l" is kept once, with the first piece's score.
    assert line.text == "set algo" and line.char_scores == (1, 1, 1, 1, 0.2, 0.9, 0.8)
    unscored = right.model_copy(update={"char_scores": None})
    assert stitch_fragments([left, unscored])[0].char_scores is None


def test_a_real_line_has_a_score_for_each_of_its_characters(engine):
    page = eval_dev("text_lines/uw3_train_010008.png")
    (line,) = engine.recognize(page, OcrTask.TEXT_RECOGNITION).lines
    assert line.char_scores is not None and len(line.char_scores) == len(line.text.replace(" ", ""))
    assert all(0 < score <= 1 for score in line.char_scores)
    # The line's score is the mean of its characters' (the pieces' lengths weigh it).
    assert abs(sum(line.char_scores) / len(line.char_scores) - line.score) < 0.02
