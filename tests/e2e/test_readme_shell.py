"""The README's shell blocks for data ops and integrators run as written, in order, on the
embedded default (a fresh PERSONA_HOME, no DAGSTER_HOME) after the demo, and every command in
them succeeds. Long-running or repo-writing `make` targets (`make dagster`, `make eval-tags`)
are checked with `make -n` (the target exists and expands) instead of being started."""

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
    # What the ops block claims: alice v1 published, v2 rebuilt from its inputs and published.
    versions = subprocess.run([str(ROOT / ".venv/bin/persona-core"), "--json", "versions", "alice"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120, check=True)
    docs = json.loads(versions.stdout)
    assert [d["status"] for d in docs[:2]] == ["published", "published"]
    assert docs[0]["reasons"] == []
