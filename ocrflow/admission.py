"""Which documents a run submits, and what waits for the next run.

:class:`Admission` decides for each ingested document: skip it (already has an outcome, or
the same bytes came twice), submit it, or, with a token budget and a paid API engine, keep
it pending when its estimate does not fit. A document that does not fit while others are in
flight waits for them (:attr:`Verdict.WAIT`): what a document really costs is known when it
finishes. Pending documents are listed in ``<out>/pending.json`` and go first next run.

:class:`TokenBudget` reserves a document's image tokens plus, per page, the prompt and the
answer: :func:`~ocrflow.cost.first_page_allowance` (an upper bound) until documents of the
run have finished, then the most any finished page cost beyond its image.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from ocrflow import _imageio
from ocrflow.cost import document_tokens, first_page_allowance
from ocrflow.errors import ConfigurationError
from ocrflow.ingest import MissingInput, find_inputs
from ocrflow.models import DocumentResult, Frozen, IngestResult, Status
from ocrflow.ocr import choose_task
from ocrflow.preprocess import prepared_path
from ocrflow.store import now

if TYPE_CHECKING:
    from ocrflow.pipeline import Context, Job, Readings

log = logging.getLogger(__name__)


class Verdict(Enum):
    SUBMIT = "submit"
    SKIP = "skip"
    WAIT = "wait"
    """It does not fit now; finish a document in flight, then ask again."""
    PENDING = "pending"


class Admission:
    """One run's admission: what is done, what was seen, the token budget, what stays pending."""

    def __init__(
        self,
        ctx: Context,
        job: Job,
        *,
        reprocess: bool = False,
        logger: logging.Logger | logging.LoggerAdapter = log,
    ) -> None:
        self.ctx = ctx
        self.reprocess = reprocess
        self.log = logger
        settings = ctx.settings
        doctype = ctx.known_doctype(job.doc_type)
        limit = settings.cost.token_budget
        self.budget = TokenBudget(
            limit if limit is not None and ctx.bills_tokens else None,
            page_allowance=first_page_allowance(
                settings, choose_task(ctx.engine, doctype, job.task), doctype
            ),
        )
        self.waiting = read_pending(settings.out_dir)
        from ocrflow.batch import read_ledger  # batch records pending documents through this module

        self.in_batches = read_ledger(settings.out_dir).open_documents()
        """Documents submitted to a batch not collected yet."""
        self.pending: list[PendingDocument] = []
        """Documents this run left pending."""
        self.outstanding: list[PendingDocument] = []
        """Every document pending in the output folder once the run is closed, other runs' too."""
        self.skipped: set[str] = set()
        self.missing: list[MissingInput] = []
        """Paths the run was given that hold no document (a typo, a file gone since)."""
        self.seen: set[str] = set()
        self.claimed: set[str] = set()
        """Documents this run claimed (:meth:`ResultStore.claim`); released when it closes."""
        self.started = now()
        self._deciding: tuple[str, int] | None = None
        self._reserved: dict[str, tuple[int, int]] = {}

    @property
    def needs_pages(self) -> bool:
        """Whether documents are ingested whole before admission: a token budget estimates from the pages."""
        return self.budget.limit is not None

    def sources(self, paths: Iterable[Path]) -> list[Path]:
        """The run's files: what earlier runs left pending first (it has waited longest), then ``paths``."""
        inputs = find_inputs(
            [Path(p) for p in paths], follow_links_outside=self.ctx.settings.ingest.follow_links_outside
        )
        for missing in inputs.missing:
            self.log.warning("%s; the other documents go on", missing.message)
        self.missing = inputs.missing
        given = inputs.files
        resolved = {os.path.realpath(source) for source in given}  # resolve() raises on a link loop
        earlier = [
            doc.path
            for doc in self.waiting
            if doc.path.is_file() and os.path.realpath(doc.path) not in resolved
        ]
        sources = list(dict.fromkeys(earlier)) + given
        self.log.info("found %d documents", len(sources))
        return sources

    def admit(self, ingested: IngestResult, *, busy: bool) -> Verdict:
        """Decide for one document; ``busy``: whether documents are in flight (see :attr:`Verdict.WAIT`)."""
        document_id = ingested.source.document_id
        if self._deciding is None or self._deciding[0] != document_id:
            if self._done(ingested):
                return Verdict.SKIP
            self.seen.add(document_id)
            estimate = (
                document_tokens(ingested.pages, self.ctx.engine.model, self.ctx.settings.cost)
                if self.budget.limit is not None
                else 0
            )
            self._deciding = (document_id, estimate)
        estimate = self._deciding[1]
        tokens = self.budget.expected(estimate, len(ingested.pages))
        if self.budget.reserve(tokens):
            self._reserved[document_id] = (tokens, estimate)
            self._deciding = None
            return Verdict.SUBMIT
        if busy:
            return Verdict.WAIT
        self._deciding = None
        self.log.warning(
            "token budget reached: %s (about %d tokens) stays pending for the next run",
            ingested.source.path.name,
            tokens,
        )
        path = ingested.source.path.resolve()
        self.pending.append(PendingDocument(path=path, document_id=document_id, estimated_tokens=tokens))
        return Verdict.PENDING

    def _done(self, ingested: IngestResult) -> bool:
        document_id = ingested.source.document_id
        # A rejected document is tried again: an engine outage must not leave it rejected for good.
        done_before = self.ctx.store.status_of(document_id) in (Status.ACCEPTED, Status.NEEDS_REVIEW)
        if document_id in self.seen or (done_before and not self.reprocess):
            self.log.info("%s already processed (%s); skipping", ingested.source.path.name, document_id[:12])
            self.skipped.add(document_id)
            return True
        if document_id in self.in_batches:
            # Its answer is paid for and on its way: reading it now would pay twice.
            self.log.info("%s waits on a batch (%s); skipping", ingested.source.path.name, document_id[:12])
            self.skipped.add(document_id)
            return True
        return self._taken(ingested)

    def _taken(self, ingested: IngestResult) -> bool:
        """Whether another run is working on the document, or stored it since this run began.

        Claiming it otherwise, so no other run reads it until its outcome is stored (or this
        run ends without it, :meth:`close`).
        """
        document_id, name = ingested.source.document_id, ingested.source.path.name
        store = self.ctx.store
        if not store.claim(document_id):
            self.log.info("%s is being processed by another run (%s); skipping", name, document_id[:12])
            self.skipped.add(document_id)
            return True
        self.claimed.add(document_id)
        stored_at = store.stored_at(document_id)
        if stored_at is not None and stored_at >= self.started:
            self.log.info("%s was processed by another run meanwhile (%s); skipping", name, document_id[:12])
            store.release([document_id])
            self.skipped.add(document_id)
            return True
        return False

    def settle(self, readings: Readings, result: DocumentResult) -> None:
        """Count what a finished document really cost against the budget, in place of its reservation."""
        tokens, estimate = self._reserved.pop(result.document_id, (0, 0))
        pages = readings.ingested.pages
        self.budget.record(
            result.usage.input_tokens + result.usage.output_tokens + self._unanswered(readings),
            reserved=tokens,
            image_tokens=estimate,
            pages=len(pages),
        )

    def _unanswered(self, readings: Readings) -> int:
        """Tokens billed for the document's answers the service cut off and no retry replaced."""
        engine = self.ctx.api_engine
        if engine is None:
            return 0
        pages = readings.ingested.pages
        # A page went to OCR as ingested, or as preprocess rewrote it.
        images = [page.path for page in pages] + [prepared_path(page) for page in pages]
        usage = engine.take_unanswered(images)
        return usage.input_tokens + usage.output_tokens

    def close(self) -> list[PendingDocument]:
        """Write what stays pending for the next run; return every document pending in the output folder."""
        self.ctx.store.release(self.claimed)
        gone = {doc.document_id for doc in self.waiting if not doc.path.is_file()}
        self.outstanding = write_pending(
            self.ctx.settings.out_dir, self.pending, submitted=self.seen | gone | self.skipped
        )
        if self.skipped:
            self.log.info("%d documents were skipped as already processed", len(self.skipped))
        if self.pending:
            self.log.warning(
                "%d documents are pending (token budget reached); the next run takes them first",
                len(self.pending),
            )
        return self.outstanding


