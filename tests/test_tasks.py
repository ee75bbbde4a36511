"""Every Qwen-OCR task reachable from a run, its outputs stored and checked, through both SDKs.

Runs the one per-document composition inline (the same steps the Prefect flow runs) against
the loopback fake; the embedded engine's table parsing on a real eval-dev table.
"""

from __future__ import annotations

import csv
import json

import pytest

from ocrflow.errors import ConfigurationError
from ocrflow.models import OcrTask, Status
from ocrflow.ocr import check_task
from ocrflow.pipeline import Context, process_document
from ocrflow.settings import DashScopeOptions, OpenAIOptions, Settings
from tests.conftest import EXAMPLES, eval_dev
from tests.fake_dashscope import DEFAULT_TEXT

KEY = "sk-test-tasks-0123456789"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)


@pytest.fixture(params=["dashscope", "openai"])
def ctx(request, fake_dashscope, tmp_path) -> Context:
    settings = Settings(
        out_dir=tmp_path / "out",
        engine=request.param,
        dashscope=DashScopeOptions(base_url=fake_dashscope.native_url),
        openai=OpenAIOptions(base_url=fake_dashscope.compat_url),
    )
    return Context(settings)


def stored(ctx: Context, document_id: str) -> dict:
    return json.loads((ctx.settings.out_dir / f"{document_id}.json").read_text())


def test_table_parsing_keeps_html_grid_and_files(ctx):
    result = process_document(ctx, EXAMPLES / "invoice_valid.png", task=OcrTask.TABLE_PARSING)
    assert result.status is Status.ACCEPTED and result.doc_type is None and result.reasons == []
    (table,) = result.outputs.tables
    assert table.grid == [["元素", "结果"], ["Pb", "ND"]] and table.html.startswith("<table>")
    out = ctx.settings.out_dir
    document_id = result.document_id
    assert result.outputs.files == [f"{document_id}.table-1.csv", f"{document_id}.table-1.html"]
    with (out / f"{document_id}.table-1.csv").open() as handle:
        assert list(csv.reader(handle)) == table.grid
    assert "<td>Pb</td>" in (out / f"{document_id}.table-1.html").read_text()
    assert stored(ctx, document_id)["outputs"]["tables"][0]["grid"] == table.grid
    assert stored(ctx, document_id)["task"] == "table_parsing"


def test_a_table_that_does_not_add_up_goes_to_review(ctx, fake_dashscope):
    fake_dashscope.table = "```html\n<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>\n```"
    result = process_document(ctx, EXAMPLES / "invoice_valid.png", task=OcrTask.TABLE_PARSING)
    assert result.status is Status.NEEDS_REVIEW
    assert [(r.stage.value, r.code) for r in result.reasons] == [("validate", "table_inconsistent")]
    assert "rows have different numbers of columns" in result.reasons[0].message


@pytest.mark.parametrize(
    ("task", "key", "suffix"),
    [(OcrTask.DOCUMENT_PARSING, "latex", ".tex"), (OcrTask.FORMULA_RECOGNITION, "latex", ".tex")],
)
def test_latex_outputs_are_kept_and_written(ctx, task, key, suffix):
    result = process_document(ctx, EXAMPLES / "receipt_valid.png", task=task)
    assert result.status is Status.ACCEPTED, result.reasons
    latex = getattr(result.outputs, key)
    assert latex and (ctx.settings.out_dir / f"{result.document_id}{suffix}").read_text() == latex + "\n"


def test_schema_less_extraction_keeps_every_pair_as_flat_strings(ctx, fake_dashscope):
    fake_dashscope.kv = {"发票号码": "12345678", "金额": 1130}
    result = process_document(ctx, EXAMPLES / "invoice_valid.png", task=OcrTask.KEY_INFORMATION_EXTRACTION)
    assert result.outputs.kv == {"发票号码": "12345678", "金额": "1130"}
    assert result.status is Status.ACCEPTED and result.doc_type is None


def test_multilingual_text_has_its_language(ctx):
    result = process_document(ctx, EXAMPLES / "receipt_valid.png", task=OcrTask.MULTI_LAN)
    assert result.text == DEFAULT_TEXT and result.outputs.language == "zh"


def test_a_document_type_can_ask_for_a_task(tmp_path, fake_dashscope):
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "price_table.schema.json").write_text(
        json.dumps(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": "Price table",
                "type": "object",
                "x-ocrflow": {"task": "table_parsing"},
                "properties": {},
            }
        )
    )
    settings = Settings(
        out_dir=tmp_path / "out",
        schema_dir=schemas,
        engine="openai",
        openai=OpenAIOptions(base_url=fake_dashscope.compat_url),
    )
    result = process_document(Context(settings), EXAMPLES / "invoice_valid.png", doc_type="price_table")
    assert result.task is OcrTask.TABLE_PARSING and result.outputs.tables[0].rows == 2


def test_the_embedded_engine_parses_a_table_end_to_end(tmp_path, engine):
    image = eval_dev("tables/pubtabnet_PMC4840965_004_00.png")
    if OcrTask.TABLE_PARSING not in engine.supported_tasks:
        pytest.skip("rapid-table is not installed (scripts/setup.sh installs it)")
    ctx = Context(Settings(out_dir=tmp_path / "out"), given_engine=engine)
    result = process_document(ctx, image, task=OcrTask.TABLE_PARSING)
    assert result.outputs.tables and result.outputs.tables[0].problem is None
    assert (tmp_path / "out" / f"{result.document_id}.table-1.csv").exists()


def test_a_task_the_engine_cannot_do_is_refused_before_anything_runs(engine):
    with pytest.raises(ConfigurationError) as caught:
        check_task(engine, None, OcrTask.DOCUMENT_PARSING)
    assert "cannot do document_parsing" in caught.value.message
    assert "dashscope engine" in caught.value.message and "openai engine" in caught.value.message
