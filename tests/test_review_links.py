"""A link to a review item, taken from a real run's Prefect artifact, opens that item in the app."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.process_documents import process_documents
from ocrflow.ingest import identify
from ocrflow.review.app import create_app
from ocrflow.review.auth import Accounts
from ocrflow.settings import Settings
from ocrflow.store import ResultStore
from tests.conftest import examples_in
from tests.review_support import live_server, sign_in


@pytest.fixture(autouse=True)
def _server(prefect_server):
    return prefect_server


async def _summary(flow_run_id) -> str:
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["ocrflow-summary"]))
        )
    (summary,) = [a for a in artifacts if a.flow_run_id == flow_run_id]
    return summary.data


def test_a_link_in_a_runs_summary_artifact_opens_the_documents_review_item(tmp_path: Path):
    inbox = examples_in(tmp_path / "inbox", ["bank_card_valid.png", "bank_card_bad_luhn.png"])
    settings = Settings(out_dir=tmp_path / "out", review_url="http://review.example:8080/")
    state = process_documents(
        paths=[str(inbox)],
        out=str(settings.out_dir),
        doc_type="bank_card",
        settings=settings,
        return_state=True,
    )
    summary = asyncio.run(_summary(state.state_details.flow_run_id))
    links = re.findall(r"\[([^\]]+)\]\((http://review\.example:8080/[^)]+)\)", summary)
    assert [name for name, _ in links] == ["bank_card_bad_luhn.png"], summary

    store = ResultStore(settings.out_dir, settings.resolved_database_url())
    Accounts(store.engine).add_user("alice", "correct horse")
    (item,) = store.review_items()
    assert item.document_id == identify(inbox / "bank_card_bad_luhn.png").document_id
    with live_server(create_app(settings)) as base, httpx.Client() as client:
        sign_in(client, base)
        path = urlsplit(links[0][1]).path
        followed = client.get(base + path, follow_redirects=False)
        assert followed.status_code == 303 and followed.headers["location"] == f"/items/{item.id}"
        page = client.get(base + path, follow_redirects=True)
        assert page.status_code == 200 and str(page.url) == f"{base}/items/{item.id}"
        assert "bank_card_bad_luhn.png" in page.text and f"item {item.id}" in page.text
        unknown = client.get(base + "/items/" + "0" * 64)
        assert unknown.status_code == 404
    store.engine.dispose()


def test_the_scheduled_review_operations_run_announces_items_and_publishes_queue_health(tmp_path: Path):
    from flows.review_operations import review_operations
    from ocrflow.settings import ReviewOptions, ReviewRule
    from tests.review_support import needs_review

    settings = Settings(
        out_dir=tmp_path / "out",
        review=ReviewOptions(rules={"bank_card": ReviewRule(time_limit_minutes=60)}),
    )
    store = ResultStore(settings.out_dir, settings.resolved_database_url())
    store.save(needs_review(1))
    store.save(needs_review(2))
    store.engine.dispose()
    state = review_operations(out=str(settings.out_dir), settings=settings, return_state=True)
    assert state.result() == {"requested": 2, "overdue": 0}  # Prefect took both events
    again = review_operations(out=str(settings.out_dir), settings=settings)
    assert again == {"requested": 0, "overdue": 0}  # once per wait

    async def _health():
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["ocrflow-review-health"]))
            )
        return [a for a in found if a.flow_run_id == state.state_details.flow_run_id]

    (health,) = asyncio.run(_health())
    assert "| bank_card | 2 | 0 | 0 | 0 | 2 |" in health.data and "overdue: 0" in health.data