class TokenBudget:
    """A per-run token allowance shared by every worker thread.

    A document first :meth:`reserve` s what it is :meth:`expected` to cost; when its calls
    return, :meth:`record` replaces the reservation with the tokens actually billed (input +
    output; none if nothing was sent). ``limit=None`` means no limit.

    The expectation is the document's image tokens (exact) plus, per page, ``page_allowance``
    (an upper bound for the prompt and the answer) until a document has finished, then the most
    any finished document paid per page beyond its images. So the first documents cannot go
    over, and later ones only by how much more a page in flight costs than any page before it.
    """

    def __init__(self, limit: int | None, *, page_allowance: int = 0) -> None:
        if limit is not None and limit < 0:
            raise ConfigurationError(f"a token budget cannot be negative ({limit})")
        self.limit = limit
        self.page_allowance = page_allowance
        self._spent = 0
        self._reserved = 0
        self._measured_per_page: int | None = None
        self._lock = threading.Lock()

    def expected(self, image_tokens: int, pages: int) -> int:
        """What a document of ``pages`` pages and ``image_tokens`` should cost, prompt and answer included."""
        with self._lock:
            per_page = self.page_allowance if self._measured_per_page is None else self._measured_per_page
            return image_tokens + pages * per_page

    def reserve(self, tokens: int) -> bool:
        """Hold ``tokens`` for a document if they fit in what is left; False leaves it pending."""
        with self._lock:
            if self.limit is not None and self._spent + self._reserved + tokens > self.limit:
                return False
            self._reserved += tokens
            return True

    def record(self, actual: int, *, reserved: int = 0, image_tokens: int = 0, pages: int = 0) -> None:
        """Count ``actual`` tokens as spent, releasing the ``reserved`` estimate they replace.

        ``image_tokens`` and ``pages`` say what was sent, so the document's cost beyond its
        images sizes the next reservations.
        """
        with self._lock:
            self._reserved = max(0, self._reserved - reserved)
            self._spent += actual
            if actual and pages:
                # Documents that paid nothing (cached, failed before sending) say nothing of the rest.
                per_page = math.ceil(max(0, actual - image_tokens) / pages)
                self._measured_per_page = max(self._measured_per_page or 0, per_page)

    @property
    def spent(self) -> int:
        with self._lock:
            return self._spent

    @property
    def reserved(self) -> int:
        with self._lock:
            return self._reserved

    @property
    def remaining(self) -> int | None:
        """Tokens neither spent nor reserved; ``None`` without a limit."""
        with self._lock:
            if self.limit is None:
                return None
            return max(0, self.limit - self._spent - self._reserved)


