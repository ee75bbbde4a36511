from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from conftest import EXAMPLES

from ocrflow.cache import CachedEngine, OcrCache, cache_dir, cache_key, request_parts
from ocrflow.doctypes import DocType
from ocrflow.engines.base import OcrEngine
from ocrflow.errors import TransientError
from ocrflow.models import OcrLine, OcrResult, OcrTask, Usage
from ocrflow.pipeline import Context, process_document
from ocrflow.settings import DashScopeOptions, Settings

PAID = Usage(pages=1, input_tokens=1300, output_tokens=120, image_tokens=1234, seconds=2.5)


class PlainEngine:
    """A fake API engine without ``request_fingerprint``: counts the calls that reach it."""

    name = "fake"
    supported_tasks = frozenset(
        {OcrTask.TEXT_RECOGNITION, OcrTask.TABLE_PARSING, OcrTask.KEY_INFORMATION_EXTRACTION}
    )

    def __init__(self, model: str = "qwen-vl-ocr", max_pixels: int = 8_388_608, fail_first: bool = False):
        self.model = model
        self.max_pixels = max_pixels
        self.calls = 0
        self.fail_first = fail_first
        self._lock = threading.Lock()

    def recognize(self, image: Path, task: OcrTask, *, page_number: int = 1, doctype=None) -> OcrResult:
        with self._lock:
            self.calls += 1
            if self.fail_first and self.calls == 1:
                raise TransientError("HTTP 429")
        line = OcrLine(text=f"text of {Path(image).name}", box=[[0, 0], [10, 0], [10, 5], [0, 5]], score=0.99)
        return OcrResult(
            engine=self.name,
            model=self.model,
            task=task,
            page_number=page_number,
            lines=(line,),
            text=line.text,
            usage=PAID,
        )


class CountingEngine(PlainEngine):
    """The same, saying which pixel bounds and prompt its requests carry."""

    def request_fingerprint(self, task: OcrTask) -> dict[str, str]:
        prompt = f"prompt for {task.value}"
        return {"min_pixels": "3072", "max_pixels": str(self.max_pixels), "prompt": prompt}


@pytest.fixture
def page(tmp_path: Path) -> Path:
    target = tmp_path / "page-0001.png"
    shutil.copy(EXAMPLES / "receipt_valid.png", target)
    return target


def test_second_call_is_served_from_the_cache(tmp_path: Path, page: Path):
    inner = CountingEngine()
    engine = CachedEngine(inner, tmp_path / "cache")
    first = engine.recognize(page, OcrTask.TEXT_RECOGNITION, page_number=1)
    second = engine.recognize(page, OcrTask.TEXT_RECOGNITION, page_number=3)
    assert inner.calls == 1
    assert second.text == first.text and second.lines == first.lines
    assert second.page_number == 3
    # Nothing was paid for the hit; what it would have cost is counted apart.
    assert first.usage == PAID
    assert (second.usage.input_tokens, second.usage.output_tokens, second.usage.pages) == (0, 0, 1)
    assert (engine.hits, engine.misses) == (1, 1)
    assert engine.paid == PAID and engine.saved == PAID


def test_the_same_bytes_under_another_name_hit(tmp_path: Path, page: Path):
    inner = CountingEngine()
    engine = CachedEngine(inner, tmp_path / "cache")
    engine.recognize(page, OcrTask.TEXT_RECOGNITION)
    copy = tmp_path / "elsewhere.png"
    shutil.copy(page, copy)
    engine.recognize(copy, OcrTask.TEXT_RECOGNITION)
    assert inner.calls == 1


def test_anything_that_changes_the_request_misses(tmp_path: Path, page: Path):
    root = tmp_path / "cache"
    base = CountingEngine()
    CachedEngine(base, root).recognize(page, OcrTask.TEXT_RECOGNITION)
    CachedEngine(base, root).recognize(page, OcrTask.TABLE_PARSING)
    assert base.calls == 2
    for other in (CountingEngine(model="qwen-vl-ocr-2025-11-20"), CountingEngine(max_pixels=1_000_000)):
        CachedEngine(other, root).recognize(page, OcrTask.TEXT_RECOGNITION)
        assert other.calls == 1
    other_page = tmp_path / "other.png"
    shutil.copy(EXAMPLES / "invoice_valid.png", other_page)
    CachedEngine(base, root).recognize(other_page, OcrTask.TEXT_RECOGNITION)
    assert base.calls == 3


def test_an_engine_without_a_fingerprint_is_keyed_by_name_model_and_task():
    engine = PlainEngine()
    assert request_parts(engine, OcrTask.TEXT_RECOGNITION) == {
        "engine": "fake",
        "model": "qwen-vl-ocr",
        "task": "text_recognition",
    }
    fingerprinted = request_parts(CountingEngine(), OcrTask.TEXT_RECOGNITION)
    assert fingerprinted["request.max_pixels"] == "8388608"
    assert cache_key("ab" * 32, request_parts(engine, OcrTask.TEXT_RECOGNITION)) != cache_key(
        "ab" * 32, fingerprinted
    )


