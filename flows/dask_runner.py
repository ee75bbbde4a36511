"""``process_documents`` on a Dask cluster, for CPU-bound local OCR across processes or machines.

The default flow runs a document's pages in threads of one process; RapidOCR and OpenCV
release the GIL for much of their work, but Python glue between them does not, and one
process cannot use a second machine. This is the same flow with prefect-dask's
``DaskTaskRunner``: each page's preprocess and OCR task runs in a Dask worker process
(each loads the OCR models once and keeps them, like a thread does).

- ``OCRFLOW_DASK_ADDRESS=tcp://scheduler:8786`` sends tasks to an existing cluster
  (``dask scheduler`` plus ``dask worker`` on each machine; workers need ocrflow installed,
  the same ``OCRFLOW_*`` settings, ``PREFECT_API_URL`` and the shared input/output folders);
- otherwise each run starts a local cluster of single-threaded worker processes,
  ``OCRFLOW_DASK_WORKERS`` of them (default: one per core).

Give each worker one onnxruntime thread (``OCRFLOW_LOCAL_ENGINE__THREADS=1``) so N
processes do not each start N threads. Task runs report to the Prefect server from the
worker processes, so this needs a server (``PREFECT_API_URL``), not ephemeral mode.
The environment is read when this module is imported, i.e. when a run starts.
"""

from __future__ import annotations

import os

from prefect_dask import DaskTaskRunner

from flows.process_documents import process_documents


def dask_task_runner(address: str | None = None, workers: int | None = None) -> DaskTaskRunner:
    """A runner on the cluster at ``address``, or on a local cluster of ``workers`` processes."""
    if address:
        return DaskTaskRunner(address=address)
    workers = workers or os.cpu_count() or 1
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )


process_documents_on_dask = process_documents.with_options(
    task_runner=dask_task_runner(
        os.environ.get("OCRFLOW_DASK_ADDRESS"), int(os.environ.get("OCRFLOW_DASK_WORKERS", "0")) or None
    )
)
