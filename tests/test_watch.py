"""The inbox watcher's rules: complete files only, once per content, debounced, durable.

These drive :class:`InboxWatcher` poll by poll on a clock the test moves, with real files
and the real event bodies; what the events are sent with is the one seam replaced (a list
that records them). Delivery to a real Prefect server, the trigger it feeds and a restart
against the server are in tests/test_deployments.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ocrflow.errors import ConfigurationError
from ocrflow.watch import STATE_NAME, UPLOADED_EVENT, InboxWatcher, WatchOptions
from tests.conftest import EXAMPLES

OPTIONS = WatchOptions(poll_seconds=1, settle_seconds=2, quiet_seconds=5, max_batch=3, max_wait_seconds=30)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A watcher on ``inbox`` whose sent events land in ``self.sent`` (one list per request)."""

    def __init__(self, inbox: Path, backfill: bool = False, fail: bool = False) -> None:
        self.clock = Clock()
        self.sent: list[list[dict]] = []
        self.fail = fail
        self.watcher = InboxWatcher(
            inbox, None, OPTIONS, backfill=backfill, send=self._send, clock=self.clock
        )

    def _send(self, events: list[dict]) -> None:
        if self.fail:
            import httpx

            raise httpx.ConnectError("server down")
        self.sent.append(events)

    def advance(self, seconds: float, step: float = 1.0) -> list:
        """Poll every ``step`` seconds for ``seconds``; return what was emitted."""
        emitted = []
        target = self.clock.now + seconds
        while self.clock.now < target:
            self.clock.now += step
            emitted += self.watcher.poll()
        return emitted

    def emitted_names(self) -> list[str]:
        return [Path(e["payload"]["path"]).name for batch in self.sent for e in batch]


def _drop(inbox: Path, example: str, name: str | None = None) -> Path:
    target = inbox / (name or example)
    shutil.copy(EXAMPLES / example, target)
    return target


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def test_files_present_at_start_are_left_alone_unless_backfill(inbox):
    _drop(inbox, "receipt_valid.png")
    quiet = Harness(inbox)
    assert quiet.advance(20) == [] and quiet.sent == []

    backfill = Harness(inbox, backfill=True)
    backfill.advance(20)
    assert backfill.emitted_names() == ["receipt_valid.png"]


