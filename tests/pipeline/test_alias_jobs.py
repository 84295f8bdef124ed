"""Promote and roll back from the Dagster UI: the promote_version and rollback_alias jobs, launched
with Launchpad run config on a real instance, move the alias as the CLI does (recorded as
``dagster:<run id>``) and show where each alias points on the persona_pack asset; a bad config
fails the run with the typed cause and moves nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
from pipeline_support import Home

from persona_core.publish import publish_pack
from persona_core.testing import make_pack
from persona_pipeline.definitions import make_defs
from persona_pipeline.defs.aliases import PROMOTE_JOB, ROLLBACK_JOB
from persona_pipeline.defs.resources import ModelsResource, PipelineConfigResource, StoresResource
from persona_pipeline.erasure import PERSONA_TAG
from persona_pipeline.partition_keys import partition_key

pytestmark = [pytest.mark.dagster]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """alice v1 and v2 published, v3 uploaded and pending."""
    home = Home(tmp_path_factory.mktemp("alias_jobs"))
    home.meta.create_persona("alice", {})
    for version in (1, 2):
        home.meta.create_version("alice", {"files": []})
        publish_pack(home.meta, home.blobs, make_pack(home.blobs, "alice", version, n_anchors=6))
    home.upload("alice", ["obama.jpg"])
    return home


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def _run(home: Home, instance: dg.DagsterInstance, job: str, op: str,
         config: dict[str, Any]) -> dg.ExecuteInProcessResult:
    defs = make_defs(resources={"stores": StoresResource.from_settings(home.settings),
                                "models": ModelsResource(), "pipeline_config": PipelineConfigResource()})
    return defs.resolve_job_def(job).execute_in_process(
        run_config={"ops": {op: {"config": config}}}, instance=instance, raise_on_error=False)


def _errors(result: dg.ExecuteInProcessResult) -> list[str]:
    """Every message in the step failure's error chain (Dagster's wrappers and the cause)."""
    [failure] = [e for e in result.all_events if e.is_step_failure]
    error = getattr(failure.event_specific_data, "error", None)
    found = []
    while error is not None:
        found += [error.cls_name or "", error.message]
        error = error.cause
    return found


def test_promote_then_rollback_from_the_launchpad_moves_live_and_records_the_run(
    home: Home, instance: dg.DagsterInstance
) -> None:
    first = _run(home, instance, PROMOTE_JOB, "promote",
                 {"persona_id": "alice", "version": 1, "reason": "first review"})
    second = _run(home, instance, PROMOTE_JOB, "promote",
                  {"persona_id": "alice", "version": 2, "alias": "live", "reason": "v2 reviewed"})
    assert first.success
    assert second.success
    assert home.meta.aliases.get("alice", "live").version == 2

    # Where each alias points, on the persona_pack partitions of the versions it moved between.
    observations = second.asset_observations_for_node("promote")
    assert {o.partition for o in observations} == {partition_key("alice", 2), partition_key("alice", 1)}
    for observation in observations:
        assert observation.asset_key == dg.AssetKey("persona_pack")
        assert observation.metadata["aliases"] == dg.MetadataValue.json({"live": 2})
    stored = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("persona_pack"),
                              asset_partitions=[partition_key("alice", 2)]), limit=1).records
    assert stored[0].asset_observation is not None
    assert stored[0].asset_observation.metadata["aliases"].value == {"live": 2}
    assert instance.get_run_by_id(second.run_id).tags[PERSONA_TAG] == "alice"  # erasure finds it

    back = _run(home, instance, ROLLBACK_JOB, "rollback", {"persona_id": "alice", "reason": "v2 looks wrong"})
    assert back.success
    assert home.meta.aliases.get("alice", "live").version == 1
    history = [(m.from_version, m.to_version, m.actor, m.reason)
               for m in home.meta.aliases.history("alice", "live")]
    assert history == [
        (2, 1, f"dagster:{back.run_id}", "v2 looks wrong"),
        (1, 2, f"dagster:{second.run_id}", "v2 reviewed"),
        (None, 1, f"dagster:{first.run_id}", "first review"),
    ]
    assert back.output_for_node("rollback") is None
    [materialized] = [e for e in back.all_events if e.event_type_value == "STEP_OUTPUT"]
    assert materialized.event_specific_data.metadata["aliases"] == dg.MetadataValue.json({"live": 1})


@pytest.mark.parametrize(("job", "op", "config", "cause"), [
    (ROLLBACK_JOB, "rollback", {"persona_id": "alice", "alias": "staging", "reason": "r"},
     ("AliasNotFoundError", "persona 'alice' has no alias 'staging'")),
    (PROMOTE_JOB, "promote", {"persona_id": "alice", "version": 3, "reason": "r"},
     ("InvalidTransitionError", "alice v3 is pending: an alias points only at a published version")),
    (PROMOTE_JOB, "promote", {"persona_id": "alice", "version": 9, "alias": "staging", "reason": "r"},
     ("VersionNotFoundError", "persona 'alice' has no version 9")),
    (PROMOTE_JOB, "promote", {"persona_id": "bob", "version": 1, "reason": "r"},
     ("PersonaNotFoundError", "persona 'bob' not found")),
    (PROMOTE_JOB, "promote", {"persona_id": "alice", "version": 1, "alias": "latest", "reason": "r"},
     ("InvalidNameError", "'latest' is reserved")),
], ids=["rollback_unknown_alias", "promote_pending_version", "promote_missing_version",
        "promote_unknown_persona", "promote_reserved_alias"])
def test_a_bad_launchpad_config_fails_the_run_with_the_cause_and_moves_nothing(
    home: Home, instance: dg.DagsterInstance, job: str, op: str, config: dict[str, Any],
    cause: tuple[str, str],
) -> None:
    aliases, history = home.meta.aliases.all("alice"), home.meta.aliases.history("alice")

    result = _run(home, instance, job, op, config)

    assert not result.success
    assert instance.get_run_by_id(result.run_id).status is dg.DagsterRunStatus.FAILURE
    errors = _errors(result)
    assert cause[0] in errors, errors
    assert any(cause[1] in message for message in errors), errors
    assert home.meta.aliases.all("alice") == aliases
    assert home.meta.aliases.history("alice") == history
    assert result.asset_observations_for_node(op) == []
