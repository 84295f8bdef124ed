"""The persona-core CLI on a real embedded store: documented exit codes, JSON for scripts,
one-line errors without tracebacks."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from open_files import open_files_under
from rich.console import Console
from typer.testing import CliRunner

from persona_cli.common import ExitCode
from persona_cli.main import app
from persona_cli.progress import BUILD_PROGRESS_LOGGER, steps
from persona_core.ingest import resubmit_version, submit_version
from persona_core.publish import publish_pack
from persona_core.settings import Settings
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.testing import CREATED_AT, make_pack
from registry_api.key_store import ApiKeyStore

runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Every invocation configures root logging; put it back for the tests that follow."""
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
    """An embedded store with alice v1 published and v2 pending."""
    home = tmp_path / "home"
    home.mkdir()
    s = Settings(home=home)
    meta, blobs = open_metadata_store(s), open_blob_store(s)
    meta.create_persona("alice", {"display_name": "Alice"})
    meta.create_version("alice", {"files": []})
    publish_pack(meta, blobs, make_pack(blobs, "alice", 1, n_anchors=6))
    meta.create_version("alice", {"files": []})
    meta.close()
    return home


def test_help_documents_exit_codes() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for line in ("0  ok", "2  usage or bad input", "3  not found", "4  integrity", "5  build blocked"):
        assert line in result.stdout


def test_versions_table_and_json(home: Path) -> None:
    code, stdout, _ = cli(home, "versions", "alice")
    assert code == 0
    assert "published" in stdout
    assert "pending" in stdout
    code, stdout, _ = cli(home, "versions", "alice", "--json")
    rows = json.loads(stdout)
    assert [(r["version"], r["status"]) for r in rows] == [(1, "published"), (2, "pending")]
    assert len(rows[0]["content_hash"]) == 64
    # the global flag works too
    code, stdout, _ = cli(home, "--json", "versions", "alice")
    assert json.loads(stdout) == rows


def test_versions_say_what_a_version_rebuilds_with_which_thresholds_and_when_it_changed_nothing(
    home: Path, tmp_path: Path,
) -> None:
    """A rebuild names its source and thresholds, and a pack equal to its source's says so; an
    imported version says its row times are the import's and carries the pack's build time."""
    s = Settings(home=home)
    meta, blobs = open_metadata_store(s), open_blob_store(s)
    meta.create_persona("bob", {})
    submit_version(meta, blobs, "bob", [("front.jpg", (FACES / "obama.jpg").read_bytes(), "image")])
    first = make_pack(blobs, "bob", 1, n_anchors=4)
    source = publish_pack(meta, blobs, first)
    resubmit_version(meta, blobs, "bob", 1, thresholds={"blur_min": 40})
    publish_pack(meta, blobs, first.model_copy(update={"version": 2}))  # the same content
    resubmit_version(meta, blobs, "bob")
    publish_pack(meta, blobs, make_pack(blobs, "bob", 3, n_anchors=5))  # other content
    meta.close()
    blobs.close()

    code, stdout, _ = cli(home, "--json", "versions", "bob")
    assert code == 0
    origins = [d["origin"] for d in json.loads(stdout)]
    assert origins == [
        {"kind": "upload"},
        {"kind": "rebuild", "version": 1, "thresholds": {"blur_min": 40}, "same_content_as": 1},
        {"kind": "rebuild", "version": 2, "thresholds": None, "same_content_as": None},
    ]
    code, stdout, _ = cli(home, "versions", "bob")
    assert 'rebuild of v1, thresholds {"blur_min": 40}; same content as v1' in stdout
    assert "rebuild of v2, default thresholds " in stdout

    archive = tmp_path / "bob.personapack"
    assert cli(home, "pack", "export", "bob", "-v", "1", "-o", str(archive))[0] == 0
    other = tmp_path / "other"
    assert cli(other, "pack", "import", str(archive))[0] == 0
    code, stdout, _ = cli(other, "--json", "versions", "bob")
    (imported,) = json.loads(stdout)
    assert imported["origin"] == {"kind": "import", "persona_id": "bob", "version": 1,
                                  "content_hash": source.content_hash, "built_at": CREATED_AT,
                                  "note": "created and published are the times of the import"}
    assert f"import of bob v1, built {CREATED_AT}; times are the import's" in cli(other, "versions", "bob")[1]