# --- documents left pending ---------------------------------------------------------------------

PENDING_FILE = "pending.json"


class PendingDocument(Frozen):
    """A document waiting for the next run; ``reason`` says why when a batch gave it back.

    A run leaves a document pending when its estimate does not fit the token budget; a batch
    collection returns one whose request failed or expired (:mod:`ocrflow.batch`).
    """

    path: Path
    document_id: str
    estimated_tokens: int
    reason: str | None = None


def read_pending(out_dir: Path) -> list[PendingDocument]:
    """The documents earlier runs writing to ``out_dir`` left pending; none if the list is unreadable."""
    try:
        entries = json.loads((Path(out_dir) / PENDING_FILE).read_text())
        return [PendingDocument.model_validate(entry) for entry in entries]
    except (OSError, ValueError):
        return []


def write_pending(
    out_dir: Path, pending: Sequence[PendingDocument], *, submitted: Iterable[str] = ()
) -> list[PendingDocument]:
    """Update ``<out>/pending.json``: drop the ``submitted`` document ids, add ``pending``; return the list.

    Entries of other runs are kept, so two runs sharing an output folder do not lose each
    other's pending documents; the file is removed when nothing is left.
    """
    path = Path(out_dir) / PENDING_FILE
    gone = set(submitted) | {document.document_id for document in pending}
    kept = [document for document in read_pending(out_dir) if document.document_id not in gone]
    merged = kept + list(pending)
    if not merged:
        path.unlink(missing_ok=True)
        return []
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps([document.model_dump(mode="json") for document in merged], indent=2)
    _imageio.write_atomically(path, data.encode())
    return merged
