"""Intake memory: peak RSS of `persona-core build` on a folder of 40 photos of 24 MiB each.

Two runs of the real CLI in a child process (its peak RSS from ``wait4``'s rusage):

- ``refused``: the shipped limits (32 files, 256 MiB an upload): refused ``too_many_files``
  from the files' sizes and first bytes, before any is read whole;
- ``read``: limits raised so the gate reads, decodes and hashes all 40 files, one at a time,
  and refuses the last one (a truncated JPEG, ``corrupt_file``) before anything is stored:
  the most an upload's files cost the CLI before the build.

Each photo is a fixture JPEG padded to 24 MiB (a decoder stops at its end marker), as large
as the default per-file limit allows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import record

FILES = 40
FILE_MIB = 24
FACE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "faces" / "obama.jpg"
CLI = Path(sys.executable).with_name("persona-core")


def _folder(root: Path) -> Path:
    folder = root / "photos"
    folder.mkdir()
    photo = FACE.read_bytes()
    padded = photo + b"\0" * (FILE_MIB * 1024 * 1024 - len(photo))
    for i in range(FILES - 1):
        (folder / f"IMG_{i:04d}.jpg").write_bytes(padded)
    (folder / "zz_cut.jpg").write_bytes(photo[: len(photo) // 3] + b"\0" * (len(padded) - len(photo) // 3))
    return folder


def _peak_rss_mb(folder: Path, home: Path, env: dict[str, str]) -> tuple[float, str]:
    """The CLI child's peak resident set (MB) and its error code (or build status)."""
    proc = subprocess.Popen(
        [str(CLI), "--home", str(home), "--json", "build", str(folder), "--persona", "bench"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    doc = json.loads(stdout) if stdout.strip() else {}
    verdict = doc.get("error", {}).get("code") or doc.get("status") or f"exit {proc.returncode}"
    return round(usage.ru_maxrss / 1024, 1), verdict  # ru_maxrss is in KiB on Linux


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = _folder(root)
        refused_mb, refused = _peak_rss_mb(folder, root / "home-a", {})
        raised = {
            "PERSONA_MAX_UPLOAD_FILES": str(FILES),
            "PERSONA_MAX_UPLOAD_TOTAL_BYTES": str(FILES * FILE_MIB * 1024 * 1024),
        }
        read_mb, read = _peak_rss_mb(folder, root / "home-b", raised)
    record(
        "intake",
        {
            "intake_cli_files": FILES,
            "intake_cli_file_mib": FILE_MIB,
            "intake_cli_peak_rss_mb": max(refused_mb, read_mb),
            "intake_cli_refused_peak_rss_mb": refused_mb,
            "intake_cli_refused_verdict": refused,
            "intake_cli_read_all_peak_rss_mb": read_mb,
            "intake_cli_read_all_verdict": read,
        },
    )


if __name__ == "__main__":
    main()