@pytest.mark.parametrize("command", [["rebuild"], ["drift"], ["pack", "show"], ["pack", "export"]])
def test_dash_v_is_the_version_a_command_reads_everywhere(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert re.search(r"-v, --version\b", result.stdout), result.stdout


def test_pack_show(home: Path) -> None:
    code, stdout, _ = cli(home, "pack", "show", "alice")
    assert code == 0
    assert "alice v1" in stdout
    assert "A_SELFIE" in stdout
    code, stdout, _ = cli(home, "pack", "show", "alice", "--version", "1", "--json")
    doc = json.loads(stdout)
    assert (doc["persona_id"], doc["version"]) == ("alice", 1)
    assert set(doc["anchor_sets"]) == {"A_SELFIE", "B_MIRROR", "C_CUTAWAY"}


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        (["versions", "nobody"], ExitCode.NOT_FOUND, "persona_not_found"),
        (["pack", "show", "alice", "--version", "2"], ExitCode.NOT_FOUND, "version_not_found"),
        (["pack", "show", "nobody"], ExitCode.NOT_FOUND, "persona_not_found"),
        (["pack", "import", "missing.personapack"], ExitCode.USAGE, "invalid_input"),
        (["keys", "revoke", "0000000000000000"], ExitCode.NOT_FOUND, "not_found"),
        (["keys", "create", "ci", "--scope", "superuser"], ExitCode.USAGE, "invalid_input"),
    ],
)
def test_errors_are_one_line_with_code(home: Path, args: list[str], code: int, error: str) -> None:
    """A typed error prints one line naming its code (no traceback) and exits with its documented code."""
    exit_code, stdout, stderr = cli(home, *args)
    assert exit_code == code
    assert stderr.strip().count("\n") == 0
    assert f"[{error}]" in stderr
    assert "Traceback" not in stderr + stdout
    exit_code, stdout, _ = cli(home, *args, "--json")
    assert exit_code == code
    assert json.loads(stdout)["error"]["code"] == error


def test_usage_errors_exit_2(home: Path) -> None:
    assert cli(home, "pack", "show", "alice", "--version", "0")[0] == ExitCode.USAGE
    assert cli(home, "no-such-command")[0] == ExitCode.USAGE


def test_export_verify_import_round_trip(home: Path, tmp_path: Path) -> None:
    archive = tmp_path / "alice.personapack"
    code, stdout, _ = cli(home, "pack", "export", "alice", "-o", str(archive), "--json")
    assert code == 0
    exported = json.loads(stdout)
    assert archive.is_file()

    code, stdout, _ = cli(home, "pack", "verify", str(archive), "--json")
    assert code == 0
    assert json.loads(stdout)["content_hash"] == exported["content_hash"]

    other = tmp_path / "other"
    code, stdout, stderr = cli(other, "pack", "import", str(archive), "--json")
    assert code == 0, stderr
    imported = json.loads(stdout)
    assert imported["content_hash"] == exported["content_hash"]
    assert imported["created_persona"] is True
    code, stdout, _ = cli(other, "versions", "alice", "--json")
    assert [(r["version"], r["status"]) for r in json.loads(stdout)] == [(1, "published")]
    assert cli(other, "pack", "verify", "alice")[0] == 0


