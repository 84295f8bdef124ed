"""`persona-core cache purge`: a renderer host removes a persona's packs from a pack cache
folder (every version, or the ones named), with JSON for scripts and exit 2 for a bad id."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from persona_cli.main import app
from persona_core.publish import publish_pack
from persona_core.runtime import PackCache, StorePackSource
from persona_core.settings import Settings
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.testing import make_pack

runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Every invocation configures root logging; put it back for the tests that follow."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """alice v1, v2 and bob v1 published."""
    home = tmp_path / "home"
    s = Settings(home=home)
    meta, blobs = open_metadata_store(s), open_blob_store(s)
    for persona, versions in (("alice", 2), ("bob", 1)):
        meta.create_persona(persona, {})
        for v in range(1, versions + 1):
            meta.create_version(persona, {"files": []})
            publish_pack(meta, blobs, make_pack(blobs, persona, v, n_anchors=4, seed=v))
    yield home
    meta.close()


def _fill(home: Path, folder: Path) -> PackCache:
    s = Settings(home=home)
    meta, blobs = open_metadata_store(s), open_blob_store(s)
    cache = PackCache(folder, StorePackSource(meta, blobs))
    for persona, version in (("alice", 1), ("alice", 2), ("bob", 1)):
        cache.load(persona, version)
    meta.close()
    return cache


def test_purge_removes_every_version_of_the_persona_only(home: Path, tmp_path: Path) -> None:
    """--cache-dir names the renderer's folder; the persona's files go, another persona's stay."""
    cache = _fill(home, tmp_path / "renderer")
    result = runner.invoke(app, ["--home", str(home), "cache", "purge", "alice",
                                 "--cache-dir", str(cache.cache_dir), "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc == {"persona_id": "alice", "cache_dir": str(cache.cache_dir), "removed_versions": [1, 2]}
    assert cache.cached_versions("alice") == []
    assert cache.cached_versions("bob") == [1]


def test_purge_one_version_in_the_default_folder(home: Path) -> None:
    """Without --cache-dir the CLI's own pack cache (PERSONA_CACHE_DIR/packs, as `drift` uses)."""
    cache = _fill(home, Settings(home=home).resolved_cache_dir / "packs")
    result = runner.invoke(app, ["--home", str(home), "cache", "purge", "alice", "--version", "2"])
    assert result.exit_code == 0, result.stderr
    assert "purged alice" in result.stdout
    assert "v2" in result.stdout
    assert cache.cached_versions("alice") == [1]


def test_purge_of_nothing_cached_and_bad_ids(home: Path, tmp_path: Path) -> None:
    """Nothing cached is not an error; an unsafe persona id is refused with exit 2."""
    result = runner.invoke(app, ["cache", "purge", "carol", "--cache-dir", str(tmp_path / "empty"), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["removed_versions"] == []
    bad = runner.invoke(app, ["cache", "purge", "../etc", "--cache-dir", str(tmp_path / "empty")])
    assert bad.exit_code == 2
    assert "invalid_input" in bad.stderr
