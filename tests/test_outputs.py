"""Task outputs: tables as HTML and grids, LaTeX and Markdown, schema-less key-values, language.

Each task's output is parsed and checked without an engine; the embedded engine's table
parsing runs on a real PubTabNet table from eval-dev.
"""

from __future__ import annotations

import csv
import io
import json

import pytest

from ocrflow.engines.rapid import RapidOcrEngine
from ocrflow.errors import EngineError
from ocrflow.models import OcrResult, OcrTask
from ocrflow.outputs import (
    detect_language,
    gives_outputs,
    latex_problem,
    task_outputs,
    write_output_files,
)
from ocrflow.tables import check_table, parse_tables
from tests.conftest import eval_dev
from tests.fake_dashscope import DEFAULT_LATEX, DEFAULT_TABLE


def reading(task: OcrTask, text: str = "", page: int = 1, key_values=None) -> OcrResult:
    return OcrResult(engine="t", model="m", task=task, page_number=page, text=text, key_values=key_values)


def test_merged_cells_fill_a_rectangular_grid():
    (table,) = parse_tables(
        "<table><thead><tr><th rowspan='2'>Item</th><th colspan=\"2\"><b>Price</b></th></tr>"
        "<tr><th>net</th><th>gross</th></tr></thead>"
        "<tbody><tr><td>Tea &amp; milk</td><td>1.00</td><td>1.19</td></tr></tbody></table>"
    )
    assert check_table(table) is None
    assert table.grid == [["Item", "Price", ""], ["", "net", "gross"], ["Tea & milk", "1.00", "1.19"]]


