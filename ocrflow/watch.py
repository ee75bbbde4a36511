"""``ocrflow watch``: turn files landing in an inbox folder into ``ocrflow.document.uploaded`` events.

Prefect's incoming webhooks exist only in Prefect Cloud; on a self-hosted server this
watcher is the event source for the ``process-upload`` deployment.

How a file becomes an event:

1. **Complete.** A file counts once its size and modification time have not changed for
   ``settle_seconds`` (polled every ``poll_seconds``), so a file still being copied in is
   left alone. Hidden files and unsupported extensions (``.part``, ``.tmp``, ...) are
   ignored, so an uploader that writes a temporary name and renames it is seen once, whole.
   So is anything but a regular file (links, FIFOs, sockets): the ``process-inbox`` run
   gives those their reasons.
2. **Once per content.** A complete file is hashed (SHA-256, the document id); a hash that
   was already emitted, under any name, is not emitted again.
3. **Debounced into bursts.** Complete files gather into a batch until no file has appeared
   or changed for ``quiet_seconds`` (or the batch holds ``max_batch`` files, or its first
   file has waited ``max_wait_seconds``). The batch is then posted in one request: one event
   per file, sharing ``ocrflow.batch.id``; the last is labelled ``ocrflow.batch.final=true``
   and carries every path of the batch in ``payload.paths``, and only it matches the
   ``process-upload`` trigger, so a burst of 50 uploads is one run of 50 documents.
4. **Durable.** Emitted hashes are written to a state file (atomically) only after the
   server accepted the events, so a restart never re-emits and a failed post is retried.

Files already in the inbox when the watcher starts are left to the ``process-inbox``
schedule unless ``backfill`` is set (then those not emitted before are emitted).
"""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ocrflow.cache import file_sha256
from ocrflow.errors import ConfigurationError
from ocrflow.ingest import SUPPORTED_SUFFIXES
from ocrflow.prefect_setup import require_prefect_api
from ocrflow.store import write_json_atomically

UPLOADED_EVENT = "ocrflow.document.uploaded"
STATE_NAME = ".ocrflow-watch.json"


@dataclass(frozen=True)
class WatchOptions:
    poll_seconds: float = 1.0
    settle_seconds: float = 2.0
    """How long a file's size and mtime must stay unchanged before it counts as complete."""
    quiet_seconds: float = 5.0
    """A burst ends when nothing new has appeared or changed for this long."""
    max_batch: int = 100
    max_wait_seconds: float = 60.0
    """A steady trickle still starts a run this often."""


@dataclass(frozen=True)
class Upload:
    path: Path
    sha256: str
    size: int


@dataclass
class _Seen:
    signature: tuple[int, int]
    since: float


@dataclass
class WatchState:
    """The hashes already emitted, kept in a JSON file beside (or anywhere outside) the inbox."""

    path: Path
    emitted: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> WatchState:
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"the watch state file {path} cannot be read ({exc}); move it away"
            ) from exc
        return cls(path, dict(data.get("emitted", {})))

    def record(self, uploads: list[Upload], batch_id: str) -> None:
        now = datetime.now(UTC).isoformat()
        for upload in uploads:
            self.emitted[upload.sha256] = {"path": str(upload.path), "batch_id": batch_id, "at": now}
        write_json_atomically(self.path, json.dumps({"version": 1, "emitted": self.emitted}, indent=1))


def batch_events(uploads: list[Upload], inbox: Path, batch_id: str) -> list[dict]:
    """The events of one batch as the server's ``POST /events`` takes them."""
    from prefect.events import Event

    events = []
    for index, upload in enumerate(uploads, start=1):
        final = index == len(uploads)
        payload = {
            "path": str(upload.path),
            "sha256": upload.sha256,
            "size": upload.size,
            "batch_id": batch_id,
            "batch_size": len(uploads),
        }
        if final:
            payload["paths"] = [str(u.path) for u in uploads]
        event = Event(
            event=UPLOADED_EVENT,
            resource={
                "prefect.resource.id": f"ocrflow.document.{upload.sha256}",
                "prefect.resource.name": upload.path.name,
                "ocrflow.batch.id": batch_id,
                "ocrflow.batch.final": "true" if final else "false",
            },
            related=[{"prefect.resource.id": f"ocrflow.inbox.{inbox}", "prefect.resource.role": "inbox"}],
            payload=payload,
        )
        events.append(event.model_dump(mode="json"))
    return events


