"""Which files this test process still holds open: a store left open shows up here."""

from __future__ import annotations

import os
from pathlib import Path


def open_files_under(root: Path) -> list[str]:
    """Files under ``root`` this process holds open (Linux /proc), sorted."""
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed between listing and reading
        if target.startswith(str(root)):
            held.append(target)
    return sorted(held)
