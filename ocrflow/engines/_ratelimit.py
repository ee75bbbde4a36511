"""The request rate every worker shares: a Prefect global concurrency limit used as a rate limit.

Inside a flow run, an API engine takes one slot of the limit named by
:class:`~ocrflow.settings.ApiLimits` before each request, so every thread, process and
machine running ocrflow against one Prefect server stays under the account's quota
together. ``ocrflow setup`` creates the limit.

Slots are taken through the same server call as ``prefect.concurrency.sync.rate_limit``
(``POST /v2/concurrency_limits/increment``, mode ``rate_limit``), but paced here. Prefect's
helper has every waiting thread sleep for the server's ``Retry-After``, which grows with
each denied request, and each denial restarts the server's decay clock (decay is counted in
whole slots since the limit's last update). Here one thread per engine waits, and after a
denial it asks again once a slot has had time to decay: with eight threads against a
2 requests/s limit, 1.61 requests/s instead of 1.38 (bench/RESULTS-api.md).

When the limit does not exist, Prefect's own non-strict mode would log a warning on every
request; this looks the limit up instead, says once what is missing and how to create it,
and sends requests unthrottled (the service's 429s are still retried). The lookup is
repeated after :data:`RECHECK_SECONDS`, so a limit created while a worker runs is picked up.
Outside a flow run (``ocrflow eval``, a plain script) there is no server to share, and no limit.
"""

from __future__ import annotations

import logging
import threading
import time

import httpx

from ocrflow.errors import TransientError
from ocrflow.settings import ApiLimits

RECHECK_SECONDS = 60.0
HTTP_LOCKED = 423
"""The server's answer when no slot is free."""
_MARGIN = 1.02
"""Asking a hair after the slot decays, so the server's rounding down does not deny it again."""
LEAD_SHARE = 0.5
"""Of the fastest slot request seen, how much sooner than one decay period after its answer the next
is asked for. The server stamps a grant while the request is in flight, so a decay period after the
answer is later than needed by the answer's way back; half the fastest round trip stays below that.
Each denial halves the share, so an early ask costs once (it restarts the decay clock)."""
_fallback_logger = logging.getLogger(__name__)


def _in_prefect_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return TaskRunContext.get() is not None or FlowRunContext.get() is not None


def _logger() -> logging.Logger | logging.LoggerAdapter:
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return _fallback_logger


class SharedRateLimit:
    """One engine's handle on the shared limit; thread-safe, warns at most once per missing spell."""

    def __init__(self, options: ApiLimits | None = None) -> None:
        self.options = options or ApiLimits()
        self._lock = threading.Lock()
        self._queue = threading.Lock()
        self._next_try = 0.0
        self._fastest_answer = float("inf")
        self._lead_share = LEAD_SHARE
        self._slots = self.options.burst
        self._decay_per_second = self.options.slot_decay_per_second
        self._exists: bool | None = None
        self._checked_at = 0.0
        self._warned = False

    def acquire(self) -> None:
        """Wait for a slot when running in a flow and the limit exists; otherwise return at once."""
        if not _in_prefect_run() or not self._limit_exists():
            return
        with self._queue:
            self._take_slot()

    def _take_slot(self) -> None:
        from prefect.client.orchestration import get_client

        decay_seconds = 1.0 / self._decay_per_second
        with get_client(sync_client=True) as client:
            while True:
                time.sleep(max(0.0, self._next_try - time.monotonic()))
                asked = time.monotonic()
                try:
                    client.increment_concurrency_slots(names=[self.options.name], slots=1, mode="rate_limit")
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code != HTTP_LOCKED:
                        raise _unavailable(f"HTTP {exc.response.status_code}") from None
                    # The denial restarted the decay clock: a slot is free one decay period from now.
                    self._next_try = time.monotonic() + decay_seconds * _MARGIN
                    self._lead_share /= 2  # asked too early (or another worker took it): lead less
                    continue
                except httpx.TransportError as exc:
                    raise _unavailable(type(exc).__name__) from None
                answered = time.monotonic()
                self._fastest_answer = min(self._fastest_answer, answered - asked)
                # With one slot, the next is free one decay period after the server granted this one,
                # which it did before it answered: ask that much sooner (see _lead_share).
                lead = self._lead_share * self._fastest_answer
                self._next_try = answered + (decay_seconds - lead if self._slots == 1 else 0.0)
                return

    def _limit_exists(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._exists is None or (not self._exists and now - self._checked_at >= RECHECK_SECONDS):
                self._exists = self._look_up()
                self._checked_at = now
                if self._exists:
                    self._warned = False
                elif not self._warned:
                    self._warned = True
                    self._warn()
            return self._exists

    def _look_up(self) -> bool:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        try:
            with get_client(sync_client=True) as client:
                limit = client.read_global_concurrency_limit_by_name(self.options.name)
        except ObjectNotFound:
            return False
        except httpx.HTTPError:
            # No reachable Prefect API: requests go out unthrottled, with the same warning.
            return False
        if not limit.active or limit.slot_decay_per_second <= 0:
            return False
        # The server's figures decide the pace, whoever created the limit.
        self._slots, self._decay_per_second = limit.limit, limit.slot_decay_per_second
        return True

    def _warn(self) -> None:
        options = self.options
        _logger().warning(
            "the Prefect global concurrency limit %r is missing, inactive or not a rate limit, so API "
            "requests are not rate limited across workers; create it with 'ocrflow setup' (or: prefect "
            "global-concurrency-limit create %s --limit %d --slot-decay-per-second %g)",
            options.name,
            options.name,
            options.burst,
            options.slot_decay_per_second,
        )


def _unavailable(what: str) -> TransientError:
    return TransientError(
        f"the Prefect API did not hand out a slot of the shared rate limit ({what}); the page is retried",
        code="rate_limit_unavailable",
    )
