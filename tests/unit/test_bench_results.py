"""bench/results.json is tracked: a benchmark (make bench, make eval-tags) rewrites only its own
section's keys, so its diff shows what that run measured and nothing else moves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNS = """
import sys
from pathlib import Path
from bench.common import record
results = Path(sys.argv[1])
record("builder", {"builder_seconds": 1.5}, path=results)
record("eval_tags", {"tags_a": 0.9, "tags_opt_in_b": 0.8}, path=results)
record("eval_tags", {"tags_a": 0.95, "tags_opt_in_note": "no classifier weights"}, path=results)
"""


def test_a_section_replaces_its_own_keys_and_leaves_the_others(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    subprocess.run([sys.executable, "-c", RUNS, str(results)], cwd=ROOT, check=True, capture_output=True)
    doc = json.loads(results.read_text())
    assert doc["builder_seconds"] == 1.5
    assert doc["tags_a"] == 0.95
    assert "tags_opt_in_b" not in doc  # not measured this time: not left standing as if it were
    assert doc["_sections"] == {"builder": ["builder_seconds"], "eval_tags": ["tags_a", "tags_opt_in_note"]}
