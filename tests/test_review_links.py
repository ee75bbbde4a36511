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
