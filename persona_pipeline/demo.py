"""The demo: a real persona from the fixture photos and voices, built through Dagster
in-process on the embedded default (SQLite + blob folder under ``home``), with progress
lines while it works and a summary at the end."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from persona_core.errors import InvalidInputError
from persona_core.ingest import submit_version
from persona_core.settings import Settings
from persona_core.store.base import BuildLease
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_pipeline.build import BuildResult, build_version
from persona_pipeline.steps.config import MODES, PipelineConfig

PERSONA_ID = "demo-obama"
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
VOICE_CLIPS = ("a1.wav", "a2.wav")
# The fixture set holds close-ups and half- and full-body photos of one person and no mirror
# selfie (B_MIRROR is filed only on a mirror cue or the uploader's tag), so one anchor in each
# of the other two modes is what it can give.
DEMO_MODES = ("A_SELFIE", "C_CUTAWAY")
DEMO_CONFIG = PipelineConfig(required_modes=DEMO_MODES, min_anchors_per_mode=dict.fromkeys(DEMO_MODES, 1))


def gate_text(config: PipelineConfig) -> str:
    """What ``enough_anchors`` asks of a build under ``config``, in words."""
    if not config.required_modes:
        return "no camera mode required"
    return ", ".join(f"{config.min_anchors(m)} {m} anchor{'s' if config.min_anchors(m) != 1 else ''}"
                     for m in config.required_modes)


DEMO_GATE = (f"{gate_text(DEMO_CONFIG)} (the demo's own gate; the default, which `build` and uploads "
             f"meet, is {gate_text(PipelineConfig())})")


class _ProgressHandler(logging.Handler):
    def __init__(self, console: Console, started: float) -> None:
        super().__init__(logging.INFO)
        self.console, self.started = console, started

    def emit(self, record: logging.LogRecord) -> None:
        self.console.print(f"[dim]{time.perf_counter() - self.started:6.1f}s[/dim] {record.getMessage()}",
                           highlight=False)


def demo_files(fixtures: Path = FIXTURES) -> list[tuple[str, bytes, str]]:
    """Every fixture photo (the corrupt and two-face ones get rejected) and two voice clips."""
    faces = sorted((fixtures / "faces").glob("*.jpg"))
    if not faces:
        raise InvalidInputError(f"no fixture photos under {fixtures}: run the demo from a clone of the repo")
    files = [(p.name, p.read_bytes(), "image") for p in faces]
    return files + [(n, (fixtures / "voices" / n).read_bytes(), "voice") for n in VOICE_CLIPS]


def run_demo(home: Path, progress: bool = True, console: Console | None = None) -> dict[str, Any]:
    """Create ``demo-obama`` in ``home``, build it, print and return a summary."""
    console = console or Console()
    started = time.perf_counter()
    settings = Settings(home=home)
    meta, blobs = open_metadata_store(settings), open_blob_store(settings)
    meta.ensure_persona(PERSONA_ID, {"display_name": "Demo persona (fixture photos)"})
    # Born under this process's lease (the run takes it over), so a killed demo is never stuck.
    record = submit_version(meta, blobs, PERSONA_ID, demo_files(), lease=BuildLease.here())
    handler = _ProgressHandler(console, started)
    log = logging.getLogger("persona_pipeline.build")
    old_level, old_propagate = log.level, log.propagate
    console.print(f"building {PERSONA_ID} v{record.version} in {home} (first run loads the models)",
                  markup=False)
    console.print(f"gate: {DEMO_GATE}", markup=False)
    if progress:
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        # The progress lines are the log lines: don't print them a second time via root.
        log.propagate = False
    try:
        result = build_version(PERSONA_ID, record.version, settings, config=DEMO_CONFIG)
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        log.propagate = old_propagate
    summary = summarize(result, round(time.perf_counter() - started, 2))
    summary["gate"] = DEMO_GATE
    print_summary(summary, console)
    return summary


def summarize(result: BuildResult, seconds: float) -> dict[str, Any]:
    md = result.metadata
    listed = [*md.get("qc", {}).get("rejected", []), *md.get("inputs", {}).get("unreadable", [])]
    rejected = [{"name": r["name"], "reason": r["reason"]} for r in listed]
    dropped = md.get("anchor_sets", {}).get("dropped", {})
    return {
        "persona_id": result.persona_id,
        "version": result.version,
        "status": result.status.value,
        "reasons": list(result.record.reasons),
        "content_hash": result.record.content_hash,
        "anchors_per_mode": md.get("anchor_sets", {}).get("anchors_per_mode", {}),
        "rejected": rejected,
        "not_anchors": dict(dropped),
        "checks": {name: {k: c[k] for k in ("passed", "severity", "description")}
                   for name, c in sorted(result.checks.items())},
        "run_id": result.run_id,
        "seconds": seconds,
    }


def print_summary(summary: dict[str, Any], console: Console) -> None:
    status = summary["status"]
    colour = {"published": "green", "blocked": "yellow"}.get(status, "red")
    title = f"{summary['persona_id']} v{summary['version']}"
    console.print(f"\n[bold]{title}[/bold]: [{colour}]{status}[/{colour}] in {summary['seconds']} s")
    if summary["content_hash"]:
        console.print(f"content hash {summary['content_hash']}")
    for reason in summary["reasons"]:
        console.print(f"  reason: {reason}")
    for note in summary.get("notes", []):
        console.print(f"  note: {note}", markup=False)
    if summary.get("gate"):
        console.print(f"gate: {summary['gate']}", markup=False)
    modes = Table("camera mode", "anchors", title="anchors per mode")
    for mode in MODES:
        modes.add_row(mode, str(summary["anchors_per_mode"].get(mode, 0)))
    console.print(modes)
    rejected = Table("file", "reason", title="rejected files")
    for r in summary["rejected"]:
        rejected.add_row(r["name"], r["reason"])
    for name, why in summary["not_anchors"].items():
        rejected.add_row(name, why)
    console.print(rejected)
    checks = Table("check", "severity", "result", "details", title="checks")
    for name, c in summary["checks"].items():
        checks.add_row(name, c["severity"], check_result(c["passed"], c["severity"]), c["description"])
    console.print(checks)


def check_result(passed: bool, severity: str) -> str:
    """A check's result as a person reads it: a WARN check that did not pass is something to look
    at (defaults written, an outlier named), not a failure; only a failed ERROR check is FAIL."""
    if passed:
        return "pass"
    return "FAIL" if severity == "ERROR" else "warn"
