"""``ocrflow estimate``: tokens and cost per page and in total, before anything is sent."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

os.environ["COLUMNS"] = "200"  # rich wraps tables at the terminal's width; keep rows on one line

from ocrflow.cli import app  # noqa: E402
from ocrflow.cost import image_tokens  # noqa: E402
from tests.conftest import examples_in  # noqa: E402

runner = CliRunner()
PRICES = '{"qwen-vl-ocr": {"input": 0.72, "output": 1.44}, "qwen3-vl-plus": {"input": 0.2, "output": 1.6}}'


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = examples_in(tmp_path / "inbox", ("receipt_valid.png", "receipt_pages.pdf"))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


def rows(output: str) -> dict[tuple[str, str], list[str]]:
    """The table's rows by (document, page), cells stripped."""
    found = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│┃]", line)[1:-1]]
        if len(cells) == 7 and cells[1] not in ("page", ""):
            found[(cells[0], cells[1])] = cells
    return found


def test_tokens_and_cost_per_page_and_in_total(inbox: Path, monkeypatch, fake_dashscope):
    monkeypatch.setenv("OCRFLOW_COST__PRICES", PRICES)
    monkeypatch.setenv("OCRFLOW_DASHSCOPE__BASE_URL", fake_dashscope.native_url)
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-estimate")
    result = runner.invoke(app, ["estimate", str(inbox), "--engine", "dashscope"])
    assert result.exit_code == 0, result.output
    table = rows(result.output)

    receipt = table[("receipt_valid.png", "1")]
    tokens = image_tokens(1700, 1000, model="qwen-vl-ocr")
    assert receipt[2:] == ["1000x1700", "992x1696", "8,388,608", f"{tokens:,}", f"{tokens * 0.72 / 1e6:.6f}"]
    assert ("receipt_pages.pdf", "1") in table and ("receipt_pages.pdf", "2") in table
    broken = next(cells for key, cells in table.items() if key[0] == "broken.jpg")
    assert broken[2], "an unreadable file is listed with the reason, not dropped"

    pages = [cells for key, cells in table.items() if key[0] != "broken.jpg"]
    total = sum(int(cells[5].replace(",", "")) for cells in pages)
    assert (
        f"3 documents, 3 pages, {total:,} image tokens, input cost {total * 0.72 / 1e6:.4f} USD"
        in result.output
    )
    assert fake_dashscope.requests == [], "an estimate sends nothing"


def test_model_engine_and_adaptive_mode(inbox: Path, monkeypatch):
    monkeypatch.setenv("OCRFLOW_COST__PRICES", PRICES)
    page = str(inbox / "receipt_valid.png")
    fixed = rows(runner.invoke(app, ["estimate", page]).output)[("receipt_valid.png", "1")]
    adaptive = rows(runner.invoke(app, ["estimate", page, "--adaptive"]).output)[("receipt_valid.png", "1")]
    assert int(adaptive[5].replace(",", "")) < int(fixed[5].replace(",", ""))

    monkeypatch.setenv("OCRFLOW_OPENAI__MODEL", "qwen3-vl-plus")
    result = runner.invoke(app, ["estimate", page, "--engine", "openai"])
    assert "estimate for qwen3-vl-plus" in result.output
    qwen3 = rows(result.output)[("receipt_valid.png", "1")]
    tokens = image_tokens(1700, 1000, model="qwen3-vl-plus")
    assert qwen3[5] == f"{tokens:,}" and qwen3[6] == f"{tokens * 0.2 / 1e6:.6f}"

    unpriced = runner.invoke(app, ["estimate", page, "--model", "qwen-vl-max"])
    assert "input cost unknown (no price for qwen-vl-max" in unpriced.output
    assert rows(unpriced.output)[("receipt_valid.png", "1")][6] == "?"


def test_the_free_engine_is_a_clear_error(inbox: Path):
    result = runner.invoke(app, ["estimate", str(inbox), "--engine", "local"])
    assert result.exit_code == 2
    assert "'local' engine is not billed per token" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_batch_prices_at_half_where_batch_serves_the_model(inbox: Path, monkeypatch):
    monkeypatch.setenv("OCRFLOW_COST__PRICES", PRICES)
    page = str(inbox / "receipt_valid.png")
    live = rows(runner.invoke(app, ["estimate", page]).output)[("receipt_valid.png", "1")]
    batched = runner.invoke(app, ["estimate", page, "--batch"])
    assert batched.exit_code == 0, batched.output
    assert "Batch API at 50%" in batched.output
    cell = rows(batched.output)[("receipt_valid.png", "1")]
    assert float(cell[6]) == pytest.approx(float(live[6]) / 2, abs=1e-6)

    monkeypatch.setenv("OCRFLOW_OPENAI__REGION", "singapore")
    refused = runner.invoke(app, ["estimate", page, "--batch"])
    assert refused.exit_code == 2
    assert "Batch API does not serve 'qwen-vl-ocr' in the singapore region; use the beijing region" in (
        " ".join(refused.output.split())
    )


def test_documented_prices_ship_with_their_date_and_qwen_ocr_says_why_it_has_none(inbox: Path):
    from tests import reference

    page = str(inbox / "receipt_valid.png")
    qianfan = reference.text(reference.QIANFAN)
    documented = re.search(r"~\$([\d.]+)\n/ 1k images", qianfan)
    assert documented and "updated Apr 2026" in qianfan
    result = runner.invoke(app, ["estimate", page, "--model", "baidu/Qianfan-OCR"])
    per_page = float(documented.group(1)) / 1000
    assert rows(result.output)[("receipt_valid.png", "1")][6] == f"{per_page:.6f}"
    assert "Price of baidu/Qianfan-OCR: as of 2026-04" in " ".join(result.output.split())

    assert "For pricing, see [official pricing page]" in reference.text(reference.QWEN_OCR_GUIDE)
    for name in (reference.QWEN_OCR, reference.QWEN_OCR_GUIDE, reference.COMPATIBLE_MODE):
        assert not re.search(r"(?i)per (million|1m|1,000|thousand) tokens", reference.text(name))
    unpriced = runner.invoke(app, ["estimate", page])
    assert "no price for qwen-vl-ocr: ../shared/reference states none" in " ".join(unpriced.output.split())
