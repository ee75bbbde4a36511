"""Prefect tasks: ocrflow's stage functions with retries, names and concurrency applied in one place."""

from __future__ import annotations

from tasks.stages import (
    context_for,
    finish_task,
    ingest_task,
    interpret_task,
    preprocess_task,
    recognize_document_task,
    recognize_task,
)

__all__ = [
    "context_for",
    "finish_task",
    "ingest_task",
    "interpret_task",
    "preprocess_task",
    "recognize_document_task",
    "recognize_task",
]
