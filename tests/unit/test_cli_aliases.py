"""persona-core alias / promote / rollback / retract on a real embedded store: moves recorded
with cli:<user> and the reason, rollback to the previous target, retraction refused while an
alias points at the version, and the documented exit codes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from persona_cli.main import app
from persona_core.publish import publish_pack
from persona_core.settings import Settings
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.testing import make_pack

runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def cli(home: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["--home", str(home), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """alice v1, v2 and v3 published."""
    s = Settings(home=tmp_path)
    meta, blobs = open_metadata_store(s), open_blob_store(s)
    meta.create_persona("alice", {})
    for n in (1, 2, 3):
        meta.create_version("alice", {"files": []})
        publish_pack(meta, blobs, make_pack(blobs, "alice", n, n_anchors=6, seed=n))
    meta.close()
    return tmp_path


def test_promote_rollback_alias_and_retract(home: Path) -> None:
    code, stdout, _ = cli(home, "promote", "alice", "1", "--to", "live", "--reason", "reviewed")
    assert (code, stdout.strip()) == (0, "alice live: (new) -> v1 (reviewed)")
    assert cli(home, "promote", "alice", "3")[0] == 0  # --to live by default
    code, stdout, _ = cli(home, "--json", "alias", "get", "alice", "live")
    doc = json.loads(stdout)
    assert (doc["version"], doc["updated_by"].startswith("cli:")) == (3, True)

    code, stdout, _ = cli(home, "rollback", "alice", "live", "--reason", "v3 looks wrong")
    assert (code, stdout.strip()) == (0, "alice live: v3 -> v1 (v3 looks wrong)")
    code, stdout, _ = cli(home, "--json", "alias", "history", "alice", "live")
    moves = json.loads(stdout)
    assert [(m["from_version"], m["to_version"], m["reason"]) for m in moves] == [
        (3, 1, "v3 looks wrong"), (1, 3, "promote 3 to live"), (None, 1, "reviewed")]
    assert all(m["actor"].startswith("cli:") for m in moves)

    assert cli(home, "alias", "set", "alice", "staging", "live", "--reason", "same as live")[0] == 0
    code, stdout, _ = cli(home, "--json", "alias", "list", "alice")
    assert [(a["alias"], a["version"]) for a in json.loads(stdout)] == [("live", 1), ("staging", 1)]
    code, _, stderr = cli(home, "alias", "set", "alice", "live", "2", "--reason", "x", "--expected", "3")
    assert (code, "alias_conflict" in stderr) == (1, True)

    code, _, stderr = cli(home, "retract", "alice", "1", "--reason", "bad")
    assert (code, "alias_in_use" in stderr, "live" in stderr) == (2, True, True)
    code, stdout, _ = cli(home, "retract", "alice", "3", "--reason", "bad batch")
    assert (code, stdout.strip()) == (0, "alice v3 retracted: bad batch")
    code, _, stderr = cli(home, "promote", "alice", "3")
    assert (code, "retracted" in stderr) == (2, True)
    code, stdout, _ = cli(home, "--json", "versions", "alice")
    assert [v["status"] for v in json.loads(stdout)] == ["published", "published", "retracted"]

    assert cli(home, "alias", "delete", "alice", "staging", "--reason", "done")[0] == 0
    assert cli(home, "alias", "get", "alice", "staging")[0] == 3
    assert cli(home, "alias", "set", "alice", "latest", "1", "--reason", "x")[0] == 2
