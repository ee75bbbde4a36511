"""Inputs that used to stop a batch: special files, links, loops, cut-short TIFFs, odd names.

Each case once, precisely, then a fuzzed sample of every kind in :mod:`tests.fuzz_corpus`
through ingest (each file within a deadline) and through a whole ``ocrflow run``.
bench/fuzz_inputs.py runs a few hundred.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from PIL import TiffImagePlugin

from ocrflow.errors import InputError
from ocrflow.ingest import discover, identify, ingest, open_document
from ocrflow.models import IngestResult, Stage, shown_path
from ocrflow.pipeline import run_inline
from ocrflow.review.pages import page_png
from ocrflow.settings import IngestOptions, Settings
from tests import fuzz_corpus
from tests.conftest import EXAMPLES
from tests.review_support import needs_review

T = TypeVar("T")
DEADLINE = 20.0
"""Seconds a single file's ingest may take before it counts as hung (a page here takes well under one)."""


def within(seconds: float, step: Callable[[], T]) -> T:
    """``step()`` (its value, or its exception), or a failed test if it is still running after
    ``seconds`` (its thread is left behind)."""
    done = concurrent.futures.Future()
    threading.Thread(target=lambda: _settle(done, step), daemon=True).start()
    try:
        return done.result(timeout=seconds)
    except TimeoutError:
        pytest.fail(f"still running after {seconds} s")


def _settle(future: concurrent.futures.Future, step: Callable[[], T]) -> None:
    try:
        future.set_result(step())
    except Exception as exc:  # noqa: BLE001 - handed to the waiting test
        future.set_exception(exc)


def run(path: Path, tmp_path: Path, **options) -> IngestResult:
    return within(DEADLINE, lambda: ingest(path, tmp_path / "work", IngestOptions(**options)))


def only_reason(result: IngestResult):
    assert not result.pages
    (reason,) = result.reasons
    assert reason.stage is Stage.INGEST and reason.page is None
    return reason


@pytest.fixture
def fifo(tmp_path: Path):
    path = tmp_path / "inbox" / "upload.png"
    path.parent.mkdir()
    os.mkfifo(path)
    yield path
    # A reader stuck in open() (the bug) gets its writer and an end of file, so no thread stays blocked.
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


# --- special files -----------------------------------------------------------------------------


def test_a_fifo_is_refused_without_waiting_for_a_writer(fifo: Path, tmp_path: Path):
    reason = only_reason(run(fifo, tmp_path))

    assert reason.code == "not_a_regular_file"
    assert "named pipe (FIFO)" in reason.message and "Remove it" in reason.message


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_named_directly_is_refused_unread(device: str, tmp_path: Path):
    link = tmp_path / "scan.pdf"
    link.symlink_to(device)

    (source,) = discover([link])  # named directly, so the link is followed
    reason = only_reason(run(source, tmp_path))

    assert source == Path(device)
    assert reason.code == "not_a_regular_file"
    assert "a device" in reason.message


def test_a_file_over_the_size_cap_is_refused_by_its_size_before_any_of_it_is_read(tmp_path: Path):
    big = tmp_path / "big.pdf"
    with big.open("wb") as file:
        file.truncate(3_000_000_000)  # sparse: nothing to read but zeros, for a long time

    with pytest.raises(InputError) as refused:
        within(DEADLINE, lambda: identify(big, max_bytes=10_000_000))
    reason = only_reason(run(big, tmp_path, max_file_bytes=10_000_000))

    assert refused.value.code == reason.code == "file_too_large"
    assert "3000.0 MB, over the 10.0 MB limit (OCRFLOW_INGEST__MAX_FILE_BYTES)" in reason.message


def test_a_system_file_that_says_it_is_empty_is_not_called_empty(tmp_path: Path):
    environ = Path(f"/proc/{os.getpid()}/environ")

    reason = only_reason(run(environ, tmp_path))

    assert reason.code == "unstable_file"
    assert "says it is empty but holds data" in reason.message and "/proc" in reason.message


