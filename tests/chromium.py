"""Debian's headless Chromium for browser tests (Playwright's own browser download cannot
work here, so Playwright is pointed at /usr/bin/chromium), and where screenshots go."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Gitignored; CI keeps the folder as a build artifact.
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
