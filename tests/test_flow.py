"""The Prefect flow under prefect_test_harness: outcomes, names and artifacts a person monitors."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.process_documents import process_documents
from ocrflow.models import Status
from ocrflow.settings import Settings
from tests.conftest import examples_in, task_run_names


@pytest.fixture(autouse=True)
def _server(prefect_server):
    return prefect_server


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    names = ("cn_id_card_valid.png", "cn_id_card_bad_checksum.png", "receipt_pages.pdf")
    folder = examples_in(tmp_path / "inbox", names)
    examples_in(folder, {"same_card_again.png": "cn_id_card_valid.png"})
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


async def _artifacts(key: str):
    async with get_client() as client:
        return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def test_flow_processes_a_folder_and_never_loses_a_document(inbox: Path, tmp_path: Path):
    out = tmp_path / "out"
    state = process_documents(paths=[str(inbox)], out=str(out), return_state=True)
    results = state.result()
    by_name = {Path(r.source).name: r for r in results}

    # The duplicate (same bytes as the valid card) is processed once.
    assert sorted(by_name) == [
        "broken.jpg",
        "cn_id_card_bad_checksum.png",
        "cn_id_card_valid.png",
        "receipt_pages.pdf",
    ]
    assert by_name["cn_id_card_valid.png"].status is Status.ACCEPTED
    assert by_name["cn_id_card_bad_checksum.png"].status is Status.NEEDS_REVIEW
    assert by_name["broken.jpg"].status is Status.REJECTED
    assert [p.page_number for p in by_name["receipt_pages.pdf"].pages] == [1, 2]
    assert len(list(out.glob("*.json"))) == 4

    names = task_run_names(state.state_details.flow_run_id)
    # A document read in one go is one task run; a PDF's pages are read apart, then stored.
    assert "document cn_id_card_valid.png" in names and "document broken.jpg" in names
    assert "ocr receipt_pages.pdf p2" in names and "store receipt_pages.pdf" in names
    assert not [name for name in names if name.startswith(("ingest ", "ocr cn_id", "store cn_id"))]

    (table,) = [
        a
        for a in asyncio.run(_artifacts("ocrflow-outcomes"))
        if a.flow_run_id == state.state_details.flow_run_id
    ]
    assert "110101199003071233" not in str(table.data), "ID numbers are masked in artifacts"
    assert "**************1233" in str(table.data)
    (summary,) = [
        a
        for a in asyncio.run(_artifacts("ocrflow-summary"))
        if a.flow_run_id == state.state_details.flow_run_id
    ]
    assert "| needs_review | 2 |" in summary.data and "| rejected | 1 |" in summary.data


def test_second_run_skips_what_is_already_stored(inbox: Path, tmp_path: Path):
    out = tmp_path / "out"
    first = process_documents(paths=[str(inbox / "cn_id_card_valid.png")], out=str(out))
    again = process_documents(paths=[str(inbox / "cn_id_card_valid.png")], out=str(out))
    redone = process_documents(paths=[str(inbox / "cn_id_card_valid.png")], out=str(out), reprocess=True)
    assert len(first) == 1 and again == [] and len(redone) == 1
    assert redone[0].document_id == first[0].document_id


def test_a_workers_task_threads_setting_sizes_the_flows_thread_pool():
    # Read when the flow is imported, as a worker does for each run: in a pod, os.cpu_count() is the node's.
    code = "from flows.process_documents import process_documents as f; print(f.task_runner._max_workers)"
    env = {**os.environ, "OCRFLOW_TASK_THREADS": "7"}
    threads = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert threads.stdout.split()[-1] == "7"
    assert Settings().flow_threads >= 2