def post_events(events: list[dict]) -> None:
    """Send events to the Prefect server and wait for it to accept them (raises if it does not)."""
    from prefect.client.orchestration import get_client

    require_prefect_api("the watcher's events")
    with get_client(sync_client=True) as client:
        client.request("POST", "/events", json=events)


class InboxWatcher:
    """Polls ``inbox``; call :meth:`poll` repeatedly (or :meth:`run`) to emit complete new files."""

    def __init__(
        self,
        inbox: Path,
        state_path: Path | None = None,
        options: WatchOptions | None = None,
        backfill: bool = False,
        send: Callable[[list[dict]], None] = post_events,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not inbox.is_dir():
            raise ConfigurationError(f"{inbox} is not a folder")
        self.inbox = inbox.resolve()
        self.state = WatchState.load(state_path or self.inbox / STATE_NAME)
        self.options = options or WatchOptions()
        self.send = send
        self.clock = clock
        self._seen: dict[Path, _Seen] = {}
        self._handled: dict[Path, tuple[int, int]] = {}
        self._batch: list[Upload] = []
        self._batch_started = 0.0
        self._last_activity = clock()
        if not backfill:
            # Files present now are the scheduled inbox run's business, not new uploads.
            self._handled = {path: signature for path, signature in self._scan()}

    def _scan(self) -> Iterator[tuple[Path, tuple[int, int]]]:
        for root, dirs, names in os.walk(self.inbox):
            dirs[:] = [name for name in dirs if not name.startswith(".")]
            for name in names:
                if name.startswith(".") or Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
                    continue
                path = Path(root, name)
                try:
                    info = path.lstat()
                except OSError:  # removed between listing and lstat
                    continue
                # Only regular files: a FIFO or a link to /dev/zero would hang the hashing, and a
                # link is the scheduled inbox run's to judge (links leaving the inbox are not followed).
                if stat.S_ISREG(info.st_mode):
                    yield path, (info.st_size, info.st_mtime_ns)

    def poll(self) -> list[Upload]:
        """One look at the inbox; returns the batch it emitted, if it emitted one."""
        now = self.clock()
        present = set()
        for path, signature in self._scan():
            present.add(path)
            if self._handled.get(path) == signature:
                continue
            seen = self._seen.get(path)
            if seen is None or seen.signature != signature:
                self._seen[path] = _Seen(signature, now)
                self._last_activity = now
            elif now - seen.since >= self.options.settle_seconds and signature[0] > 0:
                self._accept(path, signature, now)
        for gone in set(self._seen) - present:
            del self._seen[gone]
        return self._maybe_emit(now)

    def _accept(self, path: Path, signature: tuple[int, int], now: float) -> None:
        del self._seen[path]
        self._handled[path] = signature
        try:
            digest = file_sha256(path)
        except FileNotFoundError:
            return
        if digest in self.state.emitted or any(u.sha256 == digest for u in self._batch):
            return
        if not self._batch:
            self._batch_started = now
        self._batch.append(Upload(path, digest, signature[0]))
        self._last_activity = now

    def _maybe_emit(self, now: float) -> list[Upload]:
        if not self._batch:
            return []
        options = self.options
        due = (
            now - self._last_activity >= options.quiet_seconds
            or len(self._batch) >= options.max_batch
            or now - self._batch_started >= options.max_wait_seconds
        )
        if not due:
            return []
        batch = self._batch[: options.max_batch]
        batch_id = uuid.uuid4().hex
        # If the server refuses or is down this raises, and the batch stays pending for the next poll.
        self.send(batch_events(batch, self.inbox, batch_id))
        self._batch = self._batch[options.max_batch :]
        self.state.record(batch, batch_id)
        if self._batch:
            self._batch_started = now
        return batch

    def run(
        self,
        on_batch: Callable[[list[Upload]], None] = lambda batch: None,
        on_error: Callable[[Exception], None] = lambda exc: None,
    ) -> None:
        """Poll until interrupted; a server that cannot be reached is tried again on the next poll."""
        import httpx

        while True:
            try:
                if batch := self.poll():
                    on_batch(batch)
            except httpx.HTTPError as exc:  # Prefect's status errors are httpx's too
                on_error(exc)
            time.sleep(self.options.poll_seconds)
