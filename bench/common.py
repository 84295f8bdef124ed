"""Helpers shared by the benchmarks: percentiles, the merged results file and the build's
model-load line."""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results.json"
# A build step's model-load line (persona_pipeline/defs/assets.py, `_with_models`).
MODELS_LOADED = re.compile(r"models loaded in ([0-9.]+) s")


def percentiles(samples_s: list[float] | np.ndarray, scale: float) -> dict[str, float]:
    """p50/p99/max of samples in seconds, multiplied by ``scale`` (1e6 -> us, 1e3 -> ms)."""
    arr = np.asarray(samples_s, dtype=np.float64) * scale
    return {
        "p50": round(float(np.percentile(arr, 50)), 3),
        "p99": round(float(np.percentile(arr, 99)), 3),
        "max": round(float(arr.max()), 3),
    }


def record(section: str, values: dict[str, Any], path: Path | None = None) -> None:
    """Merge ``values`` into bench/results.json (or ``path``; flat keys) and print them.

    Only ``section``'s keys change: the ones it wrote last time and not now (a figure a run
    could not measure) are dropped rather than left standing beside the new ones; every other
    section's keys stay as they are."""
    target = path or RESULTS
    data = json.loads(target.read_text()) if target.exists() else {}
    for stale in set(data.get("_sections", {}).get(section, [])) - set(values):
        data.pop(stale, None)
    data.update(values)
    data.setdefault("_machine", {}).update(
        {"cpu_count": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}
    )
    data.setdefault("_sections", {})[section] = sorted(values)
    target.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    width = max(len(k) for k in values)
    print(f"[{section}]")
    for key, value in values.items():
        print(f"  {key:<{width}}  {value}")