@pytest.mark.parametrize(
    ("html", "problem"),
    [
        ("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "rows have different numbers"),
        ("<table><tr><td rowspan='3'>a</td></tr><tr></tr></table>", "past the table's last row"),
        ("<table></table>", "no cells"),
    ],
)
def test_tables_that_do_not_add_up_say_why(html, problem):
    (table,) = parse_tables(html)
    assert problem in check_table(table)


def test_a_table_answer_keeps_html_and_grid_and_goes_to_review_when_inconsistent():
    good = reading(
        OcrTask.TABLE_PARSING, DEFAULT_TABLE.removeprefix("```html\n").removesuffix("\n```"), page=1
    )
    bad = reading(OcrTask.TABLE_PARSING, "<table><tr><td>x</td><td>y</td></tr><tr><td>z</td></tr></table>", 2)
    outputs, reasons = task_outputs(OcrTask.TABLE_PARSING, [bad, good])
    first, second = outputs.tables
    assert (first.page, first.index, first.rows, first.columns) == (1, 1, 2, 2)
    assert first.grid == [["元素", "结果"], ["Pb", "ND"]] and first.html.startswith("<table>")
    assert first.problem is None and "different numbers of columns" in second.problem
    (reason,) = reasons
    assert (reason.stage.value, reason.code, reason.page) == ("validate", "table_inconsistent", 2)
    assert "table 2 (page 2)" in reason.message


def test_no_table_at_all_is_a_reason():
    outputs, reasons = task_outputs(
        OcrTask.TABLE_PARSING, [reading(OcrTask.TABLE_PARSING, "Sorry, no table.")]
    )
    assert outputs.tables == [] and [r.code for r in reasons] == ["table_not_found"]


@pytest.mark.parametrize(
    ("latex", "problem"),
    [
        (DEFAULT_LATEX, None),
        (r"$$\tilde { Q } ( x ) : = \frac { 2 } { \pi } \Omega$$", None),
        (r"\frac{a}{b", "leaves 1 brace open"),
        (r"a} b", "closes a brace"),
        (
            r"\begin{table}\begin{tabular}{ll} x \end{table}",
            "ends environment 'table' that is not the open one",
        ),
        (r"\begin{document} text", "never ends environment 'document'"),
        (r"$x + y", "unpaired $"),
        (r"$$x$", "unpaired $$"),
        (r"\left( x \right", None),
        (r"\left( x", "1 \\left but 0 \\right"),
        (r"costs 5\$ and \{set\} % a comment with { in it", None),
    ],
)
def test_latex_balance(latex, problem):
    found = latex_problem(latex)
    assert found == problem if problem is None else problem in found


def test_document_parsing_keeps_latex_or_markdown_and_checks_latex():
    latex = DEFAULT_LATEX.removeprefix("```latex\n").removesuffix("\n```")
    outputs, reasons = task_outputs(OcrTask.DOCUMENT_PARSING, [reading(OcrTask.DOCUMENT_PARSING, latex)])
    assert outputs.latex == latex and outputs.markdown is None and reasons == []
    markdown = "# Invoice\n\n<table><tr><td>Total</td><td>1,130.00</td></tr></table>\n"
    outputs, reasons = task_outputs(OcrTask.DOCUMENT_PARSING, [reading(OcrTask.DOCUMENT_PARSING, markdown)])
    assert outputs.markdown == markdown.strip() and outputs.latex is None
    assert outputs.tables[0].grid == [["Total", "1,130.00"]] and reasons == []
    broken = reading(OcrTask.FORMULA_RECOGNITION, r"\frac{1}{2", page=3)
    outputs, reasons = task_outputs(OcrTask.FORMULA_RECOGNITION, [broken])
    assert outputs.latex == r"\frac{1}{2"
    assert [(r.code, r.page) for r in reasons] == [("latex_unbalanced", 3)]


def test_schema_less_key_values_are_flat_strings():
    pages = [
        reading(OcrTask.KEY_INFORMATION_EXTRACTION, key_values={"发票号码": "12345678", "金额": 1130.0}),
        reading(OcrTask.KEY_INFORMATION_EXTRACTION, page=2, key_values={"paid": True, "note": None}),
    ]
    outputs, reasons = task_outputs(OcrTask.KEY_INFORMATION_EXTRACTION, pages)
    assert outputs.kv == {"发票号码": "12345678", "金额": "1130.0", "paid": "true", "note": None}
    assert reasons == []
    nested = reading(OcrTask.KEY_INFORMATION_EXTRACTION, key_values={"items": [{"name": "tea"}]})
    outputs, reasons = task_outputs(OcrTask.KEY_INFORMATION_EXTRACTION, [nested])
    assert outputs.kv == {"items": json.dumps([{"name": "tea"}])}
    assert [r.code for r in reasons] == ["kv_not_flat"] and "items" in reasons[0].message
    unread = reading(OcrTask.KEY_INFORMATION_EXTRACTION, text="not JSON at all")
    _, reasons = task_outputs(OcrTask.KEY_INFORMATION_EXTRACTION, [unread])
    assert [r.code for r in reasons] == ["kv_not_flat"]


def test_the_language_of_multilingual_text():
    assert detect_language("Bonjour, je voudrais payer cette facture avant la fin du mois.")[0] == "fr"
    assert detect_language("Sehr geehrte Damen und Herren, anbei erhalten Sie die Rechnung.")[0] == "de"
    assert detect_language("Спасибо за ваш заказ, счёт прилагается к этому письму.")[0] == "ru"
    assert detect_language("12 34") == (None, None)
    outputs, reasons = task_outputs(
        OcrTask.MULTI_LAN, [reading(OcrTask.MULTI_LAN, "Gracias por su compra, vuelva pronto.")]
    )
    assert outputs.language == "es" and 0 < outputs.language_score <= 1 and reasons == []


def test_which_tasks_give_outputs():
    assert gives_outputs(OcrTask.TABLE_PARSING, has_doctype=True)
    assert gives_outputs(OcrTask.KEY_INFORMATION_EXTRACTION, has_doctype=False)
    assert not gives_outputs(OcrTask.KEY_INFORMATION_EXTRACTION, has_doctype=True)
    assert not gives_outputs(OcrTask.ADVANCED_RECOGNITION, has_doctype=False)


def test_files_beside_the_result(tmp_path):
    table = DEFAULT_TABLE.removeprefix("```html\n").removesuffix("\n```")
    outputs, _ = task_outputs(OcrTask.TABLE_PARSING, [reading(OcrTask.TABLE_PARSING, table)])
    names = write_output_files(tmp_path, "abc123", outputs)
    assert names == ["abc123.table-1.csv", "abc123.table-1.html"]
    rows = list(csv.reader(io.StringIO((tmp_path / "abc123.table-1.csv").read_text())))
    assert rows == [["元素", "结果"], ["Pb", "ND"]]
    page = (tmp_path / "abc123.table-1.html").read_text()
    assert page.startswith("<!doctype html>") and "<td>Pb</td>" in page
    outputs, _ = task_outputs(OcrTask.FORMULA_RECOGNITION, [reading(OcrTask.FORMULA_RECOGNITION, "$$x^2$$")])
    assert write_output_files(tmp_path, "abc123", outputs) == ["abc123.tex"]
    assert (tmp_path / "abc123.tex").read_text() == "$$x^2$$\n"


def test_the_embedded_engine_parses_a_real_table(engine: RapidOcrEngine):
    image = eval_dev("tables/pubtabnet_PMC1626454_002_00.png")
    if OcrTask.TABLE_PARSING not in engine.supported_tasks:
        pytest.skip("rapid-table is not installed (scripts/setup.sh installs it)")
    truth = json.loads(image.with_name(image.name.replace(".png", ".gt.json")).read_text())
    (expected,) = parse_tables(truth["html"])
    result = engine.recognize(image, OcrTask.TABLE_PARSING)
    outputs, reasons = task_outputs(OcrTask.TABLE_PARSING, [result])
    (table,) = outputs.tables
    assert reasons == []
    assert (table.rows, table.columns) == (len(expected.grid), len(expected.grid[0]))
    cells = [(r, c, text) for r, row in enumerate(expected.grid) for c, text in enumerate(row) if text]
    right = sum("".join(table.grid[r][c].split()) == "".join(text.split()) for r, c, text in cells)
    assert right / len(cells) >= 0.8, f"{right} of {len(cells)} cells right"


def test_tasks_the_embedded_engine_cannot_do_name_the_engines_that_can(engine: RapidOcrEngine, tmp_path):
    for task in (OcrTask.DOCUMENT_PARSING, OcrTask.FORMULA_RECOGNITION, OcrTask.KEY_INFORMATION_EXTRACTION):
        with pytest.raises(EngineError) as caught:
            engine.recognize(tmp_path / "page.png", task)
        assert caught.value.code == "unsupported_task"
        assert "dashscope engine" in caught.value.message and "openai engine" in caught.value.message


def test_the_run_summary_shows_a_tables_first_rows():
    from ocrflow.models import DocumentResult, Status
    from ocrflow.report import summary_markdown

    html = "<table>" + "".join(f"<tr><td>row {i}</td><td>{i * 10}|x</td></tr>" for i in range(8)) + "</table>"
    outputs, _ = task_outputs(OcrTask.TABLE_PARSING, [reading(OcrTask.TABLE_PARSING, html, page=2)])
    result = DocumentResult(
        document_id="d" * 64, source="/in/prices.png", doc_type=None, status=Status.ACCEPTED, outputs=outputs
    )
    summary = summary_markdown([result])
    assert "### prices.png: table 1 of page 2 (8 rows x 2 columns)" in summary
    assert "| row 0 | 0\\|x |" in summary and "| row 4 | 40\\|x |" in summary
    assert "row 5" not in summary and "| ... 3 more rows | |" in summary
