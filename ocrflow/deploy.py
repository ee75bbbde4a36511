"""ocrflow's deployments, read from ``prefect.yaml`` so ``prefect deploy`` and ``ocrflow serve`` agree.

``prefect deploy --all`` registers the deployments for a work pool; ``ocrflow serve``
turns the very same entries (entrypoint, parameters, schedules, triggers, concurrency)
into :class:`~prefect.deployments.runner.RunnerDeployment` objects and serves them from
one process. ``{{ $ENV_VAR }}`` placeholders are filled from the environment the way
``prefect deploy`` fills them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocrflow.errors import ConfigurationError
from ocrflow.prefect_setup import require_prefect_api
from ocrflow.project import PREFECT_YAML, deployment_specs, load_entrypoint

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment


def runner_deployment(spec: dict[str, Any]) -> RunnerDeployment:
    """One ``prefect.yaml`` entry as a deployment ``serve`` can run."""
    from prefect.events import DeploymentTriggerTypes
    from prefect.schedules import Cron, Interval
    from prefect.types.entrypoint import EntrypointType
    from pydantic import TypeAdapter

    name = spec["name"]
    schedules = []
    for schedule in spec.get("schedules") or []:
        # Every key prefect.yaml allows (timezone, active, parameters, day_or, anchor_date...) goes through.
        options = {key: value for key, value in schedule.items() if key not in ("cron", "interval")}
        if "cron" in schedule:
            schedules.append(Cron(schedule["cron"], **options))
        elif "interval" in schedule:
            schedules.append(Interval(schedule["interval"], **options))
        else:
            raise ConfigurationError(f"deployment {name}: only cron and interval schedules can be served")
    adapter = TypeAdapter(DeploymentTriggerTypes)
    # Unnamed triggers get the names `prefect deploy` gives them (<deployment>__automation_<n>).
    triggers = [adapter.validate_python(trigger) for trigger in spec.get("triggers") or []]
    return load_entrypoint(spec["entrypoint"]).to_deployment(
        name=name,
        description=spec.get("description"),
        parameters=spec.get("parameters") or {},
        schedules=schedules,
        triggers=triggers,
        concurrency_limit=spec.get("concurrency_limit"),
        tags=spec.get("tags") or [],
        # The project is installed, so runs import the flow by module wherever they start.
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def serve_deployments(config: Path = PREFECT_YAML, names: list[str] | None = None, limit: int | None = None):
    """Serve the deployments of ``config`` (all, or those ``names``) until interrupted."""
    from prefect import serve

    require_prefect_api("ocrflow serve")
    specs = deployment_specs(config)
    unknown = set(names or []) - {spec["name"] for spec in specs}
    if unknown:
        raise ConfigurationError(
            f"no deployment named {', '.join(sorted(unknown))} in {config}; "
            f"known: {', '.join(spec['name'] for spec in specs)}"
        )
    chosen = [runner_deployment(spec) for spec in specs if not names or spec["name"] in names]
    serve(*chosen, limit=limit, print_starting_message=False)
