"""The documented install paths, from the wheel a user gets (README: Installing with pip).

The wheel is built once per session from the working tree. A plain install is resolved for real
into a fresh venv: its `persona-core` must start with nothing but the base dependencies. The
extras are resolved with `pip install --dry-run --report` (what pip would install into an empty
environment): each combination gets exactly one distribution of the `onnxruntime` module, the
one its `cpu` / `gpu` extra names, and the pipeline one distribution of `webrtcvad`. The entry
points of the full install run from the wheel's code in a venv that borrows this project's
installed dependencies instead of resolving them again (the resolution is the dry run's job).
Everything comes from the machine's configured package source."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIP = [sys.executable, "-m", "pip"]
ORT = {"onnxruntime", "onnxruntime-gpu"}
WEBRTCVAD = {"webrtcvad", "webrtcvad-wheels"}  # both install the `webrtcvad` module
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def run(
    cmd: list[str], *, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # From / : `python -c` puts its working directory first on sys.path, and the repo's would win.
    proc = subprocess.run(cmd, cwd="/", env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of the working tree, built from a copy (no build/ or egg-info in the repo)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    for pkg in ("persona_core", "persona_pipeline", "registry_api", "persona_cli"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    run([*PIP, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)])
    (built,) = dist.glob("persona_core-*.whl")
    return built


def dry_run(wheel: Path, extras: str, tmp_path: Path) -> set[str]:
    """The distributions pip would install for ``persona-core[extras]`` into an empty venv."""
    report = tmp_path / "report.json"
    run(
        [
            *PIP,
            "install",
            "-q",
            "--dry-run",
            "--ignore-installed",
            "--report",
            str(report),
            f"persona-core[{extras}] @ {wheel.as_uri()}",
        ]
    )
    return {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}


def test_wheel_carries_the_licence_and_both_entry_points(wheel: Path) -> None:
    import zipfile  # noqa: PLC0415

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        licence = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
        assert "Apache License" in zf.read(licence).decode()
        assert "Version 2.0, January 2004" in zf.read(licence).decode()
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        assert "persona-core = persona_cli.main:main" in entry_points
        assert "persona_cli/__main__.py" in names


def test_a_plain_install_starts_its_command(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "base"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    run([*PIP, "--python", str(python), "install", "-q", str(wheel)], timeout=600)
    helped = run([str(venv / "bin" / "persona-core"), "--help"])
    assert "Build, inspect, move and serve versioned PersonaPacks." in helped.stdout
    assert "Build, inspect" in run([str(python), "-m", "persona_cli", "--help"]).stdout
    # No extra: the command still says where things live, and that onnxruntime is missing.
    home = tmp_path / "home"
    info = json.loads(run([str(python), "-m", "persona_cli", "--home", str(home), "--json", "info"]).stdout)
    assert info["home"] == str(home.resolve())
    assert info["onnxruntime"]["distributions"] == {}
    assert "pip install 'persona-core[cpu]'" in info["onnxruntime"]["problems"][0]
    assert info["torch"] is None
    installed = run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; "
            "print('\\n'.join(d.metadata['Name'].lower() for d in m.distributions()))",
        ]
    ).stdout.split()
    assert not ORT & set(installed)
    assert "typer" in installed


@pytest.mark.parametrize(
    ("extras", "runtime"),
    [
        ("cpu,vision", "onnxruntime"),
        ("cpu,pipeline,api", "onnxruntime"),
        ("gpu,pipeline,api", "onnxruntime-gpu"),
    ],
)
def test_each_extra_combination_resolves_one_onnxruntime(
    wheel: Path, tmp_path: Path, extras: str, runtime: str
) -> None:
    names = dry_run(wheel, extras, tmp_path)
    assert names & ORT == {runtime}
    if "pipeline" in extras:
        assert names & WEBRTCVAD == {"webrtcvad"}  # resemblyzer's own; nothing overwrites it
        assert {"torch", "resemblyzer", "dagster", "fastapi"} <= names


def test_the_full_install_runs_its_entry_points(wheel: Path, tmp_path: Path) -> None:
    """The wheel's code with this project's installed dependencies ([cpu,pipeline,vision,api])."""
    venv = tmp_path / "full"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    run([*PIP, "--python", str(python), "install", "-q", "--no-deps", str(wheel)])
    site = Path(
        run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    # A plain path line: the project's own editable install (a .pth hook there) stays out.
    (site / "zz_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    origin = run(
        [str(python), "-c", "import persona_cli, persona_pipeline; print(persona_cli.__file__)"]
    ).stdout
    assert origin.startswith(str(site))
    home = tmp_path / "home"
    info = json.loads(run([str(venv / "bin" / "persona-core"), "--home", str(home), "--json", "info"]).stdout)
    ort = info["onnxruntime"]
    assert set(ort["distributions"]) == {"onnxruntime"}
    assert ort["session"] == ["CPUExecutionProvider"]
    assert ort["gpu"] is False
    assert ort["problems"] == []
    assert "serve" in run([str(python), "-m", "persona_cli", "serve", "--help"]).stdout
    # resemblyzer imports, with its webrtcvad detecting no speech in silence.
    vad = run(
        [
            str(python),
            "-c",
            "from persona_pipeline.models.resemblyzer_voice import ensure_webrtcvad; "
            "ensure_webrtcvad(); import resemblyzer, webrtcvad; "
            "print(webrtcvad.Vad(3).is_speech(bytes(640), 16000))",
        ]
    )
    assert vad.stdout.strip() == "False"


# webrtcvad 2.0.10's own webrtcvad.py (MIT), the module resemblyzer's requirement installs: it reads
# its version through pkg_resources, which current setuptools no longer ships.
WEBRTCVAD_2_0_10 = """import pkg_resources

import _webrtcvad

__version__ = pkg_resources.get_distribution('webrtcvad').version


class Vad(object):
    def __init__(self, mode=None):
        self._vad = _webrtcvad.create()
        _webrtcvad.init(self._vad)
        if mode is not None:
            _webrtcvad.set_mode(self._vad, mode)
"""


def test_the_voice_model_imports_resemblyzers_own_webrtcvad(tmp_path: Path) -> None:
    """Only the `webrtcvad` distribution installed (no webrtcvad-wheels over it), no pkg_resources:
    the voice backend still imports resemblyzer, and webrtcvad tells speech from silence."""
    (tmp_path / "webrtcvad.py").write_text(WEBRTCVAD_2_0_10)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    script = (
        "import importlib.util\n"
        "assert importlib.util.find_spec('pkg_resources') is None\n"
        "from persona_pipeline.models.resemblyzer_voice import ensure_webrtcvad\n"
        "ensure_webrtcvad()\n"
        "import resemblyzer, webrtcvad\n"
        "vad = webrtcvad.Vad(0)\n"
        "print(vad.is_speech(bytes(960), 16000), webrtcvad.valid_rate_and_frame_length(16000, 480))\n"
    )
    assert run([sys.executable, "-c", script], env=env).stdout.split() == ["False", "True"]
