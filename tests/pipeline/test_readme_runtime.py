"""The README's "In a renderer" Python block runs exactly as written: against a registry serving
a pack built from the fixture photos, it prints one line per rendered frame, and the frame of
another person forces a reset."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from pipeline_support import OBAMA, Home

from persona_core.store.aliases import UNSET
from persona_pipeline.build import build_version
from persona_pipeline.steps.config import PipelineConfig
from registry_api.config import ApiSettings
from registry_api.key_store import ApiKeyStore
from registry_api.server import BackgroundServer

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def renderer_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("In a renderer") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "no python block under 'In a renderer'"
    return match.group(1)


def test_the_renderer_snippet_runs_as_written(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    v = home.upload("demo-obama", OBAMA)
    with dg.instance_for_test() as instance:
        result = build_version("demo-obama", v.version, home.settings, instance,
                               config=PipelineConfig(required_modes=()))
    assert result.status.value == "published", result.errors
    # The snippet pins `live`, as the README's integrator block sets it.
    home.meta.aliases.move("demo-obama", "live", v.version, expected=UNSET, actor="test", reason="reviewed")
    key = ApiKeyStore.of(home.meta).create_api_key("renderer", ["read"])[1]
    settings = ApiSettings(env="test", home=tmp_path / "home")
    with BackgroundServer(settings, metadata=home.meta, blobs=home.blobs, with_grpc=False) as server:
        env = {**os.environ, "KEY": key, "PERSONA_REGISTRY_URL": server.base_url,
               "PERSONA_CACHE_DIR": str(tmp_path / "renderer-cache")}
        out = subprocess.run([sys.executable, "-c", renderer_snippet()], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3, out.stdout
    genuine, other = lines[0].split(), lines[1].split()
    assert genuine[0] == "0"
    assert genuine[2:] == ["ok", "False", "ok"]
    assert other[0] == "1"
    assert other[2:] == ["fail", "True", "identity_drift_fail"]
    assert float(other[1]) < float(genuine[1])
    assert "intensity" in lines[2]  # the clamped timeline
    assert (tmp_path / "renderer-cache" / "demo-obama").is_dir()  # the cache went where it was told
