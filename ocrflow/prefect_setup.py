"""``ocrflow setup``: create what the deployments need on a Prefect server, changing nothing twice.

- the work pool the deployments in ``prefect.yaml`` name (type ``process``);
- the global concurrency limit the API engines take a slot of before each request
  (:class:`~ocrflow.settings.ApiLimits`: ``burst`` slots, decaying at the requests-per-minute
  rate, so it is a rate limit shared by every worker);
- a concurrency limit for local OCR (slots = CPU-bound OCR pages at once, across workers),
  taken when workers set ``OCRFLOW_LOCAL_ENGINE__SHARED_LIMIT``;
- a Secret block per API key the engines may read, with an empty value as placeholder.

Each step reads what exists first. An existing work pool and a Secret's value are never
touched; a limit whose numbers differ from the settings is brought in line with them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ocrflow.errors import ConfigurationError
from ocrflow.settings import Settings

WORK_POOL = "ocrflow"
LOCAL_OCR_LIMIT = "ocrflow-local-ocr"


@dataclass(frozen=True)
class Step:
    """What setup did to one object: ``created``, ``updated`` or ``unchanged``."""

    kind: str
    name: str
    action: str
    detail: str = ""


def secret_block_names(settings: Settings) -> list[str]:
    names = {settings.dashscope.api_key_secret_block, settings.openai.api_key_secret_block}
    return sorted(name for name in names if name)


def prefect_server_configured() -> bool:
    """Whether Prefect would talk to a server of the user's (``PREFECT_API_URL``), not a temporary one.

    Read without importing Prefect (seconds) unless a Prefect settings file could set it.
    """
    if os.environ.get("PREFECT_API_URL"):
        return True
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    candidates = [
        Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml"),
        Path(".env"),
        Path("prefect.toml"),
        Path("pyproject.toml"),
    ]
    if not any(_mentions_api_url(path) for path in candidates):
        return False
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def _mentions_api_url(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "PREFECT_API_URL" in text or ("[api]" in text and "url" in text)


EPHEMERAL_STARTUP_SECONDS = 120
"""How long a run waits for Prefect's temporary server unless the user set
``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (Prefect's 20 s expire on a busy machine)."""


def start_temporary_server() -> None:
    """Start Prefect's temporary server for this process now, unless a server is configured.

    Runs that start one at the same time take turns (a lock file in ``PREFECT_HOME``): the
    first migrates Prefect's database while the others wait, instead of all migrating it at
    once and failing. A server that does not start is one clear error naming the setting.
    """
    if prefect_server_configured():
        return
    import fcntl

    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_HOME, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    setting = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
    timeout = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    if setting not in os.environ:
        timeout = max(timeout, EPHEMERAL_STARTUP_SECONDS)
    home = Path(PREFECT_HOME.value()).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    with (home / "ocrflow-temporary-server.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            SubprocessASGIServer().start(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - Prefect raises RuntimeError or an HTTP error
            raise ConfigurationError(
                f"Prefect's temporary server did not start within {timeout} s ({type(exc).__name__}). "
                f"Set {setting} higher, or run a server (prefect server start) and set PREFECT_API_URL"
            ) from None
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def require_prefect_api(purpose: str) -> None:
    """Raise :class:`ConfigurationError` unless ``PREFECT_API_URL`` names a server.

    Without it Prefect would quietly start a temporary server of its own, and what ``purpose``
    creates or sends would vanish with it.
    """
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise ConfigurationError(f"PREFECT_API_URL is not set: {purpose} needs a Prefect server")


def set_up(settings: Settings, work_pool: str = WORK_POOL, local_ocr_slots: int | None = None) -> list[Step]:
    """Create or align every object on the server ``PREFECT_API_URL`` points at."""
    from prefect.client.orchestration import get_client

    require_prefect_api("ocrflow setup")
    local_ocr_slots = local_ocr_slots or os.cpu_count() or 1
    limits = settings.api_limits
    with get_client(sync_client=True) as client:
        return [
            _work_pool(client, work_pool),
            _global_limit(client, limits.name, limits.burst, limits.slot_decay_per_second),
            _global_limit(
                client, settings.local_engine.shared_limit or LOCAL_OCR_LIMIT, local_ocr_slots, 0.0
            ),
            *(_secret_placeholder(name) for name in secret_block_names(settings)),
            *_review_notifications(settings),
        ]


def _review_notifications(settings: Settings) -> list[Step]:
    from ocrflow.review.notify import review_notifications

    return review_notifications(settings)


def require_global_limit(name: str, setting: str) -> None:
    """Raise :class:`ConfigurationError` unless the Prefect server has the concurrency limit ``name``."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            raise ConfigurationError(
                f"{setting} names the concurrency limit {name!r}, which the Prefect server does not have; "
                "create it with `ocrflow setup`, or unset the setting"
            ) from None


def _work_pool(client, name: str) -> Step:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        template = ProcessWorker.get_default_base_job_template()
        client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))
        return Step("work pool", name, "created", "type process")
    return Step("work pool", name, "unchanged", f"type {pool.type}")


def _global_limit(client, name: str, slots: int, decay: float) -> Step:
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    detail = f"{slots} slots" + (f", {decay:g} per second" if decay else "")
    try:
        limit = client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=slots, slot_decay_per_second=decay)
        )
        return Step("concurrency limit", name, "created", detail)
    if limit.limit == slots and abs(limit.slot_decay_per_second - decay) < 1e-9 and limit.active:
        return Step("concurrency limit", name, "unchanged", detail)
    client.update_global_concurrency_limit(
        name, GlobalConcurrencyLimitUpdate(limit=slots, slot_decay_per_second=decay, active=True)
    )
    return Step("concurrency limit", name, "updated", detail)


def _secret_placeholder(name: str) -> Step:
    from prefect.blocks.system import Secret

    try:
        Secret.load(name)
    except ValueError:  # Prefect's way of saying the block does not exist
        Secret(value="").save(name)
        return Step("secret block", name, "created", "empty placeholder: set its value in the UI")
    return Step("secret block", name, "unchanged", "value kept")
