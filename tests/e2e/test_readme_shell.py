"""The README's shell blocks for data ops and integrators run as written, in order, on one
embedded default (a fresh PERSONA_HOME, no DAGSTER_HOME) after the demo, and every command in
them succeeds (the integrator's curl calls fail on an HTTP error, so a persona created twice
would stop the run). Long-running or repo-writing `make` targets (`make dagster`, `make
eval-tags`) are checked with `make -n` (the target exists and expands) instead of being started."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("## For data ops", "## For integrators")
NOT_STARTED = re.compile(r"^make (dagster|eval-tags)\b")
pytestmark = [pytest.mark.e2e, pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]


def shell_blocks(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(section)
    end = text.find("\n## ", start + 1)
    body = text[start : end if end != -1 else None]
    return re.findall(r"```bash\n(.*?)```", body, flags=re.DOTALL)


def runnable(block: str) -> str:
    lines = []
    for line in block.splitlines():
        match = NOT_STARTED.match(line.strip())
        lines.append(f"make -n {match.group(1)} >/dev/null" if match else line)
    return "\n".join(lines)


def test_readme_shell_blocks_run_as_written(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERSONA_", "DAGSTER_"))}
    env["PERSONA_HOME"] = str(tmp_path / "persona")
    demo = subprocess.run([str(ROOT / ".venv/bin/persona-core"), "demo"], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    # The demo states its own gate next to the default one, and its steps came as progress lines.
    assert "gate: 1 A_SELFIE anchor, 1 C_CUTAWAY anchor (the demo's own gate" in demo.stdout
    assert "inputs: loading models" in demo.stderr
    blocks = [b for section in SECTIONS for b in shell_blocks(section)]
    assert len(blocks) >= 3
    script = "set -euo pipefail\n" + "\n".join(runnable(b) for b in blocks)
    log = tmp_path / "readme.log"
    with log.open("w") as sink:  # a file, not a pipe: the registry started with & keeps it open
        proc = subprocess.Popen(["bash", "-c", script], cwd=ROOT, env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=900)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # the registry the integrator block started
    assert code == 0, log.read_text()[-6000:]
    text = log.read_text()

    def versions(persona: str) -> list[dict[str, object]]:
        run = subprocess.run([str(ROOT / ".venv/bin/persona-core"), "--json", "versions", persona], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120, check=True)
        return list(json.loads(run.stdout))

    # What the ops block claims: alice v1 published, v2 rebuilt from its inputs and published,
    # each build with a progress line per step, and v2 saying what it rebuilds.
    docs = versions("alice")
    assert [d["status"] for d in docs[:2]] == ["published", "published"]
    assert docs[0]["reasons"] == []
    assert docs[1]["origin"] == {"kind": "rebuild", "version": 1, "same_content_as": None,
                                 "thresholds": {"max_anchors_per_mode": 4}}
    assert "alice.v1 persona_pack: published" in text
    assert "alice.v2 persona_pack: published" in text
    # The promote / roll back / retract block: v3 went live, came back off it and was retracted.
    assert "alice live: (new) -> v2" in text
    assert "alice live: v2 -> v3 (v3 reviewed)" in text
    assert "alice live: v3 -> v2 (v3 renders drift)" in text
    assert docs[2]["status"] == "retracted"
    # The integrators': bob is a new persona whose upload waits for the sensor (no daemon here),
    # and the clip's last second fails the drift check, which --fail-on turns into exit 6.
    assert [d["status"] for d in versions("bob")] == ["pending"]
    assert "exit 6" in text
    assert "identity_drift_fail" in text
