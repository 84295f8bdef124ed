"""Start-up cost of a fresh `persona-core build`: what every CLI-, sensor- or UI-launched run pays
(each is a new process) before and around the photos.

stack_fresh_cli_build_s: wall seconds of `persona-core build` of 4 photos (examples/photos) + 2
voice clips (tests/fixtures/voices a1, a2) in a new process on the embedded default (a new
PERSONA_HOME in a temp folder), run twice on one model cache: ``first`` with an empty model
cache (what a machine's first build ever pays: the EfficientNet and Resemblyzer exports, the
SFace fold, every optimized graph written) and ``second`` with the cache the first one left
(every later build). Goal on 2 cores: second <= 5 s.

stack_fresh_cli_build_breakdown: each run's wall time split by the build's own progress lines,
timestamped here as they arrive on stderr:
  import_s: interpreter and CLI imports up to the first line, plus the pipeline's own imports
    (dagster, the assets and steps; imported when the build starts), timed in-process in a
    separate fresh process;
  dagster_setup_s: from "building" to the first step's line, less those pipeline imports
    (the project's Dagster instance, the job and run set-up), and from the last step to the
    process's exit (run end, summary);
  model_load_s: the sum of the steps' "models loaded in X s";
  inference_s: the steps' own time (decode, models, masks, publish, with Dagster's per-step
    events), less the model loads;
  upload_s: the upload gate and blob writes before the build.
stack_fresh_cli_build_cpu_s: each run's user + system CPU seconds, steadier than wall time on a
shared machine (the conditions note the load average).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import MODELS_LOADED, record

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "examples" / "photos"
VOICES = (
    ROOT / "tests" / "fixtures" / "voices" / "a1.wav",
    ROOT / "tests" / "fixtures" / "voices" / "a2.wav",
)
STEP = re.compile(r"^\s*[0-9.]+s \S+\.v\d+ ")


def _inputs(folder: Path) -> Path:
    shutil.copytree(PHOTOS, folder)
    for clip in VOICES:
        shutil.copy(clip, folder / clip.name)
    return folder


def _env(home: Path, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERSONA_", "DAGSTER_"))}
    return env | {"PERSONA_HOME": str(home), "PERSONA_MODEL_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("persona-core")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "persona_cli"]


def fresh_build(folder: Path, home: Path, cache: Path, persona: str = "startup") -> dict[str, Any]:
    """One `persona-core --json build` in a new process: its wall time and each stderr line with
    the seconds since the process was started."""
    lines: list[tuple[float, str]] = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*_cli(), "--json", "build", str(folder), "--persona", persona],
        env=_env(home, cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append((time.perf_counter() - started, line.rstrip("\n")))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    proc.wait(timeout=600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    reader.join(timeout=10)
    if proc.returncode != 0:
        tail = "\n".join(text for _, text in lines[-15:])
        raise RuntimeError(f"persona-core build exited {proc.returncode}:\n{tail}\n{stdout[-2000:]}")
    return {"wall_s": wall, "cpu_s": cpu, "lines": lines}


def pipeline_import_s(cache: Path, home: Path) -> float:
    """Seconds a fresh process takes to import what a build imports when it starts (the CLI's
    own imports already done, as they are by then)."""
    script = (
        "import time, persona_cli.main\n"
        "t = time.perf_counter()\n"
        "import persona_pipeline.build, persona_pipeline.steps.config\n"
        "print(time.perf_counter() - t)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=_env(home, cache),
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return float(out.stdout.strip().splitlines()[-1])


def breakdown(run: dict[str, Any], pipeline_imports: float) -> dict[str, float]:
    lines: list[tuple[float, str]] = run["lines"]
    at = {key: next(t for t, text in lines if key in text) for key in ("uploading", "building")}
    steps = [t for t, text in lines if STEP.match(text)]
    loads = sum(float(m.group(1)) for _, text in lines if (m := MODELS_LOADED.search(text)))
    first_step, last_step = steps[0], steps[-1]
    parts = {
        "import_s": at["uploading"] + pipeline_imports,
        "upload_s": at["building"] - at["uploading"],
        "dagster_setup_s": (first_step - at["building"] - pipeline_imports) + (run["wall_s"] - last_step),
        "model_load_s": loads,
        "inference_s": last_step - first_step - loads,
    }
    return {k: round(v, 2) for k, v in parts.items()}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        root = Path(tmp)
        folder = _inputs(root / "inputs")
        cache = root / "model-cache"
        runs = {}
        for name in ("first", "second"):
            runs[name] = fresh_build(folder, root / f"home-{name}", cache)
        imports = pipeline_import_s(cache, root / "home-probe")
    parts = {name: breakdown(run, imports) for name, run in runs.items()}
    print(f"{'run':<8} {'wall s':>7} {'cpu s':>6} " + " ".join(f"{k:>16}" for k in parts["second"]))
    for name, run in runs.items():
        print(
            f"{name:<8} {run['wall_s']:7.2f} {run['cpu_s']:6.2f} "
            + " ".join(f"{v:16.2f}" for v in parts[name].values())
        )
    record(
        "startup",
        {
            "stack_fresh_cli_build_s": {name: round(run["wall_s"], 2) for name, run in runs.items()},
            "stack_fresh_cli_build_breakdown": parts,
            "stack_fresh_cli_build_cpu_s": {name: round(run["cpu_s"], 2) for name, run in runs.items()},
            "stack_fresh_cli_build_conditions": (
                "persona-core build of 4 photos + 2 voice clips, new process and PERSONA_HOME each; "
                "first: empty model cache, second: the cache the first left; "
                f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
            ),
        },
    )


if __name__ == "__main__":
    main()
