"""Batch runs: a run's documents go by the Batch API; a later run collects what came back.

:func:`submit_run` is a run like any other up to reading: discover, ingest, admit (skip what is
done or already waiting on a batch; the token budget), prepare the pages; then, instead of
reading them now, it hands the documents to :func:`ocrflow.batch.submit`. They stay pending,
with their batch id in ``<out>/batches.json``, until :func:`collect_run` (the scheduled
``collect-batches`` deployment, or ``ocrflow batches collect``) feeds each answer into
:func:`ocrflow.pipeline.conclude`: the same extract -> validate -> ground -> route -> store path
as a live answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ocrflow import batch
from ocrflow.admission import Admission, Verdict
from ocrflow.cache import CachedEngine
from ocrflow.errors import ConfigurationError
from ocrflow.ingest import ingest
from ocrflow.models import DocumentResult, Frozen, Stage
from ocrflow.ocr import check_task
from ocrflow.pipeline import Context, Job, Readings, conclude, failure_reason
from ocrflow.preprocess import preprocess
from ocrflow.report import publish_batches


class SubmittedRun(Frozen):
    """What a batch-mode run did: the batches it created and the documents it concluded at once."""

    submissions: tuple[batch.Submission, ...] = ()
    concluded: tuple[DocumentResult, ...] = ()
    """Documents that could not be sent (no page could be prepared): stored now, as rejected."""
    waiting: tuple[str, ...] = ()
    """Documents skipped because they already wait on a batch."""


def batch_client(ctx: Context) -> batch.BatchClient:
    """The Batch API client for the run's engine: the ``openai`` engine (DashScope's compatible mode)."""
    from ocrflow.engines.openai_compat import OpenAICompatEngine  # its SDK's import: ~0.8 CPU-s

    engine = ctx.engine.engine if isinstance(ctx.engine, CachedEngine) else ctx.engine
    if not isinstance(engine, OpenAICompatEngine):
        raise ConfigurationError(
            "batch mode uses the OpenAI-compatible Batch API: set OCRFLOW_ENGINE=openai "
            "(DashScope's compatible mode serves qwen-vl-ocr by Batch in the beijing region)"
        )
    return batch.BatchClient(engine)


def submit_run(ctx: Context, admission: Admission, sources: Sequence[Path], job: Job) -> SubmittedRun:
    """Admit and prepare ``sources``, then submit them as batches; nothing is read now."""
    settings = ctx.settings
    client = batch_client(ctx)
    doctype = ctx.known_doctype(job.doc_type)
    task = check_task(ctx.engine, doctype, job.task)
    waiting = batch.read_ledger(settings.out_dir).open_documents()
    documents, concluded, skipped = [], [], []
    for source in sources:
        ingested = ingest(Path(source), settings.work_dir, settings.ingest)
        document_id = ingested.source.document_id
        if document_id in waiting:
            skipped.append(document_id)
            continue
        if admission.admit(ingested, busy=False) is not Verdict.SUBMIT:
            continue
        pages, failures = [], []
        for page in ingested.pages:
            try:
                pages.append(preprocess(page, ctx.preprocess_options))
            except Exception as exc:  # noqa: BLE001 - a page that cannot be prepared is a reason
                failures.append(failure_reason(Stage.PREPROCESS, page.page_number, exc))
        if not pages:
            concluded.append(conclude(ctx, Readings(ingested=ingested, failures=tuple(failures)), job))
            continue
        documents.append(
            batch.Document(ingested=ingested, pages=pages, doctype=doctype, doc_type=job.doc_type)
        )
    submissions = batch.submit(
        settings.out_dir, client, documents, task, independent_reading=settings.verify.independent_reading
    )
    return SubmittedRun(submissions=tuple(submissions), concluded=tuple(concluded), waiting=tuple(skipped))


def collect_run(ctx: Context) -> tuple[batch.Collected, list[DocumentResult]]:
    """Poll the output folder's open batches; conclude what came back, like a live answer."""
    results: list[DocumentResult] = []

    def conclude_one(record: batch.DocumentRecord, readings: list) -> None:
        job = Job(doc_type=record.doc_type, task=record.task)
        readings_ = Readings(ingested=record.ingested, pages=tuple(record.pages), ocr=tuple(readings))
        results.append(conclude(ctx, readings_, job))

    ledger = batch.read_ledger(ctx.settings.out_dir)
    if all(sub.state == "finished" for sub in ledger.submissions):
        return batch.Collected(), results  # nothing to poll: no client, no key, no engine needed
    collected = batch.collect(ctx.settings.out_dir, batch_client(ctx), conclude_one)
    return collected, results


def publish_submitted(run: SubmittedRun) -> None:
    """The submitting flow's artifact: the batches it created."""
    documents = sum(len(sub.documents) for sub in run.submissions)
    publish_batches(
        f"ocrflow: {documents} documents submitted by Batch", list(run.concluded), run.submissions
    )