def test_files_are_fanned_out_by_key_prefix_and_written_whole(tmp_path: Path, page: Path):
    root = cache_dir(tmp_path / "out")
    assert root == tmp_path / "out" / ".cache" / "ocr"
    CachedEngine(CountingEngine(), root).recognize(page, OcrTask.TEXT_RECOGNITION)
    [stored] = [p for p in root.rglob("*") if p.is_file()]
    assert stored.parent.name == stored.stem[:2] and stored.suffix == ".json"
    assert OcrCache(root).get(stored.stem).usage == PAID  # the original usage is kept


def test_an_unreadable_cache_entry_is_redone(tmp_path: Path, page: Path):
    root = tmp_path / "cache"
    inner = CountingEngine()
    CachedEngine(inner, root).recognize(page, OcrTask.TEXT_RECOGNITION)
    [stored] = [p for p in root.rglob("*.json")]
    stored.write_text("{not json")
    CachedEngine(inner, root).recognize(page, OcrTask.TEXT_RECOGNITION)
    CachedEngine(inner, root).recognize(page, OcrTask.TEXT_RECOGNITION)
    assert inner.calls == 2


def test_failures_are_not_cached_so_a_retry_reaches_the_engine(tmp_path: Path, page: Path):
    inner = CountingEngine(fail_first=True)
    engine = CachedEngine(inner, tmp_path / "cache")
    with pytest.raises(TransientError):
        engine.recognize(page, OcrTask.TEXT_RECOGNITION)
    assert engine.recognize(page, OcrTask.TEXT_RECOGNITION).usage == PAID
    assert engine.recognize(page, OcrTask.TEXT_RECOGNITION).usage.input_tokens == 0
    assert inner.calls == 2


def test_a_missing_page_is_reported_by_the_engine(tmp_path: Path, engine):
    from ocrflow.errors import InputError

    with pytest.raises(InputError):
        CachedEngine(engine, tmp_path / "cache").recognize(tmp_path / "gone.png", OcrTask.TEXT_RECOGNITION)


def test_cached_engine_is_an_engine_and_wraps_the_real_one(tmp_path: Path, page: Path, engine):
    cached = CachedEngine(engine, tmp_path / "cache")
    assert isinstance(cached, OcrEngine)
    assert (cached.name, cached.model) == (engine.name, engine.model)
    assert cached.supported_tasks == engine.supported_tasks
    first = cached.recognize(page, OcrTask.TEXT_RECOGNITION)
    second = cached.recognize(page, OcrTask.TEXT_RECOGNITION)
    assert second.text == first.text and second.lines == first.lines
    assert (cached.hits, cached.misses) == (1, 1)


def test_concurrent_workers_share_the_cache(tmp_path: Path, page: Path):
    inner = CountingEngine()
    engine = CachedEngine(inner, tmp_path / "cache")
    engine.recognize(page, OcrTask.TEXT_RECOGNITION)
    results = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        results.append(engine.recognize(page, OcrTask.TEXT_RECOGNITION))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert inner.calls == 1 and engine.hits == 8
    assert {r.text for r in results} == {"text of page-0001.png"}
    assert engine.saved.input_tokens == 8 * PAID.input_tokens


def test_a_wrapped_engine_is_keyed_like_the_bare_one(tmp_path: Path):
    for inner in (CountingEngine(), PlainEngine()):
        wrapped = CachedEngine(inner, tmp_path / "cache")
        assert request_parts(wrapped, OcrTask.TABLE_PARSING) == request_parts(inner, OcrTask.TABLE_PARSING)


def test_key_information_extraction_is_keyed_by_the_doc_types_schema(tmp_path: Path, page: Path, doctypes):
    inner = CountingEngine()
    engine = CachedEngine(inner, tmp_path / "cache")
    receipt, ticket = doctypes["receipt"], doctypes["train_ticket"]
    kie = OcrTask.KEY_INFORMATION_EXTRACTION
    engine.recognize(page, kie, doctype=receipt)
    engine.recognize(page, kie, doctype=receipt)
    engine.recognize(page, kie, doctype=ticket)
    assert inner.calls == 2, "another type's schema is another request"

    edited = DocType(receipt.name, {**receipt.schema, "required": ["total"]})
    engine.recognize(page, kie, doctype=edited)
    assert inner.calls == 3, "an edited schema asks for other fields, so it is not served the old answer"
    # Text recognition does not send a schema, so the type does not split its entries.
    engine.recognize(page, OcrTask.TEXT_RECOGNITION, doctype=receipt)
    engine.recognize(page, OcrTask.TEXT_RECOGNITION, doctype=ticket)
    assert inner.calls == 4


def test_a_rerun_through_the_pipeline_never_pays_twice(tmp_path: Path, fake_dashscope, monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-cache")
    settings = Settings(
        out_dir=tmp_path / "out",
        engine="dashscope",
        dashscope=DashScopeOptions(base_url=fake_dashscope.native_url),
    )
    source = tmp_path / "receipt.png"
    shutil.copy(EXAMPLES / "receipt_valid.png", source)

    first = process_document(Context(settings), source, "receipt")
    # A new context is a new process: only the cache on disk can remember the answer.
    again = process_document(Context(settings), source, "receipt")
    assert len(fake_dashscope.requests) == 1
    assert first.usage.input_tokens > 0 and again.usage.input_tokens == 0, "the re-run paid nothing"
    assert again.fields == first.fields

    other_type = process_document(Context(settings), source, "train_ticket")
    assert len(fake_dashscope.requests) == 2, "another schema is another request"
    assert other_type.usage.input_tokens > 0
