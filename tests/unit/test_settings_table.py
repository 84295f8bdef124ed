"""The README's settings table lists every ``PERSONA_*`` setting the settings classes define and
nothing else, so the documented and the real settings cannot drift apart; and the settings
module is the only place that reads a ``PERSONA_*`` variable."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from persona_core.settings import LogSettings, ModelSettings, Settings
from registry_api.config import ApiSettings

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("persona_core", "persona_pipeline", "registry_api", "persona_cli")
SETTINGS_MODULE = ROOT / "persona_core" / "settings.py"


def _readme_table() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(PERSONA_[A-Z0-9_]+)` \|", section, flags=re.MULTILINE)


def test_the_readme_table_lists_every_setting_once() -> None:
    rows = _readme_table()
    assert len(rows) == len(set(rows)), [r for r in rows if rows.count(r) > 1]
    fields = {f"PERSONA_{name.upper()}" for name in ApiSettings.model_fields}
    assert set(rows) - fields == set(), "rows for settings that do not exist"
    assert fields - set(rows) == set(), "settings missing from the README's table"


def test_the_parts_read_on_their_own_are_part_of_settings() -> None:
    """The model registry and logging read their own slices; Settings holds them all."""
    for part in (ModelSettings, LogSettings):
        assert set(part.model_fields) <= set(Settings.model_fields)
        for name in part.model_fields:
            assert part.model_config.get("env_prefix") == "PERSONA_", name


def _persona_env_reads(tree: ast.AST) -> list[str]:
    """Literal PERSONA_* names read through os.environ[...], os.environ.get or os.getenv."""
    found = []
    for node in ast.walk(tree):
        key: ast.expr | None = None
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and ast.unparse(node.value) == "os.environ"
        ):
            key = node.slice
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in {"os.environ.get", "os.getenv"}
            and node.args
        ):
            key = node.args[0]
        if isinstance(key, ast.Constant) and str(key.value).startswith("PERSONA_"):
            found.append(f"line {node.lineno}: {key.value}")
    return found


def test_no_module_but_the_settings_module_reads_a_persona_variable() -> None:
    offenders = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == SETTINGS_MODULE or "grpc_gen" in path.parts:
                continue
            reads = _persona_env_reads(ast.parse(path.read_text(), str(path)))
            if reads:
                offenders[str(path.relative_to(ROOT))] = reads
    assert offenders == {}