def test_tampered_archive_exits_4_and_changes_nothing(home: Path, tmp_path: Path) -> None:
    archive = tmp_path / "alice.personapack"
    assert cli(home, "pack", "export", "alice", "-o", str(archive))[0] == 0
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    blob = sorted(k for k in members if k.startswith("blobs/"))[0]
    members[blob] = members[blob][:-1] + b"\x00"
    bad = tmp_path / "bad.personapack"
    with tarfile.open(bad, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    assert cli(home, "pack", "verify", str(bad))[0] == ExitCode.INTEGRITY
    other = tmp_path / "other"
    code, _, stderr = cli(other, "pack", "import", str(bad))
    assert code == ExitCode.INTEGRITY
    assert "[archive_integrity]" in stderr
    assert cli(other, "--json", "versions", "alice")[0] == ExitCode.NOT_FOUND


def test_verify_detects_a_corrupted_stored_blob(home: Path) -> None:
    assert cli(home, "pack", "verify", "alice")[0] == 0
    s = Settings(home=home)
    meta = open_metadata_store(s)
    ref = sorted(meta.get_published("alice", 1).blob_refs)[0]
    digest = ref.removeprefix("sha256:")
    path = home / "blobs" / "blobs" / digest[:2] / digest
    path.write_bytes(path.read_bytes() + b"tampered")
    code, _, stderr = cli(home, "pack", "verify", "alice")
    assert code == ExitCode.INTEGRITY
    assert "[integrity_error]" in stderr


def test_keys_create_list_revoke(home: Path) -> None:
    args = ("keys", "create", "renderer", "--scope", "read", "--persona", "alice", "--json")
    code, stdout, _ = cli(home, *args)
    assert code == 0
    created = json.loads(stdout)
    assert created["api_key"].startswith(f"pk_{created['key_id']}_")
    assert created["persona_ids"] == ["alice"]

    code, stdout, _ = cli(home, "keys", "list", "--json")
    listed = json.loads(stdout)
    assert [k["key_id"] for k in listed] == [created["key_id"]]
    assert "api_key" not in listed[0]  # the secret is shown once, never listed
    assert created["api_key"] not in stdout

    code, stdout, _ = cli(home, "keys", "revoke", created["key_id"], "--json")
    assert code == 0
    assert json.loads(stdout)["revoked_at"] is not None
    meta = open_metadata_store(Settings(home=home))
    assert ApiKeyStore.of(meta).verify_api_key(created["api_key"]) is None
    meta.close()


def test_keys_create_refuses_a_name_an_unrevoked_key_holds(home: Path) -> None:
    """A second key under the same name is refused (exit 2, already_exists, the key named) unless
    --allow-duplicate; once the first is revoked the name is free again."""
    code, stdout, _ = cli(home, "--json", "keys", "create", "ci", "--scope", "read")
    first = json.loads(stdout)["key_id"]
    code, stdout, stderr = cli(home, "--json", "keys", "create", "ci", "--scope", "admin")
    assert code == ExitCode.USAGE, stdout + stderr
    error = json.loads(stdout)["error"]
    assert error["code"] == "already_exists"
    assert f"an API key named 'ci' exists ({first})" in error["message"]
    assert [k["key_id"] for k in json.loads(cli(home, "--json", "keys", "list")[1])] == [first]

    code, stdout, _ = cli(home, "--json", "keys", "create", "ci", "--allow-duplicate")
    assert code == 0
    second = json.loads(stdout)["key_id"]
    assert cli(home, "keys", "revoke", first)[0] == 0
    assert cli(home, "keys", "revoke", second)[0] == 0
    assert cli(home, "keys", "create", "ci")[0] == 0


@pytest.mark.parametrize(
    "args",
    [
        ("keys", "create", "ci", "--scope", "read", "--json"),
        ("keys", "list", "--json"),
        ("keys", "revoke", "0000000000000000", "--json"),  # fails (exit 3): closes all the same
        ("versions", "alice", "--json"),
        ("pack", "show", "alice"),
        ("migrate",),
    ],
    ids=lambda a: "-".join(a[:2]),
)
def test_commands_release_the_database_when_they_end(home: Path, args: tuple[str, ...]) -> None:
    """A command (run in-process, as a test runner or a script calling main() does) leaves no
    database file or pooled connection open behind it, whether it succeeds or fails."""
    cli(home, *args)
    assert open_files_under(home) == []


def test_build_refuses_an_empty_folder(home: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no photos here")
    code, _, stderr = cli(home, "build", str(empty), "--persona", "bob")
    assert code == ExitCode.USAGE
    assert "no photos" in stderr


FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "photos"


@pytest.mark.slow
@pytest.mark.models
@pytest.mark.dagster
def test_build_two_photos_is_blocked_with_exit_5(tmp_path: Path) -> None:
    """Two good photos are too few for a selfie set: the gate blocks publish, the CLI says so."""
    folder = tmp_path / "upload"
    (folder / "A_SELFIE").mkdir(parents=True)
    (folder / "A_SELFIE" / "obama.jpg").write_bytes((FACES / "obama.jpg").read_bytes())
    (folder / "obama1.jpg").write_bytes((FACES / "obama1.jpg").read_bytes())
    (folder / "notes.txt").write_text("not an input")
    home = tmp_path / "home"

    code, stdout, stderr = cli(home, "build", str(folder), "--persona", "obama", "--json")
    assert code == ExitCode.BLOCKED
    summary = json.loads(stdout)
    assert (summary["persona_id"], summary["version"], summary["status"]) == ("obama", 1, "blocked")
    assert summary["anchors_per_mode"]["A_SELFIE"] == 2
    assert summary["checks"]["enough_anchors"]["passed"] is False
    skipped = [(s["name"], s["code"]) for s in summary["skipped_files"]]
    assert skipped == [("notes.txt", "unsupported_media_type")]
    # The viewer shows a blocked version's reasons: the build prints a link a browser can open.
    assert summary["viewer_url"].startswith("http://127.0.0.1:8000/ui/personas/obama/open?v=1&exp=")
    assert "Traceback" not in stderr
    assert "Stack Trace" not in stderr  # Dagster's run log stays quiet without --verbose

    code, stdout, _ = cli(home, "versions", "obama", "--json")
    assert [(r["version"], r["status"]) for r in json.loads(stdout)] == [(1, "blocked")]
    code, stdout, stderr = cli(home, "build", str(folder), "--persona", "obama")
    assert code == ExitCode.BLOCKED
    assert "[build_blocked]" in stderr
    assert "viewer (opens for 15 min): http://127.0.0.1:8000/ui/personas/obama/open?v=2&exp=" in stdout


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
def test_build_progress_lines_carry_the_time_since_the_start(terminal: bool) -> None:
    """The builder's step lines and the command's own, each with its seconds, in a pipe as they
    come and on a terminal above a spinner; the builder's logger is left as it was."""
    sink = io.StringIO()
    console = Console(file=sink, force_terminal=terminal, width=200)
    log = logging.getLogger(BUILD_PROGRESS_LOGGER)
    before = (log.level, log.propagate, list(log.handlers))
    with steps(console) as say:
        say("uploading 2 files")
        log.info("%s %s", "obama.v1", "qc: loading models yunet")
        log.debug("not a progress line")
    lines = [ln for ln in sink.getvalue().splitlines() if ln.strip().endswith(("files", "yunet"))]
    said = [ln.split("s ", 1)[1] for ln in lines]
    assert said == ["uploading 2 files", "obama.v1 qc: loading models yunet"]
    assert all(float(ln.split("s ", 1)[0].split()[-1]) >= 0.0 for ln in lines)
    assert "not a progress line" not in sink.getvalue()
    assert (log.level, log.propagate, list(log.handlers)) == before


@pytest.mark.slow
@pytest.mark.models
@pytest.mark.dagster
def test_build_in_a_pipe_prints_each_step_as_it_ends(tmp_path: Path) -> None:
    """`persona-core build` in a pipe: a line per step (and around the model loads) on stderr,
    each with its time, read while the build still runs; with --json stdout is one document."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERSONA_", "DAGSTER_"))}
    env["PERSONA_HOME"] = str(tmp_path / "home")
    exe = Path(sys.executable).with_name("persona-core")
    proc = subprocess.Popen([str(exe), "--json", "build", str(EXAMPLES), "--persona", "alice"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    assert proc.stdout is not None
    arrived: list[tuple[float, str]] = []
    for line in proc.stderr:
        arrived.append((time.monotonic(), line.rstrip("\n")))
    stdout = proc.stdout.read()
    assert proc.wait(timeout=600) == 0, "\n".join(ln for _, ln in arrived)
    assert json.loads(stdout)["status"] == "published"
    said = [ln.split("s ", 1)[1] for _, ln in arrived if re.match(r"^ *\d+\.\ds ", ln)]
    for step in ("inputs", "qc", "faces", "face_embeddings", "style_embeddings", "anchor_sets", "masks",
                 "persona_pack"):
        assert any(s.startswith(f"alice.v1 {step}: ") for s in said), (step, said)
    assert any("qc: loading models " in s for s in said)
    assert any(re.search(r"qc: models loaded in \d+\.\d s", s) for s in said)
    at = {ln.split("s ", 1)[1].split(":")[0]: t for t, ln in arrived if " alice.v1 " in ln}
    # Each line came as its step ended, not all at once when the process exited.
    assert at["alice.v1 persona_pack"] - at["alice.v1 qc"] > 0.5


def _stored(home: Path) -> tuple[list[dict[str, object]], list[str]]:
    """The versions (as `versions --json` shows them) and the build manifests under ``home``."""
    code, stdout, _ = cli(home, "--json", "versions", "alice")
    assert code == 0
    s = Settings(home=home)
    blobs = open_blob_store(s)
    try:
        return json.loads(stdout), blobs.list_objects("manifests/")
    finally:
        blobs.close()


@pytest.mark.dagster
@pytest.mark.parametrize(("thresholds", "says"), [
    ('{"blurmin": 40}', "unknown pipeline config keys: ['blurmin']"),
    ('{"blur_min": "sharp"}', "pipeline config blur_min: Input should be a valid number"),
    ('{"required_modes": ["D_DRONE"]}', "unknown camera mode 'D_DRONE'"),
    ('{"workers": 0}', "workers and video_max_frames must be >= 1"),
    ('{"blur_min": 40', "--thresholds is not JSON"),
    ("[40]", "--thresholds must be a JSON object"),
])
def test_rebuild_with_bad_thresholds_creates_nothing(home: Path, thresholds: str, says: str) -> None:
    """A bad threshold is refused (exit 2, the cause named) before a version exists."""
    before = _stored(home)
    code, stdout, stderr = cli(home, "--json", "rebuild", "alice", "--from-version", "1",
                               "--thresholds", thresholds)
    assert code == ExitCode.USAGE, stdout + stderr
    error = json.loads(stdout)["error"]
    assert error["code"] == "invalid_input"
    assert says in error["message"]
    assert _stored(home) == before


@pytest.mark.dagster
def test_rebuild_after_pack_import_is_refused_with_a_typed_error(home: Path, tmp_path: Path) -> None:
    """An imported pack carries no input files: rebuilding it is refused (exit 2, JSON error or
    one line), never a traceback, and nothing is written."""
    archive = tmp_path / "alice.personapack"
    assert cli(home, "pack", "export", "alice", "-o", str(archive))[0] == 0
    other = tmp_path / "other"
    assert cli(other, "pack", "import", str(archive))[0] == 0
    before = _stored(other)

    code, stdout, stderr = cli(other, "--json", "rebuild", "alice")
    assert code == ExitCode.USAGE, stdout + stderr
    error = json.loads(stdout)["error"]
    assert error["code"] == "not_rebuildable"
    assert error["message"].startswith("alice v1 was imported from a .personapack archive")
    assert "upload the photos again" in error["message"]
    code, stdout, stderr = cli(other, "rebuild", "alice", "--from-version", "1")
    assert code == ExitCode.USAGE
    assert stderr.startswith("error [not_rebuildable]: alice v1 was imported")
    assert "Traceback" not in stdout + stderr
    assert _stored(other) == before


@pytest.mark.dagster
def test_rebuilding_an_imported_version_names_the_version_with_uploads(home: Path, tmp_path: Path) -> None:
    archive = tmp_path / "alice.personapack"
    assert cli(home, "pack", "export", "alice", "-o", str(archive))[0] == 0
    other = tmp_path / "other"
    assert cli(other, "pack", "import", str(archive))[0] == 0
    s = Settings(home=other)
    meta, blobs = open_metadata_store(s), open_blob_store(s)
    submit_version(meta, blobs, "alice", [("front.jpg", (FACES / "obama.jpg").read_bytes(), "image")])
    meta.close()
    blobs.close()
    before = _stored(other)

    code, stdout, _ = cli(other, "--json", "rebuild", "alice", "--from-version", "1")
    assert code == ExitCode.USAGE
    assert "v2 holds uploaded files: rebuild from that version" in json.loads(stdout)["error"]["message"]
    assert _stored(other) == before


def test_the_cli_uses_the_dagster_instance_the_platform_set(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a deployed host DAGSTER_HOME names the instance the webserver and the daemon use: the
    CLI's builds go there (where the UI lists them), not to a SQLite folder under its home;
    PERSONA_DAGSTER_HOME still names another one, and with neither it is home/dagster."""

    def dagster_home() -> str:
        code, stdout, stderr = cli(home, "info", "--json")
        assert code == 0, stderr
        return str(json.loads(stdout)["dagster_home"])

    monkeypatch.delenv("PERSONA_DAGSTER_HOME", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert dagster_home() == str((home / "dagster").resolve())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "deployed"))
    assert dagster_home() == str(tmp_path / "deployed")
    monkeypatch.setenv("PERSONA_DAGSTER_HOME", str(tmp_path / "chosen"))
    assert dagster_home() == str(tmp_path / "chosen")
