from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from PIL import Image

from ocrflow.doctypes import load_doctypes
from ocrflow.engines.rapid import RapidOcrEngine
from ocrflow.models import IngestResult, OcrLine, OcrResult, OcrTask, PageRef, SourceRef
from ocrflow.settings import Settings
from tests.prefect_servers import PostgresUnreachable, fresh_postgres_schema

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
EVAL_DEV = Path(os.environ.get("OCRFLOW_EVAL_DEV", ROOT.parent / "shared" / "eval-dev"))


def examples_in(folder: Path, names: Iterable[str] | Mapping[str, str]) -> Path:
    """``folder`` holding copies of bundled examples: their names, or new names mapped to them."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = names.items() if isinstance(names, Mapping) else ((name, name) for name in names)
    for target, source in pairs:
        shutil.copy(EXAMPLES / source, folder / target)
    return folder


def blank_page(folder: Path, width: int = 800, height: int = 600, name: str = "page.png") -> Path:
    """A white PNG page: for tests where what the page shows does not matter."""
    path = folder / name
    Image.new("RGB", (width, height), "white").save(path)
    return path


def text_reading(*lines: OcrLine) -> OcrResult:
    """Page 1 read as text: ``lines``, and their texts joined as the embedded engine joins them."""
    return OcrResult(
        engine="t",
        model="t",
        task=OcrTask.TEXT_RECOGNITION,
        page_number=1,
        lines=lines,
        text="\n".join(line.text for line in lines),
    )


def one_page_ingest(document_id: str = "d", width: int = 10, height: int = 10) -> IngestResult:
    """A one-page image as ingest describes it, for the stages after OCR (no file is read)."""
    source = SourceRef(path=Path("/in/page.png"), document_id=document_id, size=1, media_type="image/png")
    page = PageRef(
        document_id=document_id, page_number=1, path=Path("/w/1.png"), sha256="0", width=width, height=height
    )
    return IngestResult(source=source, pages=(page,), page_count=1)


def task_run_names(flow_run_id) -> list[str]:
    """The names of a flow run's task runs, from the Prefect API the test runs against."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> list[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        return [run.name for run in runs]

    return asyncio.run(read())


def eval_dev(relative: str) -> Path:
    path = EVAL_DEV / relative
    if not path.exists():
        pytest.skip(f"eval-dev document {relative} is not at {EVAL_DEV}")
    return path


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (a few seconds to start) for every test that runs a flow."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def engine() -> RapidOcrEngine:
    return RapidOcrEngine()


@pytest.fixture(scope="session")
def doctypes():
    return load_doctypes()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(out_dir=tmp_path / "out")


@pytest.fixture
def postgres_url() -> str:
    """A fresh PostgreSQL schema on the machine's server, dropped afterwards."""
    try:
        with fresh_postgres_schema("ocrflow_test") as url:
            yield url
    except PostgresUnreachable as exc:
        pytest.fail(str(exc))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path: Path) -> str:
    """Each test that takes it runs twice: on a SQLite file and on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite3'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def fake_dashscope():
    """The loopback fake of DashScope's native and compatible APIs, on a random port for one test."""
    from tests.fake_dashscope import FakeDashScope

    with FakeDashScope() as fake:
        yield fake


class CountsModels:
    """Mixin for an engine whose models come from a loader ``_load`` (a ``ModelPool``'s): counts
    the models it loads and the most calls to them running at once."""

    def __init__(self, *args, **kwargs) -> None:
        self.loaded = self.running = self.most_running = 0
        self.lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def _load(self):
        model = super()._load()
        with self.lock:
            self.loaded += 1

        def counted(*args, **kwargs):
            with self.lock:
                self.running += 1
                self.most_running = max(self.most_running, self.running)
            try:
                return model(*args, **kwargs)
            finally:
                with self.lock:
                    self.running -= 1

        return counted
