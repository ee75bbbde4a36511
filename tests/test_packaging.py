"""An installed ocrflow works without a source checkout, and dependencies point one way.

The wheel holds one package: ``ocrflow``, with the project's ``prefect.yaml``, ``schemas/``,
``flows/`` and ``tasks/`` under ``ocrflow/project/`` (links in a checkout, copies in the wheel).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, examples_in

PACKAGE = ROOT / "ocrflow"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def _package_modules() -> list[Path]:
    # ocrflow/project/ links to the top-level flows/ and tasks/: those are the Prefect layer itself.
    linked = [PACKAGE / "project" / name for name in ("flows", "tasks")]
    return [p for p in PACKAGE.rglob("*.py") if not any(folder in p.parents for folder in linked)]


def test_nothing_in_the_package_imports_the_prefect_layer():
    upward = {
        str(path.relative_to(ROOT)): name
        for path in _package_modules()
        for name in _imports(path)
        if name.split(".")[0] in ("flows", "tasks")
    }
    assert upward == {}


def test_private_engine_modules_are_imported_only_inside_engines():
    engines = PACKAGE / "engines"
    outside = [p for p in _package_modules() if engines not in p.parents]
    outside += [p for folder in ("flows", "tasks", "bench") for p in (ROOT / folder).rglob("*.py")]
    private = {
        str(path.relative_to(ROOT)): name
        for path in outside
        for name in _imports(path)
        if name.startswith("ocrflow.engines._")
    }
    assert private == {}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(folder),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (path,) = folder.glob("ocrflow-*.whl")
    return path


def test_the_wheel_holds_one_package_with_the_project_files(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"ocrflow", "ocrflow-0.1.0.dist-info"}
    for name in (
        "ocrflow/project/prefect.yaml",
        "ocrflow/project/schemas/receipt.schema.json",
        "ocrflow/project/flows/process_documents.py",
        "ocrflow/project/tasks/stages.py",
    ):
        assert name in names
    assert not [name for name in names if "__pycache__" in name]


INSTALLED = """
import importlib.util, json, sys
from pathlib import Path
site = Path(sys.argv[1])
# No checkout of ocrflow on the path (an editable install puts one there), only the wheel's files.
sys.path[:] = [str(site)] + [p for p in sys.path if p and not (Path(p) / "pyproject.toml").is_file()]
generic_before = [n for n in ("flows", "tasks") if importlib.util.find_spec(n)]
import ocrflow
from ocrflow.doctypes import load_doctypes
from ocrflow.project import PREFECT_YAML, load_flow
from ocrflow.deploy import deployment_specs
flow = load_flow("process-documents")
print(json.dumps({
    "package": ocrflow.__file__,
    "generic_before": generic_before,
    "prefect_yaml": str(PREFECT_YAML),
    "deployments": [spec["name"] for spec in deployment_specs()],
    "types": sorted(load_doctypes()),
    "flow": [flow.name, flow.fn.__code__.co_filename],
}))
"""


def test_an_installed_wheel_finds_prefect_yaml_schemas_and_flows_without_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # Loading a flow in this process (another test) puts ocrflow/project on PYTHONPATH for the
    # processes it starts; an installed wheel runs without it.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", INSTALLED, str(site)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["package"].startswith(str(site))
    assert seen["generic_before"] == [], "no top-level flows or tasks is installed"
    assert seen["prefect_yaml"].startswith(str(site))
    assert "process-documents" in seen["deployments"] and "finalize-review" in seen["deployments"]
    assert {"receipt", "passport", "cn_id_card"} <= set(seen["types"])
    assert seen["flow"][0] == "process-documents" and seen["flow"][1].startswith(str(site))


def test_a_one_file_run_needs_no_prefect_server(tmp_path):
    """Without a Prefect server configured, one document runs inline: Prefect is not even imported."""
    inbox = examples_in(tmp_path / "inbox", ["bank_card_valid.png"])
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from ocrflow.cli import app\n"
        "result = CliRunner().invoke(app, ['run', sys.argv[1], '--out', sys.argv[2]])\n"
        "print(result.output)\n"
        "print('prefect imported:', any(m == 'prefect' or m.startswith('prefect.') for m in sys.modules))\n"
        "sys.exit(result.exit_code)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path / "prefect")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(inbox / "bank_card_valid.png"), str(tmp_path / "out")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 accepted, 0 needs_review, 0 rejected" in done.stdout
    assert "prefect imported: False" in done.stdout
    assert not (tmp_path / "prefect").exists(), "no Prefect database was made"
    assert len(list((tmp_path / "out").glob("*.json"))) == 1
