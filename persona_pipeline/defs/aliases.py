"""Promote and roll back from the Dagster UI, where data ops watch builds: ``promote_version``
points an alias (default ``live``) at a published version, ``rollback_alias`` moves one back to
its previous target (persona_core.store.aliases). Both take typed config in the Launchpad, e.g.
``ops: {promote: {config: {persona_id: alice, version: 2, reason: reviewed}}}``.

Each move is a compare-and-set on where the alias pointed when the op read it, recorded as
``dagster:<run id>``. The persona_pack asset's partitions of the versions involved get an
observation whose ``aliases`` metadata says where each of the persona's aliases points now."""

# No `from __future__ import annotations` here: Dagster reads these annotations at definition time.

from collections.abc import Iterator

import dagster as dg
from pydantic import Field

from persona_core.errors import AliasNotFoundError
from persona_core.store.aliases import UNSET, AliasMove
from persona_core.store.base import MetadataStore
from persona_pipeline.defs.partitions import ensure_partition, persona_versions
from persona_pipeline.defs.resources import StoresResource
from persona_pipeline.erasure import PERSONA_TAG
from persona_pipeline.partition_keys import partition_key

PROMOTE_JOB = "promote_version"
ROLLBACK_JOB = "rollback_alias"
PACK_ASSET = "persona_pack"


class PromoteConfig(dg.Config):
    persona_id: str = Field(description="The persona.")
    version: int = Field(ge=1, description="The published version to point the alias at.")
    alias: str = Field(default="live", description="The alias to move (created if it does not exist).")
    reason: str = Field(description="Why, kept in the alias's history (e.g. 'reviewed the contact sheet').")


class RollbackConfig(dg.Config):
    persona_id: str = Field(description="The persona.")
    alias: str = Field(default="live", description="The alias to move back to its previous target.")
    reason: str = Field(description="Why, kept in the alias's history.")


def _actor(context: dg.OpExecutionContext) -> str:
    return f"dagster:{context.run_id}"


def _tag_run(context: dg.OpExecutionContext, persona_id: str) -> None:
    # A persona's erasure finds and deletes this run (its config names the persona).
    context.instance.add_run_tags(context.run_id, {PERSONA_TAG: persona_id})


def _report(
    context: dg.OpExecutionContext, meta: MetadataStore, move: AliasMove
) -> Iterator[dg.AssetObservation | dg.Output[None]]:
    pointers = {a.name: a.version for a in meta.aliases.all(move.persona_id)}
    before = "(new)" if move.from_version is None else f"v{move.from_version}"
    line = f"{move.persona_id} {move.name}: {before} -> v{move.to_version} ({move.reason}) by {move.actor}"
    context.log.info(line)
    metadata = {"aliases": dg.MetadataValue.json(pointers), "moved": dg.MetadataValue.text(line)}
    for version in dict.fromkeys(v for v in (move.to_version, move.from_version) if v is not None):
        key = partition_key(move.persona_id, version)
        ensure_partition(context.instance, persona_versions, key)
        yield dg.AssetObservation(asset_key=PACK_ASSET, partition=key, metadata=metadata)
    yield dg.Output(None, metadata={**metadata, "from_version": move.from_version or 0,
                                    "to_version": move.to_version or 0})


@dg.op(name="promote", description="Point an alias at a published version (compare-and-set).")
def promote_op(
    context: dg.OpExecutionContext, config: PromoteConfig, stores: StoresResource
) -> Iterator[dg.AssetObservation | dg.Output[None]]:
    _tag_run(context, config.persona_id)
    meta = stores.meta()
    try:
        believed = meta.aliases.get(config.persona_id, config.alias).version
    except AliasNotFoundError:
        believed = UNSET
    move = meta.aliases.move(config.persona_id, config.alias, config.version, expected=believed,
                             actor=_actor(context), reason=config.reason)
    yield from _report(context, meta, move)


@dg.op(name="rollback", description="Move an alias back to its previous published target.")
def rollback_op(
    context: dg.OpExecutionContext, config: RollbackConfig, stores: StoresResource
) -> Iterator[dg.AssetObservation | dg.Output[None]]:
    _tag_run(context, config.persona_id)
    meta = stores.meta()
    move = meta.aliases.rollback(config.persona_id, config.alias, actor=_actor(context), reason=config.reason)
    yield from _report(context, meta, move)


@dg.job(name=PROMOTE_JOB, executor_def=dg.in_process_executor,
        description="Promote: point an alias (default live) at a published version, after review.")
def promote_version() -> None:
    promote_op()


@dg.job(name=ROLLBACK_JOB, executor_def=dg.in_process_executor,
        description="Roll back: move an alias to the version it pointed at before its last move.")
def rollback_alias() -> None:
    rollback_op()

