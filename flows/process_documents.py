"""The ``process_documents`` flow: ingest -> preprocess -> OCR -> extract+validate -> route+store.

The flow only orchestrates, reading top to bottom: decide what the run takes, run each
document's steps as Prefect tasks (:func:`ocrflow.pipeline.run_documents`: admit -> submit
-> collect -> conclude, pages in parallel), then publish what a person monitoring it reads.
Every document ends accepted, needs_review or rejected, with a stored record, even when
its tasks fail; with a token budget, one that does not fit stays pending for the next run.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from ocrflow.batch_run import publish_submitted, submit_run
from ocrflow.models import DocumentResult, OcrTask
from ocrflow.pipeline import AUTO, Job, close_run, context_for, open_run, run_documents
from ocrflow.report import RunMonitor, documents_flow_run_name
from ocrflow.settings import Settings
from tasks import PrefectRunner


@flow(
    name="process-documents",
    flow_run_name=documents_flow_run_name,
    # Read when a worker imports the flow, so each worker's OCRFLOW_TASK_THREADS applies.
    task_runner=ThreadPoolTaskRunner(max_workers=Settings().flow_threads),
    validate_parameters=True,
)
def process_documents(
    paths: list[str],
    out: str = "ocrflow-out",
    doc_type: str = AUTO,
    reprocess: bool = False,
    settings: Settings | None = None,
    task: OcrTask | None = None,
    batch: bool = False,
) -> list[DocumentResult]:
    """Process files or folders of documents; every document ends accepted, needs_review or rejected.

    ``task`` reads every document with that Qwen-OCR task (e.g. ``table_parsing``). ``batch``
    submits the documents by the Batch API at half price instead: they stay pending with their
    batch id until the ``collect-batches`` flow concludes them.
    """
    settings = (settings or Settings()).model_copy(update={"out_dir": Path(out)})
    ctx, job = context_for(settings), Job(doc_type=doc_type, task=task)
    admission, sources = open_run(ctx, job, paths, reprocess=reprocess, logger=get_run_logger())
    if batch:
        submitted = submit_run(ctx, admission, sources, job)
        close_run(ctx, admission)
        publish_submitted(submitted)
        return list(submitted.concluded)
    runner = PrefectRunner(settings)
    monitor = RunMonitor(ctx, admission, total=len(sources))

    results = run_documents(ctx, runner, admission, sources, job, on_result=monitor.finished)

    monitor.publish(results, admission.outstanding)
    return results
