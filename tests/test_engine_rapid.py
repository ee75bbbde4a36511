"""The embedded engine's use of the cores: pages x onnxruntime threads stay within them."""

from __future__ import annotations

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from ocrflow.engines import rapid
from ocrflow.engines.rapid import RapidOcrEngine
from ocrflow.models import OcrTask
from ocrflow.settings import LocalEngineOptions, available_cores
from tests.conftest import EXAMPLES, CountsModels

PAGES = [
    EXAMPLES / name for name in ("bank_card_valid.png", "train_ticket_valid.png", "cn_id_card_valid.png")
]


class CountingEngine(CountsModels, RapidOcrEngine):
    """A real RapidOcrEngine that counts the RapidOCR instances it loads and the pages read at once."""


def _read_all(engine: RapidOcrEngine, threads: int) -> list[str]:
    with ThreadPoolExecutor(threads) as pool:
        results = pool.map(lambda path: engine.recognize(path, OcrTask.TEXT_RECOGNITION), PAGES * 2)
        return [result.text for result in results]


def test_more_threads_than_slots_read_one_page_at_a_time_on_one_model(engine):
    limited = CountingEngine(LocalEngineOptions(parallel=1))

    texts = _read_all(limited, threads=4)

    assert (limited.loaded, limited.most_running) == (1, 1)
    # The same readings as an engine reading the pages one by one.
    assert texts == [engine.recognize(path, OcrTask.TEXT_RECOGNITION).text for path in PAGES * 2]


def test_by_default_one_thread_a_page_and_as_many_pages_as_cores():
    engine = CountingEngine(LocalEngineOptions())

    _read_all(engine, threads=available_cores() + 2)

    assert engine.options.threads == 1
    assert engine.parallel == available_cores()
    assert engine.loaded <= available_cores() and engine.most_running <= available_cores()


def test_onnxruntime_threads_divide_the_cores():
    assert RapidOcrEngine(LocalEngineOptions(threads=2)).parallel == max(1, available_cores() // 2)
    assert RapidOcrEngine(LocalEngineOptions(threads=0)).parallel == 1  # onnxruntime takes every core
    assert RapidOcrEngine(LocalEngineOptions(threads=1, parallel=3)).parallel == 3


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(rapid._malloc_trim() is None, reason="the C library is not glibc")
def test_released_memory_leaves_the_process():
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    block, count = 64 * 1024, 3 * 1024  # 192 MiB in blocks glibc serves from its heap, not by mmap
    blocks = [libc.malloc(block) for _ in range(count)]
    for address in blocks:
        ctypes.memset(address, 1, block)
    pin = libc.malloc(block)  # in use above the freed ones, so glibc cannot shrink its heap by itself
    for address in blocks:
        libc.free(address)
    kept = _resident_bytes()
    rapid.release_freed_memory()
    released = kept - _resident_bytes()
    libc.free(pin)
    assert released > 150 * 2**20


@pytest.mark.parametrize("release", [True, False])
def test_memory_is_released_after_each_page_unless_switched_off(monkeypatch, release):
    releases = []
    monkeypatch.setattr(rapid, "release_freed_memory", lambda: releases.append(1))
    engine = RapidOcrEngine(LocalEngineOptions(release_memory=release))
    texts = [engine.recognize(page, OcrTask.TEXT_RECOGNITION).text for page in PAGES]
    assert all(texts)
    assert len(releases) == (len(PAGES) if release else 0)


def test_the_default_line_width_reaches_rapidocr():
    loaded = RapidOcrEngine(LocalEngineOptions())._load().cfg
    assert list(loaded.Rec.rec_img_shape) == [3, 48, LocalEngineOptions().line_width]
    assert LocalEngineOptions().line_width == 240, "measured in bench/RESULTS-overhead.md"
    assert loaded.Rec.rec_batch_num == LocalEngineOptions().line_batch
