"""The per-run token budget in the Prefect flow, against the loopback DashScope fake.

Documents that do not fit stay pending (no record, not rejected) in ``<out>/pending.json``
and go first in the next run; the run never spends more than its budget; each result carries
the usage the fake billed, and the run's summary artifact sums it with its cost.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.process_documents import process_documents
from ocrflow.admission import PENDING_FILE, read_pending
from ocrflow.cost import estimate, first_page_allowance
from ocrflow.models import OcrTask, Usage
from ocrflow.settings import CostOptions, DashScopeOptions, ModelPrice, Settings
from ocrflow.store import ResultStore
from tests.conftest import EXAMPLES, examples_in

NAMES = ("a_receipt.png", "b_invoice.png", "c_ticket.png", "d_bank_card.png")
SOURCES = ("receipt_valid.png", "invoice_valid.png", "train_ticket_valid.png", "bank_card_valid.png")
PRICE = ModelPrice(input=0.5, output=2.0)
FAKE_ANSWER_ALLOWANCE = 200
"""The fake answers these examples in 78 tokens; the default allowance (4,096) is Qwen-OCR's ceiling."""


@pytest.fixture(autouse=True)
def _server(prefect_server, monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-budget")


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return examples_in(tmp_path / "inbox", dict(zip(NAMES, SOURCES, strict=True)))


def settings_for(fake, budget: int | None, output_tokens_per_page: int = FAKE_ANSWER_ALLOWANCE) -> Settings:
    return Settings(
        engine="dashscope",
        dashscope=DashScopeOptions(base_url=fake.native_url),
        cost=CostOptions(
            token_budget=budget, prices={"qwen-vl-ocr": PRICE}, output_tokens_per_page=output_tokens_per_page
        ),
    )


def real_costs(fake, inbox: Path, out: Path) -> dict[str, int]:
    """What each document really costs, from a run without a budget into its own output folder."""
    results = process_documents(paths=[str(inbox)], out=str(out), settings=settings_for(fake, None))
    return {Path(r.source).name: r.usage.input_tokens + r.usage.output_tokens for r in results}


async def _artifact(key: str, flow_run_id):
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    (artifact,) = [a for a in artifacts if a.flow_run_id == flow_run_id]
    return artifact.data


async def _summary(flow_run_id) -> str:
    return await _artifact("ocrflow-summary", flow_run_id)


def _row(table, result) -> dict[str, str]:
    rows = json.loads(table) if isinstance(table, str) else table
    (row,) = [row for row in rows if row["id"] == result.document_id[:12]]
    return row


def test_budget_leaves_the_rest_pending_and_the_next_run_takes_them_first(
    inbox: Path, tmp_path: Path, fake_dashscope
):
    out = tmp_path / "out"
    estimates = {e.path.name: e.tokens for e in estimate([inbox], Settings(), "qwen-vl-ocr")}
    costs = real_costs(fake_dashscope, inbox, tmp_path / "unbudgeted")
    # Exactly what the first two documents really cost, prompts and answers included.
    budget = costs[NAMES[0]] + costs[NAMES[1]]

    state = process_documents(
        paths=[str(inbox)], out=str(out), settings=settings_for(fake_dashscope, budget), return_state=True
    )
    results = state.result()

    assert sorted(Path(r.source).name for r in results) == list(NAMES[:2])
    assert len(fake_dashscope.requests) == 4 + 2, "nothing was sent for the pending documents"
    assert sum(r.usage.input_tokens + r.usage.output_tokens for r in results) == budget, "no overshoot"
    for result in results:
        assert result.usage.image_tokens == estimates[Path(result.source).name]
        assert result.usage.input_tokens > result.usage.image_tokens > 0 and result.usage.output_tokens > 0
    # Pending means neither lost nor rejected: no record, and listed for the next run.
    store = ResultStore(out, f"sqlite:///{(out / 'ocrflow.sqlite3').resolve()}")
    pending = read_pending(out)
    assert [p.path.name for p in pending] == list(NAMES[2:])
    # Their estimates are their images plus what a finished page paid beyond its image: here, exact.
    assert all(p.estimated_tokens == costs[p.path.name] > estimates[p.path.name] for p in pending)
    assert all(store.status_of(p.document_id) is None for p in pending)

    table = asyncio.run(_artifact("ocrflow-outcomes", state.state_details.flow_run_id))
    for result in results:
        billed = f"{result.usage.input_tokens + result.usage.output_tokens:,}"
        assert {"document": Path(result.source).name, "tokens": billed}.items() <= _row(table, result).items()
    summary = asyncio.run(_summary(state.state_details.flow_run_id))
    used = sum(r.usage.input_tokens + r.usage.output_tokens for r in results)
    cost = (
        sum(r.usage.input_tokens * PRICE.input + r.usage.output_tokens * PRICE.output for r in results) / 1e6
    )
    assert "## API usage (qwen-vl-ocr)" in summary
    assert f"| {used:,} | {cost:.4f} USD |" in summary
    assert f"Token budget: {used:,} of {budget:,} used." in summary
    assert "## Pending: 2 documents wait for the next run" in summary
    assert f"| {NAMES[2]} |" in summary and f"| {NAMES[3]} |" in summary

    # The next run is given one finished document only, yet takes the pending ones first.
    later = process_documents(
        paths=[str(inbox / NAMES[0])], out=str(out), settings=settings_for(fake_dashscope, None)
    )
    assert sorted(Path(r.source).name for r in later) == list(NAMES[2:])
    assert len(fake_dashscope.requests) == 4 + 4
    assert not (out / PENDING_FILE).exists()
    assert all(store.status_of(r.document_id) is not None for r in later)


def test_a_rerun_pays_nothing_and_says_what_the_cache_saved(inbox: Path, tmp_path: Path, fake_dashscope):
    out = tmp_path / "out"
    document = str(inbox / NAMES[0])
    settings = settings_for(fake_dashscope, None)
    first = process_documents(paths=[document], out=str(out), settings=settings)
    state = process_documents(
        paths=[document], out=str(out), settings=settings, reprocess=True, return_state=True
    )
    again = state.result()

    assert len(fake_dashscope.requests) == 1, "the second run was served from the OCR cache"
    assert again[0].usage.input_tokens == 0 and first[0].usage.input_tokens > 0
    saved = first[0].usage.input_tokens + first[0].usage.output_tokens
    summary = asyncio.run(_summary(state.state_details.flow_run_id))
    assert f"Requests answered from the OCR cache: 1 ({saved:,} tokens not paid again)." in summary
    assert "Pending" not in summary and "Token budget" not in summary
    stored = json.loads(next(out.glob(f"{first[0].document_id}.json")).read_text())
    assert stored["usage"]["input_tokens"] == 0, "the stored result says what this run paid"


def test_the_cli_says_how_many_documents_wait(inbox: Path, tmp_path: Path, fake_dashscope, monkeypatch):
    from typer.testing import CliRunner

    from ocrflow.cli import app

    estimates = {e.path.name: e.tokens for e in estimate([inbox], Settings(), "qwen-vl-ocr")}
    smallest = min(estimates.values())
    # The default first allowance is Qwen-OCR's answer ceiling: a budget one token short of the
    # smallest document's upper bound sends nothing, although its real cost (about 1,350) would fit.
    allowance = first_page_allowance(Settings(engine="dashscope"), OcrTask.ADVANCED_RECOGNITION)
    monkeypatch.setenv("OCRFLOW_ENGINE", "dashscope")
    monkeypatch.setenv("OCRFLOW_DASHSCOPE__BASE_URL", fake_dashscope.native_url)
    monkeypatch.setenv("OCRFLOW_COST__TOKEN_BUDGET", str(smallest + allowance - 1))
    result = CliRunner().invoke(app, ["run", str(inbox), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert not fake_dashscope.requests
    said = " ".join(result.output.split())  # rich wraps lines at the terminal's width
    assert "4 pending (token budget reached; the next run takes them first)" in said
    assert "skipped" not in said


# --- answers the service cut off (x-dashscope-partialresponse) are billed too ----------------------


@pytest.mark.parametrize("engine_name", ["dashscope", "openai"])
def test_a_cut_off_answer_is_counted_in_the_retry_that_answers(fake_dashscope, tmp_path, engine_name):
    from ocrflow.engines.dashscope import DashScopeEngine
    from ocrflow.engines.openai_compat import OpenAICompatEngine
    from ocrflow.errors import TransientError
    from ocrflow.settings import OpenAIOptions

    if engine_name == "dashscope":
        engine = DashScopeEngine(DashScopeOptions(base_url=fake_dashscope.native_url))
    else:
        engine = OpenAICompatEngine(OpenAIOptions(base_url=fake_dashscope.compat_url))
    page = tmp_path / "receipt.png"
    shutil.copy(EXAMPLES / SOURCES[0], page)
    whole = engine.recognize(page, OcrTask.TEXT_RECOGNITION).usage

    fake_dashscope.inject("partial")
    with pytest.raises(TransientError) as caught:
        engine.recognize(page, OcrTask.TEXT_RECOGNITION)
    assert caught.value.code == "partial_response"
    retried = engine.recognize(page, OcrTask.TEXT_RECOGNITION).usage
    # The cut-off request paid for the whole input and about half the answer.
    assert retried.input_tokens == 2 * whole.input_tokens
    assert whole.output_tokens < retried.output_tokens < 2 * whole.output_tokens
    assert engine.take_unanswered([page]) == Usage(), "claimed by the retry, not counted twice"

    fake_dashscope.inject("partial")
    with pytest.raises(TransientError):
        engine.recognize(page, OcrTask.TEXT_RECOGNITION)
    left = engine.take_unanswered([page])
    assert left.input_tokens == whole.input_tokens and 0 < left.output_tokens < whole.output_tokens
    assert engine.take_unanswered([page]) == Usage()
    assert engine.recognize(page, OcrTask.TEXT_RECOGNITION).usage.input_tokens == whole.input_tokens


def test_the_run_counts_what_a_cut_off_answer_cost(inbox: Path, tmp_path: Path, fake_dashscope):
    costs = real_costs(fake_dashscope, inbox, tmp_path / "unbudgeted")
    fake_dashscope.inject("partial")  # the next request, the first document's, is cut off and retried
    budget = costs[NAMES[0]] + costs[NAMES[1]]
    state = process_documents(
        paths=[str(inbox)],
        out=str(tmp_path / "out"),
        settings=settings_for(fake_dashscope, budget),
        return_state=True,
    )
    results = state.result()
    first = next(r for r in results if Path(r.source).name == NAMES[0])
    billed = first.usage.input_tokens + first.usage.output_tokens
    assert costs[NAMES[0]] < billed < 2 * costs[NAMES[0]], "the cut-off answer is in the document's usage"
    # It left less room: the second document no longer fits, and nothing went over.
    assert [Path(r.source).name for r in results] == [NAMES[0]]
    assert len(fake_dashscope.requests) == 4 + 2
    assert [p.path.name for p in read_pending(tmp_path / "out")] == list(NAMES[1:])
