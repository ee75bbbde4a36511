"""A multi-page document goes to an API engine in as few requests as its input limit allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.process_documents import process_documents
from ocrflow.cache import CachedEngine, cache_dir
from ocrflow.doctypes import load_doctypes
from ocrflow.engines.dashscope import DashScopeEngine
from ocrflow.engines.rapid import RapidOcrEngine
from ocrflow.ingest import ingest
from ocrflow.ocr import packs_pages, recognize_document
from ocrflow.pipeline import Context, process_document
from ocrflow.settings import DashScopeOptions, IngestOptions, PreprocessOptions, Settings, VerifyOptions
from tests.conftest import EXAMPLES, task_run_names

PDF = EXAMPLES / "receipt_pages.pdf"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-packing")


def _images_sent(fake) -> list[int]:
    """How many images each request to the native API carried."""
    counts = []
    for request in fake.requests:
        content = request.body["input"]["messages"][-1]["content"]
        counts.append(sum(1 for part in content if "image" in part))
    return counts


def _pages(tmp_path: Path):
    return ingest(PDF, tmp_path / "work", IngestOptions()).pages


def test_known_type_pages_go_in_one_request_and_keep_their_numbers(fake_dashscope, tmp_path):
    receipt = load_doctypes()["receipt"]
    engine = DashScopeEngine(DashScopeOptions(base_url=fake_dashscope.native_url), None)
    pages = _pages(tmp_path)
    assert len(pages) == 2 and packs_pages(engine, receipt)
    (result,) = recognize_document(pages, engine, receipt)
    assert _images_sent(fake_dashscope) == [2]
    assert result.page_number == 1 and result.usage.pages == 2


def test_a_missing_middle_page_splits_the_request_so_page_numbers_stay_right(fake_dashscope, tmp_path):
    receipt = load_doctypes()["receipt"]
    engine = DashScopeEngine(DashScopeOptions(base_url=fake_dashscope.native_url), None)
    first, second = _pages(tmp_path)
    third = second.model_copy(update={"page_number": 3})
    results = recognize_document([first, third], engine, receipt)
    assert _images_sent(fake_dashscope) == [1, 1]
    assert [r.page_number for r in results] == [1, 3]


PAGE_TWO = {"company": "ABC MINI MARKET SDN BHD", "date": "26/12/2018", "total": "25.00"}
"""What the fake "reads": page 2's receipt (page 1 holds another, with its own date and total)."""


def _receipt_pages_read(fake, tmp_path: Path, engine, *, independent_reading: bool):
    fake.kv = dict(PAGE_TWO)
    settings = Settings(
        out_dir=tmp_path / "out",
        engine="dashscope",
        dashscope=DashScopeOptions(base_url=fake.native_url),
        verify=VerifyOptions(independent_reading=independent_reading),
    )
    return process_document(Context(settings, given_verifier=engine), PDF, "receipt")


def test_a_packed_answer_gives_each_value_the_page_the_independent_reading_finds_it_on(
    fake_dashscope, tmp_path, engine
):
    result = _receipt_pages_read(fake_dashscope, tmp_path, engine, independent_reading=True)
    assert _images_sent(fake_dashscope) == [2]  # one request for both pages
    assert {name: result.fields[name].page for name in PAGE_TWO} == dict.fromkeys(PAGE_TWO, 2)
    assert result.fields["total"].boxes and result.fields["total"].boxes[0].page == 2


def test_without_the_independent_reading_each_page_is_its_own_request_and_gives_its_page(
    fake_dashscope, tmp_path, engine
):
    receipt = load_doctypes()["receipt"]
    api = DashScopeEngine(DashScopeOptions(base_url=fake_dashscope.native_url), None)
    assert packs_pages(api, receipt) and not packs_pages(api, receipt, independent_reading=False)
    result = _receipt_pages_read(fake_dashscope, tmp_path, engine, independent_reading=False)
    assert _images_sent(fake_dashscope) == [1, 1]
    # Both pages answered the fake's values; as ever the later page's stands, and says so.
    assert {name: result.fields[name].page for name in PAGE_TWO} == dict.fromkeys(PAGE_TWO, 2)


def test_text_with_positions_and_the_local_engine_are_not_packed(fake_dashscope, engine):
    api = DashScopeEngine(DashScopeOptions(base_url=fake_dashscope.native_url), None)
    receipt = load_doctypes()["receipt"]
    assert not packs_pages(api, None)  # unknown type: advanced recognition, boxes per page
    assert not packs_pages(engine, receipt)
    assert not packs_pages(CachedEngine(RapidOcrEngine(), Path("unused")), receipt)


def test_a_packed_request_is_cached_as_one_entry(fake_dashscope, tmp_path):
    receipt = load_doctypes()["receipt"]
    api = DashScopeEngine(DashScopeOptions(base_url=fake_dashscope.native_url), None)
    cached = CachedEngine(api, cache_dir(tmp_path))
    pages = _pages(tmp_path)
    (first,) = recognize_document(pages, cached, receipt)
    (again,) = recognize_document(pages, cached, receipt)
    assert len(fake_dashscope.requests) == 1
    assert (cached.hits, cached.misses) == (1, 1)
    assert first.key_values and again.key_values == first.key_values and again.page_number == 1
    assert again.usage.input_tokens == 0 and cached.saved.input_tokens == first.usage.input_tokens


def test_the_flow_reads_a_known_type_pdf_in_one_task_run_and_one_request(
    prefect_server, fake_dashscope, tmp_path
):
    settings = Settings(
        engine="dashscope",
        dashscope=DashScopeOptions(base_url=fake_dashscope.native_url),
        preprocess=PreprocessOptions(
            rescale=False, denoise=False, clahe=False, deskew=False, orientation=False
        ),
    )
    state = process_documents(
        [str(PDF)], out=str(tmp_path / "out"), doc_type="receipt", settings=settings, return_state=True
    )
    (result,) = state.result()
    assert _images_sent(fake_dashscope) == [2]
    assert result.usage.pages == 2 and result.usage.input_tokens > 0
    names = task_run_names(state.state_details.flow_run_id)
    assert names == ["document receipt_pages.pdf"]  # read, packed, and concluded in one task run
