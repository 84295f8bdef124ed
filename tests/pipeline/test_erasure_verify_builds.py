"""The erasure verifier on a persona built for real (fixture photos, real models, the project's
Dagster instance), on the embedded default and on PostgreSQL + S3: before the erasure it finds
the person in every store the build wrote (so it can fail), after it finds nothing anywhere
(blob store, database, Dagster instance folder, step cache, a renderer's pack cache, a JSON
log), and a copy of one photo planted under an unrelated key is reported."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pipeline_support import FACES, FIXTURE_CONFIG, OBAMA, Home
from services import settings_env
from typer.testing import CliRunner

from persona_cli.main import app
from persona_core.erasure import erase
from persona_core.erasure_verify import Places, SubjectFingerprint, Survivor, fingerprint, verify_erased
from persona_core.errors import PersonaErasedError
from persona_core.logging import configure_logging
from persona_core.refs import sha256_hex
from persona_core.runtime import PackCache, StorePackSource
from persona_core.settings import Settings
from persona_core.store.base import VersionStatus
from persona_pipeline.build import BuildResult, build_version
from persona_pipeline.contact_sheets import contact_sheets_for
from persona_pipeline.erasure import purger_for
from persona_pipeline.instance import project_instance

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]

PERSONA, NEIGHBOUR = "obama", "neighbour"
SHARED = OBAMA[0]  # uploaded for the neighbour too: erasure keeps it for them


@dataclass
class Built:
    home: Home
    result: BuildResult
    renderer: PackCache
    log_file: Path
    subject: SubjectFingerprint
    places: Places


@pytest.fixture
def json_log(tmp_path: Path) -> Iterator[Path]:
    """persona-core's JSON log lines written to a file, as a log shipper would keep them."""
    path = tmp_path / "persona-core.log.jsonl"
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    with path.open("w") as stream:
        configure_logging("INFO", json_output=True, stream=stream)
        yield path
    root.handlers[:] = handlers
    root.setLevel(level)


def _contact_sheet(result: BuildResult) -> bytes:
    import base64  # noqa: PLC0415

    markdown = result.metadata["anchor_sets"]["contact_sheet"]
    return base64.b64decode(markdown.split("base64,", 1)[1].rstrip(")"))


def _build(settings: Settings, tmp_path: Path, log_file: Path) -> Built:
    home = Home(tmp_path / "home", settings)
    version = home.upload(PERSONA, OBAMA).version
    instance = project_instance(home.settings)
    try:
        result = build_version(PERSONA, version, home.settings, instance, config=FIXTURE_CONFIG)
    finally:
        instance.dispose()
    assert result.status == VersionStatus.PUBLISHED, result.errors
    # The neighbour uploads one of the same photos and builds (blocked: one photo is too few):
    # that photo and what the neighbour's build holds of it stay, and are not sought.
    instance = project_instance(home.settings)
    try:
        neighbour = build_version(NEIGHBOUR, home.upload(NEIGHBOUR, [SHARED]).version, home.settings,
                                  instance, config=FIXTURE_CONFIG)
    finally:
        instance.dispose()
    assert neighbour.status == VersionStatus.BLOCKED
    renderer = PackCache(tmp_path / "renderer", StorePackSource(home.meta, home.blobs), latest_ttl_s=0)
    renderer.load(PERSONA)
    subject = fingerprint(home.meta, home.blobs, PERSONA, contact_sheets=[_contact_sheet(result)])
    places = Places.from_settings(home.settings, home.blobs, cache_dirs=[renderer.cache_dir],
                                  log_files=[log_file])
    return Built(home, result, renderer, log_file, subject, places)


def _stores(found: list[Survivor]) -> set[str]:
    return {s.store for s in found}


