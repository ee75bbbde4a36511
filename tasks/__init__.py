"""Prefect tasks: ocrflow's steps with names, retries and concurrency applied in one place."""

from __future__ import annotations

from tasks.stages import PrefectRunner, conclude_task, document_task, ingest_task, read_task

__all__ = ["PrefectRunner", "conclude_task", "document_task", "ingest_task", "read_task"]