def test_a_file_still_being_written_waits_until_its_size_is_stable(inbox):
    harness = Harness(inbox)
    data = (EXAMPLES / "receipt_valid.png").read_bytes()
    target = inbox / "receipt.png"
    for i in range(1, 6):  # written in five pieces, one second apart
        with target.open("ab") as handle:
            handle.write(data[(i - 1) * len(data) // 5 : i * len(data) // 5])
        os.utime(target, ns=(i * 10**9, i * 10**9))
        assert harness.advance(1) == []
    assert harness.advance(20)
    (event,) = harness.sent[0]
    assert event["payload"]["size"] == len(data)


def test_a_burst_becomes_one_batch_and_the_last_event_carries_every_path(inbox):
    harness = Harness(inbox)
    _drop(inbox, "receipt_valid.png")
    harness.advance(2)
    _drop(inbox, "bank_card_valid.png")
    harness.advance(2)  # still inside the quiet period: nothing sent yet
    assert harness.sent == []
    batch = harness.advance(10)
    assert [u.path.name for u in batch] == ["receipt_valid.png", "bank_card_valid.png"]
    (events,) = harness.sent
    assert {e["event"] for e in events} == {UPLOADED_EVENT}
    assert len({e["resource"]["ocrflow.batch.id"] for e in events}) == 1
    assert [e["resource"]["ocrflow.batch.final"] for e in events] == ["false", "true"]
    assert "paths" not in events[0]["payload"]
    assert [Path(p).name for p in events[1]["payload"]["paths"]] == [
        "receipt_valid.png",
        "bank_card_valid.png",
    ]
    assert events[1]["resource"]["prefect.resource.id"] == f"ocrflow.document.{batch[1].sha256}"
    assert events[1]["related"][0]["prefect.resource.role"] == "inbox"


def test_big_bursts_are_split_at_max_batch(inbox):
    harness = Harness(inbox)
    for example in (
        "receipt_valid.png",
        "bank_card_valid.png",
        "invoice_valid.png",
        "train_ticket_valid.png",
    ):
        _drop(inbox, example)
    harness.advance(20)
    assert [len(batch) for batch in harness.sent] == [3, 1]


def test_a_steady_trickle_is_still_sent_after_max_wait(inbox):
    harness = Harness(inbox)
    examples = ["receipt_valid.png", "bank_card_valid.png", "invoice_valid.png"]
    for i in range(12):  # a new file every 4 s never leaves a 5 s quiet period
        if i < len(examples):
            _drop(inbox, examples[i])
        else:
            (inbox / f"note{i}.png").write_bytes(os.urandom(100 + i))
        harness.advance(4)
        if harness.sent:
            break
    assert harness.sent, "nothing was sent although the first file waited past max_wait_seconds"
    assert harness.clock.now - 1000.0 <= OPTIONS.max_wait_seconds + OPTIONS.settle_seconds + 4


def test_the_same_content_under_another_name_is_sent_once(inbox):
    harness = Harness(inbox)
    _drop(inbox, "receipt_valid.png")
    _drop(inbox, "receipt_valid.png", "copy-in-same-burst.png")
    harness.advance(20)
    _drop(inbox, "receipt_valid.png", "copy-later.png")
    harness.advance(20)
    assert len(harness.emitted_names()) == 1


def test_temporary_and_hidden_files_are_ignored_until_renamed(inbox):
    harness = Harness(inbox)
    shutil.copy(EXAMPLES / "receipt_valid.png", inbox / "receipt.png.part")
    shutil.copy(EXAMPLES / "bank_card_valid.png", inbox / ".bank.png")
    harness.advance(20)
    assert harness.sent == []
    (inbox / "receipt.png.part").rename(inbox / "receipt.png")
    harness.advance(20)
    assert harness.emitted_names() == ["receipt.png"]


def test_a_restart_never_sends_a_document_again(inbox):
    first = Harness(inbox)
    _drop(inbox, "receipt_valid.png")
    first.advance(20)
    assert first.emitted_names() == ["receipt_valid.png"]
    state = json.loads((inbox / STATE_NAME).read_text())
    assert len(state["emitted"]) == 1

    # Restarted with --backfill, it looks at every file again: the emitted one stays quiet,
    # a file that arrived while it was down is sent.
    _drop(inbox, "bank_card_valid.png")
    second = Harness(inbox, backfill=True)
    second.advance(20)
    assert second.emitted_names() == ["bank_card_valid.png"]
    # Touched, renamed or copied, the same bytes are not news.
    os.utime(inbox / "receipt_valid.png")
    _drop(inbox, "receipt_valid.png", "renamed.png")
    second.advance(20)
    assert second.emitted_names() == ["bank_card_valid.png"]


def test_a_failed_send_keeps_the_batch_and_writes_no_state(inbox):
    harness = Harness(inbox, fail=True)
    _drop(inbox, "receipt_valid.png")
    import httpx

    with pytest.raises(httpx.ConnectError):
        harness.advance(20)
    assert not (inbox / STATE_NAME).exists()
    harness.fail = False
    harness.advance(2)
    assert harness.emitted_names() == ["receipt_valid.png"]
    assert (inbox / STATE_NAME).exists()


def test_an_unreadable_state_file_is_a_clear_error(inbox):
    (inbox / STATE_NAME).write_text("{not json")
    with pytest.raises(ConfigurationError, match="cannot be read"):
        Harness(inbox)


@pytest.mark.parametrize("command", [["watch", "INBOX"], ["setup"], ["serve"]])
def test_server_commands_need_a_prefect_server(inbox, command):
    # Without PREFECT_API_URL, Prefect would start a temporary server and setup would "succeed" on it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(inbox.parent / "prefect-home")
    done = subprocess.run(
        [Path(sys.executable).parent / "ocrflow", *[str(inbox) if a == "INBOX" else a for a in command]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "PREFECT_API_URL is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_only_regular_files_are_sent_and_a_link_loop_or_fifo_stops_nothing(inbox, tmp_path):
    _drop(inbox, "receipt_valid.png")
    (inbox / "loop.png").symlink_to("loop.png")
    os.mkfifo(inbox / "pipe.png")
    (inbox / "zero.png").symlink_to("/dev/zero")
    outside = _drop(tmp_path, "bank_card_valid.png")
    (inbox / "outside.png").symlink_to(outside)  # the inbox run refuses it; the watcher must not send it

    harness = Harness(inbox, backfill=True)
    harness.advance(20)

    assert harness.emitted_names() == ["receipt_valid.png"]