def _erase_and_verify(built: Built, *, through_cli: bool = False) -> None:
    home = built.home
    before = verify_erased(built.subject, built.places)
    # The verifier can fail: before the erasure it finds the person where the build wrote.
    assert {"blob store", "database", "dagster", "renderer cache"} <= _stores(before)
    assert any("contact sheet" in s.matched for s in before if s.store == "dagster")
    assert any("embedding row" in s.matched for s in before if s.store == "renderer cache")
    assert any(s.location.split("/")[-2:-1] == ["qc"] or "cache/" in s.location for s in before)
    assert built.subject.kept_shared >= 1

    neighbour_holds = home.meta.refs.held_by(NEIGHBOUR)
    # The Dagster instance gives the verifier the same contact sheet the build showed.
    assert contact_sheets_for(home.settings, PERSONA, [1]) == [_contact_sheet(built.result)]
    if through_cli:
        _erase_through_the_cli(built)
    else:
        erase(home.meta, home.blobs, PERSONA, actor="test", reason="asked to be forgotten",
              purgers=[purger_for(home.settings)])
    with pytest.raises(PersonaErasedError):
        built.renderer.load(PERSONA)  # the renderer meets the erasure and purges its copy

    survivors = verify_erased(built.subject, built.places)
    assert survivors == [], "\n".join(map(str, survivors))
    # The photo the neighbour also uploaded, and all their build holds, are still theirs.
    neighbour = home.meta.list_versions(NEIGHBOUR)[0]
    shared_ref = neighbour.inputs["files"][0]["ref"]
    assert sha256_hex(home.blobs.get(shared_ref)) == neighbour.inputs["files"][0]["sha256"]
    assert home.meta.refs.held_by(NEIGHBOUR) == neighbour_holds
    for held in neighbour_holds:
        assert home.blobs.exists(held.ref) if held.kind == "blob" else home.blobs.get_object(held.ref)

    # A copy of one photo under a key nothing links to the person is still found.
    photo = (FACES / OBAMA[1]).read_bytes()
    home.blobs.put_object("misc/unrelated.bin", photo)
    planted = verify_erased(built.subject, built.places)
    assert planted, "the verifier missed a planted copy of a photo"
    assert {s.location.rsplit("/", 1)[-1] for s in planted} == {"unrelated.bin"}
    assert any(s.matched == f"a copy of input sha256:{sha256_hex(photo)[:12]}" for s in planted)


def _erase_through_the_cli(built: Built) -> None:
    """`persona-core erase --verify`, with the renderer's cache and the log named: the renderer
    has not forgotten yet, so its cache is the one survivor (exit 4) until it purges."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    args = ["erase", PERSONA, "--reason", "asked to be forgotten", "--verify", "--json",
            "--verify-cache-dir", str(built.renderer.cache_dir), "--verify-log", str(built.log_file)]
    result = CliRunner().invoke(app, args, env=settings_env(built.home.settings))
    root.handlers[:] = handlers
    assert result.exit_code == 4, result.stderr
    verified = json.loads(result.stdout)["verify"]
    assert verified["fingerprint"]["probes"] == len(built.subject.probes)
    assert {s["store"] for s in verified["survivors"]} == {"renderer cache"}


def test_nothing_survives_erasure_on_sqlite_and_a_blob_folder(tmp_path: Path, json_log: Path) -> None:
    """The embedded default: SQLite (raw file bytes, -wal included) and the local blob folder;
    erased through `persona-core erase --verify`."""
    _erase_and_verify(_build(Settings(home=tmp_path / "home"), tmp_path, json_log), through_cli=True)


@pytest.mark.postgres
@pytest.mark.s3
def test_nothing_survives_erasure_on_postgres_and_s3(
    s3_settings: Settings, postgres_url: str, tmp_path: Path, json_log: Path
) -> None:
    """PostgreSQL (every table's rows as text) and S3 (every key and object)."""
    settings = s3_settings.model_copy(update={"home": tmp_path / "home", "database_url": postgres_url})
    _erase_and_verify(_build(settings, tmp_path, json_log))
