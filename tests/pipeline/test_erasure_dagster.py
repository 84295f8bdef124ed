"""Erasing a built persona empties the project's Dagster instance of it: runs, event logs
(materializations with the contact sheet's face thumbnails, the QC table's file names), check
evaluations, compute logs, stored asset values and partitions, down to the bytes of the
instance's files, while a persona built on the same instance keeps all of its own."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from erasure_support import named, slices, survivors
from pipeline_support import FACES, FIXTURE_CONFIG, OBAMA, Home, variant

from persona_core.erasure import ErasureReport, erase
from persona_core.store.base import VersionStatus
from persona_pipeline.build import BuildResult, build_version
from persona_pipeline.defs.assets import build_assets
from persona_pipeline.defs.partitions import persona_versions, personas
from persona_pipeline.erasure import dagster_purger
from persona_pipeline.instance import project_instance

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]

ASSET_KEYS = [key for a in build_assets for key in a.keys]
CHECK_KEYS = [key for a in build_assets for key in a.check_keys]


@dataclass
class Erased:
    home: Home
    instance: dg.DagsterInstance
    gone: BuildResult  # obama v1, erased
    kept: BuildResult  # kept v1, another persona on the same instance
    gone_needles: dict[str, bytes]
    kept_needles: dict[str, bytes]
    before: dict[str, list[str]]  # where the needles were before the erasure
    report: ErasureReport

    @property
    def dagster_home(self) -> Path:
        return self.home.settings.resolved_dagster_home


def _sheet_b64(result: BuildResult) -> str:
    markdown = result.metadata["anchor_sets"]["contact_sheet"]
    return markdown.split("base64,", 1)[1].rstrip(")")


@pytest.fixture(scope="module")
def erased(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Erased]:
    home = Home(tmp_path_factory.mktemp("erasure"))
    instance = project_instance(home.settings)
    kept_files = [(f"kept{i}.jpg", variant(n, "bright"), "image") for i, n in enumerate(OBAMA)]
    kept_version = home.upload("kept", extra=kept_files)
    kept = build_version("kept", kept_version.version, home.settings, instance, config=FIXTURE_CONFIG)
    # Built last, so it holds each asset's "latest materialization" when it is erased.
    gone_version = home.upload("obama", OBAMA)
    gone = build_version("obama", gone_version.version, home.settings, instance, config=FIXTURE_CONFIG)
    assert (kept.status, gone.status) == (VersionStatus.PUBLISHED, VersionStatus.PUBLISHED)
    gone_sheet, kept_sheet = _sheet_b64(gone), _sheet_b64(kept)
    # Both sheets are PNGs of one size: their first bytes (signature, header) are the same.
    gone_needles = {**{k: v for k, v in slices(gone_sheet).items() if v.decode() not in kept_sheet},
                    **named("name:", OBAMA),
                    **named("sha:", [hashlib.sha256((FACES / n).read_bytes()).hexdigest() for n in OBAMA])}
    kept_needles = {**{k: v for k, v in slices(kept_sheet).items() if v.decode() not in gone_sheet},
                    **named("sha:", [hashlib.sha256(data).hexdigest() for _, data, _ in kept_files])}
    before = survivors(home.settings.resolved_dagster_home, {**gone_needles, **kept_needles})
    report = erase(home.meta, home.blobs, "obama", actor="test", reason="right to erasure",
                   purgers=[dagster_purger(instance)])
    yield Erased(home, instance, gone, kept, gone_needles, kept_needles, before, report)
    instance.dispose()


def test_the_scan_finds_both_personas_before_the_erasure(erased: Erased) -> None:
    """The control: without it, an empty scan after the erasure would prove nothing."""
    assert any(k.startswith("@") for k in erased.before), "contact-sheet bytes not found in storage"
    for name in ("sha:", "name:"):
        assert any(k.startswith(name) for k in erased.before)
    files = {f for fs in erased.before.values() for f in fs}
    assert any(f.startswith("storage/qc/") for f in files)  # the IO manager's stored values
    assert any(f.endswith("index.db") for f in files)  # the event log


def test_erased_persona_leaves_no_run_event_partition_or_log(erased: Erased) -> None:
    instance, gone = erased.instance, erased.gone
    assert erased.report.state == "erased"
    assert instance.get_run_by_id(gone.run_id) is None
    assert instance.get_run_ids(dg.RunsFilter(tags={"dagster/partition": gone.partition_key})) == []
    assert instance.get_run_ids(dg.RunsFilter(tags={"persona_id": "obama"})) == []
    for key in ASSET_KEYS:
        found = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[gone.partition_key]), limit=10)
        assert found.records == [], key
    for check_key in CHECK_KEYS:
        history = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=100)
        assert gone.run_id not in {h.run_id for h in history}, check_key
    assert gone.partition_key not in instance.get_dynamic_partitions(persona_versions.name)
    assert "obama" not in instance.get_dynamic_partitions(personas.name)
    storage = Path(instance.storage_directory())
    assert not (storage / gone.run_id).exists(), "compute logs of the erased run"
    assert not any(storage.glob(f"*/{gone.partition_key}")), "stored asset values of the erased version"
    assert not any(erased.dagster_home.rglob(f"{gone.run_id}*")), "event shard of the erased run"


def test_erased_persona_bytes_are_nowhere_in_the_instance_folder(erased: Erased) -> None:
    """SQLite keeps deleted rows in free pages and write-ahead logs: the bytes must be gone too."""
    assert survivors(erased.dagster_home, erased.gone_needles) == {}


def test_other_persona_keeps_its_runs_materializations_and_logs(erased: Erased) -> None:
    instance, kept = erased.instance, erased.kept
    run = instance.get_run_by_id(kept.run_id)
    assert run is not None
    assert run.is_success
    for name in kept.materialized:
        records = dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), asset_partitions=[kept.partition_key])
        found = instance.fetch_materializations(records, limit=10)
        assert [r.run_id for r in found.records] == [kept.run_id], name
    # The assets' latest materialization was the erased persona's: it is the kept one's now.
    latest = instance.get_latest_materialization_event(dg.AssetKey("anchor_sets"))
    assert latest is not None
    assert latest.dagster_event is not None
    assert latest.dagster_event.partition == kept.partition_key
    checks = {h.run_id for ck in CHECK_KEYS
              for h in instance.event_log_storage.get_asset_check_execution_history(ck, limit=100)}
    assert kept.run_id in checks
    assert kept.partition_key in instance.get_dynamic_partitions(persona_versions.name)
    assert "kept" in instance.get_dynamic_partitions(personas.name)
    assert (Path(instance.storage_directory()) / kept.run_id / "compute_logs").is_dir()
    assert set(survivors(erased.dagster_home, erased.kept_needles)) == {
        k for k in erased.kept_needles if k in erased.before}
