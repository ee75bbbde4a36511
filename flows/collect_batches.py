"""The Batch API's two flows: submit a backlog at half price, collect what came back.

``submit-batch`` (also ``process-documents`` with ``batch=true``, and ``ocrflow run --batch``)
prepares documents and submits them as batches; they stay pending with their batch id.
``collect-batches`` (scheduled) polls open batches and concludes each answered document through
the same extract -> validate -> ground -> route -> store path as a live answer; failed or
expired requests go back to pending with their reason. Both publish a summary artifact with
each batch's state and counts.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from ocrflow.batch_run import collect_run
from ocrflow.models import DocumentResult
from ocrflow.pipeline import context_for
from ocrflow.report import batch_cost_line, publish_batches
from ocrflow.results import write_index
from ocrflow.settings import Settings


@flow(name="collect-batches", validate_parameters=True)
def collect_batches(out: str = "ocrflow-out", settings: Settings | None = None) -> list[DocumentResult]:
    """Collect the finished batches of ``out``; every answered document is concluded and stored."""
    settings = (settings or Settings()).model_copy(update={"out_dir": Path(out)})
    ctx = context_for(settings)
    collected, results = collect_run(ctx)
    write_index(ctx.store)
    logger = get_run_logger()
    logger.info(
        "%d batches looked at, %d still open; %d documents concluded, %d back to pending",
        len(collected.batches),
        collected.still_open,
        len(results),
        len(collected.returned),
    )
    title = f"ocrflow batches: {len(results)} documents concluded"
    cost = batch_cost_line(results, ctx.engine.model, settings.cost) if results else ""
    publish_batches(title, results, collected.batches, collected.returned, cost)
    return results
