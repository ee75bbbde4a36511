"""The request rate every worker shares: a Prefect global concurrency limit used as a rate limit.

Inside a flow run, an API engine takes one slot of the limit named by
:class:`~ocrflow.settings.ApiLimits` (``prefect.concurrency.sync.rate_limit``) before each
request, so every thread, process and machine running ocrflow against one Prefect server
stays under the account's quota together. ``ocrflow setup`` creates the limit.

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

from ocrflow.settings import ApiLimits

RECHECK_SECONDS = 60.0
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
        self._exists: bool | None = None
        self._checked_at = 0.0
        self._warned = False

    def acquire(self) -> None:
        """Wait for a slot when running in a flow and the limit exists; otherwise return at once."""
        if not _in_prefect_run() or not self._limit_exists():
            return
        from prefect.concurrency.sync import rate_limit

        rate_limit(self.options.name, strict=True)

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
        return bool(limit.active) and limit.slot_decay_per_second > 0

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
