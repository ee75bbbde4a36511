"""The API engines share Prefect's global rate limit inside a flow run, and say once when it is missing."""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from itertools import pairwise
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from flows.process_documents import process_documents
from ocrflow.engines.dashscope import DashScopeEngine
from ocrflow.models import OcrTask
from ocrflow.settings import ApiLimits, DashScopeOptions, Settings
from tests.conftest import EXAMPLES, examples_in

PAGES = ("receipt_valid.png", "invoice_valid.png", "train_ticket_valid.png", "bank_card_valid.png")


@pytest.fixture(autouse=True)
def _server(prefect_server, monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-rate")


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return examples_in(tmp_path / "inbox", PAGES)


def settings_for(fake, limits: ApiLimits) -> Settings:
    return Settings(
        engine="dashscope", dashscope=DashScopeOptions(base_url=fake.native_url), api_limits=limits
    )


async def _create(limits: ApiLimits) -> None:
    async with get_client() as client:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(
                name=limits.name, limit=limits.burst, slot_decay_per_second=limits.slot_decay_per_second
            )
        )


def _warnings(caplog, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and name in r.getMessage()]


def test_requests_keep_to_the_shared_rate(inbox: Path, tmp_path: Path, fake_dashscope, caplog):
    limits = ApiLimits(name=f"ocrflow-api-{uuid.uuid4().hex[:8]}", requests_per_minute=60)
    asyncio.run(_create(limits))
    results = process_documents(
        paths=[str(inbox)], out=str(tmp_path / "out"), settings=settings_for(fake_dashscope, limits)
    )

    assert len(results) == len(PAGES) and len(fake_dashscope.requests) == len(PAGES)
    arrivals = sorted(r.at for r in fake_dashscope.requests)
    # One slot decaying at 1 per second: slots are taken a second apart. A request leaves a moment
    # after its slot (the first also imports the SDK), so arrivals may bunch by that much, no more.
    assert arrivals[-1] - arrivals[0] > len(PAGES) - 1 - 0.6, arrivals
    assert all(later - earlier > 0.3 for earlier, later in pairwise(arrivals)), arrivals
    assert not _warnings(caplog, limits.name)


def test_a_missing_limit_is_one_clear_warning_not_a_failure(
    inbox: Path, tmp_path: Path, fake_dashscope, caplog
):
    limits = ApiLimits(name=f"ocrflow-api-missing-{uuid.uuid4().hex[:8]}")
    results = process_documents(
        paths=[str(inbox)], out=str(tmp_path / "out"), settings=settings_for(fake_dashscope, limits)
    )

    assert len(results) == len(PAGES) and len(fake_dashscope.requests) == len(PAGES)
    (warning,) = _warnings(caplog, limits.name)
    assert "ocrflow setup" in warning and "not rate limited" in warning


def test_outside_a_flow_run_the_engine_does_not_ask_prefect(fake_dashscope, tmp_path: Path, caplog):
    limits = ApiLimits(name=f"ocrflow-api-unused-{uuid.uuid4().hex[:8]}")
    engine = DashScopeEngine(DashScopeOptions(base_url=fake_dashscope.native_url), limits=limits)
    shutil.copy(EXAMPLES / "receipt_valid.png", tmp_path / "page.png")
    engine.recognize(tmp_path / "page.png", OcrTask.TEXT_RECOGNITION)
    assert len(fake_dashscope.requests) == 1
    assert not _warnings(caplog, limits.name), "a plain script has no shared limit to miss"


def test_an_unreachable_prefect_api_is_a_transient_error_so_the_page_is_retried():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ocrflow.engines._ratelimit import SharedRateLimit
    from ocrflow.errors import TransientError, is_retryable

    limit = SharedRateLimit(ApiLimits())
    with (
        temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}),
        pytest.raises(TransientError) as caught,
    ):
        limit._take_slot()  # what acquire() does once it knows the limit exists
    assert caught.value.code == "rate_limit_unavailable" and is_retryable(caught.value)


class DecayClockServer:
    """Prefect's rate-limit slot call as the server does it: one slot, granted (and stamped) while the
    request is in flight, denied when a whole decay period has not passed since the last stamp; a
    denial stamps the clock too."""

    def __init__(self, period: float, way: float) -> None:
        self.period, self.way = period, way
        self.stamp = -1e9
        self.asked: list[float] = []
        self.answered: list[float] = []
        self.denials = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def increment_concurrency_slots(self, names, slots, mode):
        import time

        import httpx

        self.asked.append(time.monotonic())
        time.sleep(self.way)
        now, last = time.monotonic(), self.stamp
        self.stamp = now
        time.sleep(self.way)
        if now - last < self.period:
            self.denials += 1
            request = httpx.Request("POST", "http://prefect/api/v2/concurrency_limits/increment")
            response = httpx.Response(423, request=request)
            raise httpx.HTTPStatusError("locked", request=request, response=response)
        self.answered.append(time.monotonic())


def test_the_next_slot_is_asked_for_before_a_decay_period_after_the_answer(monkeypatch):
    import prefect.client.orchestration

    from ocrflow.engines._ratelimit import SharedRateLimit

    server = DecayClockServer(period=0.2, way=0.03)
    monkeypatch.setattr(prefect.client.orchestration, "get_client", lambda sync_client: server)
    limit = SharedRateLimit(ApiLimits(requests_per_minute=300))  # one slot decaying at 5/s
    for _ in range(6):
        limit._take_slot()
    # The server stamped each grant half-way through its call, so asking a decay period after the
    # answer would leave the slot idle for the way back; the limiter asks that much sooner, and
    # is never early enough to be denied.
    gaps = [asked - answered for answered, asked in zip(server.answered, server.asked[1:], strict=False)]
    assert server.denials == 0 and all(gap < 0.2 - 0.01 for gap in gaps), gaps

    server.stamp += 0.1  # another worker took a slot: the next ask is denied, and the lead halves
    share = limit._lead_share
    limit._take_slot()
    assert server.denials == 1 and limit._lead_share == share / 2
