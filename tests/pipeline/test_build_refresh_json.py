"""``persona-core build`` reads a ``refresh.json`` next to the photos: the uploader's identity
lines win over the calibrated ones, and the pack records that they did."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_support import FACES, OBAMA

from persona_core.pack import PersonaPack
from persona_core.settings import Settings
from persona_core.store.from_settings import open_blob_store, open_metadata_store

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]


def test_refresh_json_lines_win_and_are_recorded(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "A_SELFIE").mkdir(parents=True)
    for name in OBAMA:
        shutil.copy(FACES / name, folder / "A_SELFIE" / name)
    (folder / "refresh.json").write_text(json.dumps({"identity_drift_warn": 0.7, "identity_drift_fail": 0.5}))
    home = tmp_path / "home"
    exe = Path(sys.executable).with_name("persona-core")
    argv = [str(exe), "--home", str(home), "--json", "build", str(folder), "--persona", "given"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, env=dict(os.environ))
    assert out.returncode == 0, out.stdout + out.stderr
    settings = Settings(home=home)
    meta, blobs = open_metadata_store(settings), open_blob_store(settings)
    pack = PersonaPack.model_validate_json(blobs.get(meta.get_published("given", 1).pack_ref))
    rp = pack.refresh_policy
    assert (rp.identity_drift_warn, rp.identity_drift_fail) == (0.7, 0.5)
    assert rp.identity_calibration is not None
    assert rp.identity_calibration.source == "uploader"
    assert rp.identity_calibration.derived_warn is not None
