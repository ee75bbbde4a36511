"""``GET /health``: the queue's health where reviewers and their leads look."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ocrflow.review.operations import (
    AGE_BUCKETS,
    CONFIDENCE_BANDS,
    MIN_SAMPLES,
    OLDEST_BUCKET,
    TARGET_ACCURACY,
    band_labels,
    queue_health,
    waiting_rows,
)
from ocrflow.review.web.deps import Reviewer, Services, render

router = APIRouter()


@router.get("/health", response_class=HTMLResponse)
def health_page(request: Request, user: Reviewer, review: Services) -> HTMLResponse:
    health = queue_health(review.queue)
    bands = CONFIDENCE_BANDS[:-1]
    accuracy = [
        {
            "type": doc_type,
            "field": name,
            "cells": [
                (
                    verdict.right[b],
                    verdict.total[b],
                    100 * verdict.right[b] / verdict.total[b] if verdict.total[b] else None,
                )
                for b in bands
            ],
            "suggested": verdict.suggested_threshold(),
        }
        for doc_type, fields in sorted(health.fields.items())
        for name, verdict in sorted(fields.items())
    ]
    return render(
        request,
        review,
        "health.html",
        user,
        health=health,
        buckets=[label for _, label in AGE_BUCKETS] + [OLDEST_BUCKET],
        waiting=waiting_rows(health),
        bands=band_labels(),
        accuracy=accuracy,
        handling=health.handling(),
        target=TARGET_ACCURACY,
        min_samples=MIN_SAMPLES,
    )
