"""The project's own files, found the same way from a wheel as from a checkout.

``prefect.yaml``, ``schemas/``, ``flows/`` and ``tasks/`` live at the top of the repository,
where a user reads them and ``prefect deploy`` finds them. This package's folder,
``ocrflow/project/``, holds them beside this file: in a checkout as links to those top-level
entries, in the wheel as the copies building it made of what the links point at. So
:data:`ROOT` is this folder in both, and no generic top-level ``flows`` or ``tasks`` package
is installed into site-packages.

Nothing in the package imports the Prefect layer: the command line and ``ocrflow serve``
load a flow from the entrypoint ``prefect.yaml`` gives it, as a Prefect worker does.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from ocrflow.errors import ConfigurationError

ROOT = Path(__file__).parent
"""The project folder: ``prefect.yaml``, ``schemas/``, ``flows/``, ``tasks/``."""
PREFECT_YAML = ROOT / "prefect.yaml"
SCHEMA_DIR = ROOT / "schemas"


def deployment_specs(config: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The ``deployments`` entries of a ``prefect.yaml``, environment placeholders filled."""
    import yaml
    from prefect.utilities.templating import apply_values

    if not config.is_file():
        raise ConfigurationError(f"{config} does not exist; pass --config with the project's prefect.yaml")
    specs = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("deployments") or []
    return [apply_values(spec, os.environ, remove_notset=False) for spec in specs]


def on_import_path() -> None:
    """Make the project's ``flows`` and ``tasks`` importable here and in processes started from here."""
    root = str(ROOT)
    if root not in sys.path:
        # First, so a user's own top-level ``tasks`` module cannot stand in for the project's.
        sys.path.insert(0, root)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [*paths, root] if p)


def load_entrypoint(entrypoint: str):
    """The flow a ``path/to/module.py:flow`` entrypoint names, imported as a module of the project."""
    path, _, name = entrypoint.partition(":")
    on_import_path()
    module = importlib.import_module(Path(path).with_suffix("").as_posix().replace("/", "."))
    return getattr(module, name)


def load_flow(deployment: str, config: Path = PREFECT_YAML):
    """The flow of the deployment named ``deployment`` in ``prefect.yaml``."""
    for spec in deployment_specs(config):
        if spec["name"] == deployment:
            return load_entrypoint(spec["entrypoint"])
    raise ConfigurationError(f"no deployment named {deployment} in {config}")
