"""Crash points: where the reliability tests kill this process, to prove a crash loses nothing.

``OCRFLOW_CRASH_AT=<point>`` kills the process with SIGKILL (nothing runs after it: no
``finally``, no atexit, no flush) the first time it reaches ``point``;
``<point>@<n>`` the n-th time. Unset, a crash point costs one dictionary look-up. The points
are the steps of the write path (see :mod:`ocrflow.store`), named in :data:`POINTS`.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

POINTS = (
    "staged",  # the result file is written beside its final name, the transaction not committed
    "committed",  # the row (and item, audit event, outbox) committed, the file not renamed
    "renamed",  # the file is in place, the row still marks it staged
    "delivered",  # the outbox's events reached Prefect, not yet marked sent
)

_reached: Counter[str] = Counter()


def crash_point(name: str) -> None:
    """Die here if ``OCRFLOW_CRASH_AT`` names this point (and this is the asked-for time)."""
    wanted = os.environ.get("OCRFLOW_CRASH_AT")
    if not wanted:
        return
    point, _, times = wanted.partition("@")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] == int(times or 1):
        os.kill(os.getpid(), signal.SIGKILL)