# --- links -----------------------------------------------------------------------------------


def _scan(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "receipt_valid.png", folder / "receipt.png")
    return folder / "receipt.png"


def test_symlink_loops_in_a_folder_are_reasons_not_a_crash(tmp_path: Path):
    inbox = tmp_path / "inbox"
    scan = _scan(inbox)
    (inbox / "self.png").symlink_to("self.png")
    (inbox / "a.png").symlink_to("b.png")
    (inbox / "b.png").symlink_to("a.png")
    (inbox / "sub").mkdir()
    (inbox / "sub" / "up").symlink_to("..")  # a folder link back up: a walk that followed it never ends

    found = within(DEADLINE, lambda: discover([inbox]))
    reasons = {path.name: only_reason(run(path, tmp_path)) for path in found if path != scan}

    assert found == sorted([scan, inbox / "a.png", inbox / "b.png", inbox / "self.png"])
    assert {name: reason.code for name, reason in reasons.items()} == dict.fromkeys(
        ["a.png", "b.png", "self.png"], "dead_link"
    )
    assert "caught in a loop of links" in reasons["self.png"].message


def test_every_link_not_followed_is_an_entry_of_its_own(tmp_path: Path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("a.png", "b.png"):
        (inbox / name).symlink_to("/dev/zero")

    assert discover([inbox]) == [inbox / "a.png", inbox / "b.png"]


def test_a_broken_link_names_what_it_points_at(tmp_path: Path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "gone.png").symlink_to(tmp_path / "moved-away.png")

    (found,) = discover([inbox])
    reason = only_reason(run(found, tmp_path))

    assert reason.code == "dead_link"
    assert f"a symbolic link to {tmp_path / 'moved-away.png'}, which does not exist" in reason.message


def test_links_that_leave_the_input_folder_are_not_followed_unless_set(tmp_path: Path):
    inbox, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    scan = _scan(inbox)
    secret = _scan(elsewhere)
    (inbox / "inside.png").symlink_to("receipt.png")
    (inbox / "outside.png").symlink_to(secret)

    found = discover([inbox])
    followed = discover([inbox], follow_links_outside=True)
    reason = only_reason(run(inbox / "outside.png", tmp_path))

    # The link inside is the file it names: one document, not two.
    assert found == [inbox / "outside.png", scan]
    assert reason.code == "link_not_followed"
    assert str(secret) in reason.message and "OCRFLOW_INGEST__FOLLOW_LINKS_OUTSIDE" in reason.message
    assert sorted(followed) == sorted([secret, scan])
    assert run(secret, tmp_path).reasons == ()


def test_a_run_follows_links_out_of_its_folder_only_when_set(tmp_path: Path, monkeypatch):
    inbox, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    inbox.mkdir()
    (inbox / "outside.png").symlink_to(_scan(elsewhere))
    monkeypatch.setenv("OCRFLOW_INGEST__FOLLOW_LINKS_OUTSIDE", "true")
    following = Settings(out_dir=tmp_path / "following")
    monkeypatch.delenv("OCRFLOW_INGEST__FOLLOW_LINKS_OUTSIDE")

    (refused,) = run_inline(Settings(out_dir=tmp_path / "out"), [inbox])
    (read,) = run_inline(following, [inbox])

    assert [reason.code for reason in refused.reasons] == ["link_not_followed"]
    assert read.source == str(elsewhere / "receipt.png")
    assert read.status.value in ("accepted", "needs_review")


# --- formats -----------------------------------------------------------------------------------


def test_a_cut_short_multi_page_tiff_says_so_wherever_it_was_cut(tmp_path: Path):
    data = fuzz_corpus.seed_bytes("tiff", random.Random(1))  # three frames, about 260 kB each
    path = tmp_path / "fax.tif"
    said = {}
    for cut in (8, 200, 3898, 300_000, 600_000):  # header, first frame, its pixels, second, third
        path.write_bytes(data[:cut])
        said[cut] = {(r.code, "the TIFF file is cut short" in r.message) for r in run(path, tmp_path).reasons}

    assert said == dict.fromkeys(said, {("truncated_image", True)})


def test_a_tiff_of_thousands_of_frames_is_refused_after_reading_one_past_the_limit(
    tmp_path: Path, monkeypatch
):
    path = tmp_path / "bomb.tif"
    path.write_bytes(fuzz_corpus.tiff_of_frames(5000))
    seen = []
    original = TiffImagePlugin.TiffImageFile._seek
    counting = lambda image, frame: seen.append(frame) or original(image, frame)  # noqa: E731
    monkeypatch.setattr(TiffImagePlugin.TiffImageFile, "_seek", counting)

    opened = open_document(path, IngestOptions(max_pages=20))

    assert [reason.code for reason in opened.reasons] == ["too_many_pages"]
    assert "more than 20 pages" in opened.reasons[0].message
    assert max(seen) <= 20


def test_a_name_that_is_not_utf8_is_processed_and_shown_escaped(tmp_path: Path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(EXAMPLES / "receipt_valid.png", inbox / os.fsdecode(b"re\xe7u.png"))  # Latin-1, not UTF-8

    (result,) = run_inline(Settings(out_dir=tmp_path / "out"), [inbox])

    assert result.source == str(inbox / "re\\xe7u.png")
    assert result.status.value in ("accepted", "needs_review")


# --- a fuzzed sample ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz") / "inbox"
    fuzz_corpus.build_corpus(folder, len(fuzz_corpus.KINDS), seed=13)  # each kind once
    return folder


def test_every_fuzzed_file_is_ingested_within_the_deadline_with_a_readable_reason(
    corpus: Path, tmp_path: Path
):
    records = fuzz_corpus.ingest_each(corpus, tmp_path / "work", IngestOptions(), DEADLINE)

    assert [record.path.name for record in records if record.result is None] == []
    assert len(records) >= len(fuzz_corpus.KINDS)
    outcomes = [
        {"source": str(r.path), "reasons": [x.model_dump() for x in r.result.reasons]} for r in records
    ]
    assert fuzz_corpus.problems(outcomes) == []


def test_a_run_over_the_fuzzed_sample_finishes_with_an_outcome_for_every_file(corpus: Path, tmp_path: Path):
    finished = fuzz_corpus.run_cli(corpus, tmp_path / "out", timeout=600)
    results = fuzz_corpus.outcomes(tmp_path / "out")

    assert finished.returncode == 0, finished.stderr[-2000:]
    assert sorted(result["source"] for result in results) == sorted(map(shown_path, discover([corpus])))
    assert fuzz_corpus.problems(results) == []
    codes = {Path(r["source"]).name.split("-", 1)[1]: [x["code"] for x in r["reasons"]] for r in results}
    assert codes["fifo.png"] == codes["socket.png"] == ["not_a_regular_file"]
    assert codes["link_dev_zero.png"] == codes["link_proc_environ.png"] == ["link_not_followed"]
    assert codes["link_self_loop.png"] == codes["link_pair_loop.png"] == ["dead_link"]


# --- the review app's page images -------------------------------------------------------------


def test_a_review_page_image_follows_a_stored_link_and_refuses_a_fifo_in_its_place(tmp_path: Path):
    scan = _scan(tmp_path / "inbox")
    link = tmp_path / "inbox" / "link.png"
    link.symlink_to(scan.name)
    linked = needs_review(1, source=link, doc_id=identify(scan).document_id)
    replaced = tmp_path / "replaced.png"
    os.mkfifo(replaced)
    swapped = needs_review(2, source=replaced, doc_id=identify(scan).document_id)

    png = within(DEADLINE, lambda: page_png(linked, 1, tmp_path / "cache", IngestOptions()))
    nothing = within(DEADLINE, lambda: page_png(swapped, 1, tmp_path / "other-cache", IngestOptions()))

    assert png.startswith(b"\x89PNG") and nothing is None
