"""`persona-core build` checks a folder's file count and sizes before it reads the files, and
reads them one at a time: its memory does not grow with the folder (bench/bench_intake.py
measures the 40 x 24 MiB case)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

FACE = Path(__file__).resolve().parents[1] / "fixtures" / "faces" / "obama.jpg"
MIB = 1024 * 1024


# Linux counts the memory a process had when it called exec into the exec'd program's peak, and
# a child forked from this (large, model-holding) pytest process starts from pytest's own peak.
# A small Python process in between forks the CLI from a few MB, so the figure is the CLI's own.
_MEASURE = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
out = proc.stdout.read()
_, _, usage = os.wait4(proc.pid, 0)
sys.stderr.write(str(usage.ru_maxrss))
sys.stdout.buffer.write(out)
"""


def _peak_rss_mb(folder: Path, home: Path, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    cli = Path(sys.executable).with_name("persona-core")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEASURE,
            str(cli),
            "--home",
            str(home),
            "--json",
            "build",
            str(folder),
            "--persona",
            "big",
        ],
        env={**os.environ, **env},
        capture_output=True,
        check=False,
    )
    return int(done.stderr) / 1024, json.loads(done.stdout)


def test_a_folder_too_large_to_upload_is_refused_without_reading_it(tmp_path: Path) -> None:
    """12 photos of 24 MiB (288 MiB) against a limit of 8 files: refused too_many_files, and
    the CLI's peak memory stays far below the folder's size."""
    folder = tmp_path / "photos"
    folder.mkdir()
    padded = FACE.read_bytes().ljust(24 * MIB, b"\0")
    for i in range(12):
        (folder / f"IMG_{i:04d}.jpg").write_bytes(padded)
    peak_mb, doc = _peak_rss_mb(folder, tmp_path / "home", {"PERSONA_MAX_UPLOAD_FILES": "8"})
    assert doc["error"]["code"] == "too_many_files"
    assert peak_mb < 250, f"peak RSS {peak_mb:.0f} MB for a 288 MiB folder"
