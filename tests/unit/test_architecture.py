"""The architecture is a contract checked by import-linter (``[tool.importlinter]`` in
pyproject.toml): the project's code keeps it, and an import that breaks it is caught."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("persona_cli", "registry_api", "persona_pipeline", "persona_core")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},  # the packages under root, not the installed ones
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_project_keeps_its_import_contracts() -> None:
    """Layers (CLI over registry and pipeline over persona_core), the sealed runtime, the light
    client, the framework-free vision layer and no import cycles: ``lint-imports`` passes."""
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def copy_sources(dest: Path) -> None:
    """The project's Python sources and its pyproject.toml (no weights, no caches)."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "weights", "*.onnx")
        )
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


@pytest.mark.parametrize(
    ("module", "added_import", "contract", "contract_name", "reported"),
    [
        (
            "persona_core/runtime/select.py", "import dagster", "runtime-sealed",
            "The runtime imports no framework, database or face-model stack",
            "persona_core.runtime.select -> dagster",
        ),
        # DriftMeter's lazy door to OpenCV is the only one: another runtime module may not use it.
        (
            "persona_core/runtime/refresh.py", "from persona_core.vision import frames", "runtime-sealed",
            "The runtime imports no framework, database or face-model stack",
            "persona_core.runtime.refresh -> persona_core.vision.frames",
        ),
        (
            "persona_core/client.py", "import sqlalchemy", "client-light",
            "The registry client imports no server, database or face-model stack",
            "persona_core.client -> sqlalchemy",
        ),
        (
            "persona_pipeline/steps/qc.py", "import registry_api.main", "layers",
            "Layers: the CLI over the registry and the pipeline, both over persona_core",
            "persona_pipeline.steps.qc -> registry_api.main",
        ),
        (
            "persona_core/pack.py", "import persona_core.runtime.select", "acyclic",
            "No import cycles between the project's modules",
            "No cycles are allowed in persona_core",
        ),
    ],
)
def test_an_import_that_breaks_a_contract_is_caught(
    tmp_path: Path, module: str, added_import: str, contract: str, contract_name: str, reported: str
) -> None:
    """One forbidden import added to a copy of the sources fails ``lint-imports`` (non-zero exit),
    naming the broken contract and the offending import."""
    copy_sources(tmp_path)
    with (tmp_path / module).open("a") as f:
        f.write(f"\n{added_import}  # added by the test\n")
    result = lint_imports(tmp_path, "--contract", contract)
    assert result.returncode != 0, result.stdout
    assert f"{contract_name} BROKEN" in result.stdout, result.stdout
    assert reported in result.stdout, result.stdout
