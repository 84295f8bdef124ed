"""The build assets, one per step, all partitioned by persona version. Each takes its
resources, calls the pure step in ``persona_pipeline.steps`` and returns the value with
metadata (counts, timings, cache counters, thresholds next to observed values)."""

# No `from __future__ import annotations` here: Dagster reads these annotations at definition time.

import base64
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import dagster as dg
import numpy as np

from persona_core.errors import InvalidTransitionError
from persona_core.publish import publish_pack
from persona_core.store.base import VersionStatus
from persona_core.version_inputs import uploaded_inputs
from persona_pipeline.defs.lifecycle import set_outcome
from persona_pipeline.defs.partitions import persona_versions
from persona_pipeline.defs.resources import ModelsResource, PipelineConfigResource, StoresResource
from persona_pipeline.partition_keys import parse_partition_key
from persona_pipeline.run_tags import runs_asset
from persona_pipeline.steps import checks
from persona_pipeline.steps.anchors import AnchorSelection, select_anchors
from persona_pipeline.steps.assemble import assemble_pack
from persona_pipeline.steps.canonical import verdict_words
from persona_pipeline.steps.config import PipelineConfig
from persona_pipeline.steps.contact_sheet import render_contact_sheet
from persona_pipeline.steps.embeddings import (
    Embeddings,
    VoiceEmbedding,
    embed_faces,
    embed_styles,
    embed_voice,
)
from persona_pipeline.steps.faces import FacesResult, extract_faces, load_png
from persona_pipeline.steps.inputs import VersionInputs, load_inputs
from persona_pipeline.steps.masks import MasksResult, make_masks
from persona_pipeline.steps.qc import QcResult, run_qc

GROUP = "persona_build"
# Progress lines for people watching a build outside the UI (the demo prints them).
progress_log = logging.getLogger("persona_pipeline.build")

# One version per run, backfills included: a run claims its version's build lease, its failure
# hook and the run-failure sensor fail that version, and a killed worker fails only it. Batching
# several versions into one run would save each run's start-up, but a fault would then fail the
# whole batch, and the asset bodies build one partition key.
_COMMON: dict[str, Any] = {"partitions_def": persona_versions, "group_name": GROUP,
                           "backfill_policy": dg.BackfillPolicy.multi_run(max_partitions_per_run=1)}


T = TypeVar("T")


def _version_check(name: str, asset: str, description: str) -> dg.AssetCheckSpec:
    """A check partitioned like its asset, so each result is stored with its version (GraphQL:
    ``assetCheckExecutions(..., partition: "<persona>.v<N>")``)."""
    # Partitioned checks are a Dagster preview (1.13): the import would print its warning in every
    # process that loads the code location, the CLI included.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(name, asset=asset, partitions_def=persona_versions, description=description)


def _report(context: dg.AssetExecutionContext, message: str) -> None:
    context.log.info(message)
    progress_log.info("%s %s", context.partition_key, message)


def _with_models(context: dg.AssetExecutionContext, models: ModelsResource, fields: tuple[str, ...],
                 load: Callable[[], T]) -> T:
    """``load()``, said before and timed after when it builds models this process has not built
    yet: the first build's model loads take seconds with nothing else to show."""
    names = models.unloaded(*fields)
    if not names:
        return load()
    step = context.asset_key.to_user_string()
    _report(context, f"{step}: loading models {', '.join(names)}")
    started = time.perf_counter()
    loaded = load()
    _report(context, f"{step}: models loaded in {time.perf_counter() - started:.1f} s")
    return loaded


@dg.asset(**_COMMON, output_required=False,
          description="The version's files from the blob store; videos sampled into frames; "
          "voice clips decoded and resampled. A published version yields nothing: its re-run "
          "succeeds, changes nothing and says so.")
def inputs(
    context: dg.AssetExecutionContext, stores: StoresResource, models: ModelsResource,
    pipeline_config: PipelineConfigResource,
) -> Iterator[dg.Output[VersionInputs] | dg.AssetObservation]:
    persona_id, version = parse_partition_key(context.partition_key)
    meta, blobs = stores.meta(), stores.blobs()
    record = meta.get_version(persona_id, version)
    if record.status == VersionStatus.PUBLISHED:
        # Published packs are immutable: the downstream steps are skipped, nothing is red.
        note = f"v{version} already published as {record.content_hash}"
        _report(context, f"{note}; nothing to do (upload a new version or use the rebuild job)")
        set_outcome(context.instance, context.run.run_id, "unchanged")
        for key in ("inputs", "persona_pack"):
            yield dg.AssetObservation(asset_key=key, partition=context.partition_key,
                                      metadata={"already_published": note,
                                                "content_hash": record.content_hash or ""})
        return
    uploaded = uploaded_inputs(record)  # an imported version holds no files: a typed error
    has_voice = any(f.kind == "voice" for f in uploaded.files)
    wav_loader: Callable[..., Any] | None = None
    rate = 16000
    if has_voice:
        from persona_pipeline.models.audio import load_wav  # noqa: PLC0415 - audio stack only when needed

        wav_loader, rate = load_wav, _with_models(context, models, ("voice",), models.voice_model).sample_rate
    result = load_inputs(persona_id, version, uploaded, blobs, pipeline_config.to_config(),
                         load_wav=wav_loader, sample_rate=rate)
    _report(context, f"inputs: {len(result.images)} image(s)/frame(s), {len(result.voices)} voice clip(s), "
                     f"{len(result.rejected)} unreadable")
    yield dg.Output(result, metadata={
        "files": len(result.files),
        "images_and_frames": len(result.images),
        "voice_clips": len(result.voices),
        "unreadable": dg.MetadataValue.json([{"name": r.name, "reason": r.reason} for r in result.rejected]),
        **result.counters,
    })


def _qc_table_metadata(qc: QcResult) -> dg.TableMetadataValue:
    table = qc.table
    kinds = {"int64": "int", "float64": "float", "bool": "bool"}
    schema = dg.TableSchema(columns=[dg.TableColumn(c, kinds.get(str(table[c].dtype), "string"))
                                     for c in table.columns if c != "sha256"])
    records = [dg.TableRecord({k: (_evidence_cell(v) if k == "mode_evidence" else
                                   v.item() if isinstance(v, np.generic) else v)
                               for k, v in row.items() if k != "sha256"})
               for row in table.to_dict(orient="records")]
    return dg.MetadataValue.table(records, schema)


def _evidence_cell(raw: str) -> str:
    """The camera mode's evidence in one short line: its JSON (in ``mode_evidence`` whole) made
    every row of the UI's QC table several hundred pixels tall."""
    if not raw:
        return ""
    ev = json.loads(raw)
    parts = [f"face {ev.get('face_frac', 0):.2f}", f"below {ev.get('frame_below_face', 0):.1f}",
             str(ev.get("lowest_body_part") or "none"), "facing" if ev.get("facing_camera") else "not facing"]
    if ev.get("mirror_cue"):
        parts.append(f"mirror {ev['mirror_cue']:.2f}")
    return ", ".join(parts)


@dg.asset(**_COMMON, description="Per-image QC (resolution, blur, exposure, faces, pose, partial face, "
          "eyes open, mouth, expression, camera mode with confidence and evidence) with the reason for "
          "every rejected image; a pandera-validated table.")
def qc(
    context: dg.AssetExecutionContext, inputs: VersionInputs, stores: StoresResource, models: ModelsResource,
    pipeline_config: PipelineConfigResource,
) -> dg.Output[QcResult]:
    config = pipeline_config.to_config()
    detector, taggers = _with_models(context, models, ("detector", "face_mesh", "pose", "expression"),
                                     lambda: (models.detector_model(), models.taggers()))
    result = run_qc(inputs.images, stores.blobs(), detector, config, taggers)
    rejected = result.rejected()
    _report(context, f"qc: {len(result.passed())} passed, {len(rejected)} rejected "
                     f"({result.counters['qc_computed']} computed, {result.counters['qc_cached']} cached)")
    for name, reason in rejected:
        _report(context, f"qc: rejected {name}: {reason}")
    return dg.Output(result, metadata={
        "qc_table": _qc_table_metadata(result),
        "mode_evidence": dg.MetadataValue.json({r.name: json.loads(r.mode_evidence)
                                                for r in result.table.itertuples() if r.mode_evidence}),
        "passed": len(result.passed()),
        "rejected": dg.MetadataValue.json([{"name": n, "reason": r} for n, r in rejected]),
        "thresholds": dg.MetadataValue.json({k: config.as_dict()[k] for k in (
            "min_image_side_px", "min_face_px", "blur_min", "max_abs_yaw", "max_abs_pitch",
            "max_outside_fraction", "min_face_score", "dark_luma", "bright_luma")}),
        "seconds": result.seconds,
        **result.counters,
    })


@dg.asset(**_COMMON, description="Bounding box, 5 landmarks, ArcFace-aligned crop and head-and-shoulders "
          "portrait per QC-passed image, stored as blobs.")
def faces(  # noqa: PLR0917 - Dagster passes upstream values and resources by name
    context: dg.AssetExecutionContext, inputs: VersionInputs, qc: QcResult, stores: StoresResource,
    models: ModelsResource, pipeline_config: PipelineConfigResource,
) -> dg.Output[FacesResult]:
    detector = _with_models(context, models, ("detector",), models.detector_model)
    result = extract_faces(inputs.images, qc, stores.blobs(), detector, pipeline_config.to_config())
    _report(context, f"faces: {len(result.faces)} aligned crop(s)")
    meta = {"faces": len(result.faces), "seconds": result.seconds, **result.counters}
    return dg.Output(result, metadata=meta)


@dg.asset(**_COMMON, description="Identity embedding per aligned face crop (batched).")
def face_embeddings(
    context: dg.AssetExecutionContext, faces: FacesResult, stores: StoresResource, models: ModelsResource,
) -> dg.Output[Embeddings]:
    model = _with_models(context, models, ("identity",), models.identity_model)
    result = embed_faces(faces, stores.blobs(), model)
    return _embeddings_output(context, "face_embeddings", result)


@dg.asset(**_COMMON, description="Style embedding per head-and-shoulders portrait (batched).")
def style_embeddings(
    context: dg.AssetExecutionContext, faces: FacesResult, stores: StoresResource, models: ModelsResource,
) -> dg.Output[Embeddings]:
    model = _with_models(context, models, ("style",), models.style_model)
    result = embed_styles(faces, stores.blobs(), model)
    return _embeddings_output(context, "style_embeddings", result)


def _embeddings_output(
    context: dg.AssetExecutionContext, name: str, result: Embeddings
) -> dg.Output[Embeddings]:
    _report(context, f"{name}: {len(result.vectors)} x {result.dim} ({result.model})")
    return dg.Output(result, metadata={"count": len(result.vectors), "dim": result.dim, "model": result.model,
                                       "seconds": result.seconds, **result.counters})


@dg.asset(**_COMMON, description="Speaker embedding from the version's voice clips (none without clips).")
def voice_embedding(
    context: dg.AssetExecutionContext, inputs: VersionInputs, stores: StoresResource, models: ModelsResource,
) -> dg.Output[VoiceEmbedding]:
    model = _with_models(context, models, ("voice",), models.voice_model) if inputs.voices else None
    result = embed_voice(inputs.voices, stores.blobs(), model)
    _report(context, f"voice_embedding: {len(result.clips)} clip(s)"
                     + (f", clip consistency {result.clip_similarity}" if result.clips else " (defaults)"))
    return dg.Output(result, metadata={"clips": len(result.clips), "model": result.model,
                                       "clip_similarity": result.clip_similarity, "seconds": result.seconds,
                                       **result.counters})


def _contact_sheet_markdown(sel: AnchorSelection, qc: QcResult, stores: StoresResource, title: str,
                            config: PipelineConfig) -> str:
    blobs = stores.blobs()
    tiles = {mode: [(load_png(blobs, c.face.crop_ref),
                     [c.face.name,
                      f"q {c.quality['overall']:.2f} {c.lighting}" + (" canonical" if i == 0 else ""),
                      *c.tag_lines(config)])
                    for i, c in enumerate(cands)]
             for mode, cands in sel.anchors.items()}
    rejected = [*qc.rejected(), *sel.dropped.items()]
    notes = {mode: f"canonical {sel.anchors[mode][0].face.name}: {choice.reason}"
             for mode, choice in sel.canonical.items()}
    png = render_contact_sheet(tiles, rejected, title=title, notes=notes)
    return f"![contact sheet](data:image/png;base64,{base64.b64encode(png).decode()})"


# The gate is a verdict on an upload, not a crash: its check fails at ERROR and masks and
# persona_pack skip (see gate_failed_here), so the run succeeds and the asset graph stays
# green. Dagster's `blocking=True` would fail the run and paint the downstream assets red.
# Every check is partitioned like its asset: its results are found by version.
@dg.asset(
    **_COMMON,
    description="Anchors per camera mode, tagged, ranked by quality and diversity, canonical marked.",
    check_specs=[
        _version_check(checks.ENOUGH_ANCHORS, "anchor_sets",
                       description="The gate (ERROR): every required mode has its minimum of anchors; "
                                   "when it fails, publish is skipped and the version is blocked."),
        _version_check(checks.IDENTITY_STABILITY, "anchor_sets",
                       description="Warns about anchors whose identity disagrees with the others."),
    ],
)
def anchor_sets(  # noqa: PLR0917 - Dagster passes upstream values and resources by name
    context: dg.AssetExecutionContext, qc: QcResult, faces: FacesResult, face_embeddings: Embeddings,
    style_embeddings: Embeddings, stores: StoresResource, pipeline_config: PipelineConfigResource,
) -> Iterator[dg.Output[AnchorSelection] | dg.AssetCheckResult]:
    persona_id, version = parse_partition_key(context.partition_key)
    meta = stores.meta()
    config = pipeline_config.to_config()
    sel = select_anchors(qc.table, faces, face_embeddings, style_embeddings, config=config)
    gate, stability = checks.enough_anchors(sel), checks.identity_stability(sel)
    if not gate.passed:
        # Blocked is a verdict on the upload, not a crash: the reasons say what to add.
        meta.transition(persona_id, version, VersionStatus.BLOCKED, reasons=list(sel.gate_reasons),
                        checks=[c.to_pack().model_dump(mode="json") for c in (gate, stability)],
                        run_id=context.run.run_id)
        # The runs list tells blocked from crashed by this tag; the reason leads the run's log.
        set_outcome(context.instance, context.run.run_id, "blocked")
        context.log.error(f"BLOCKED {persona_id} v{version}: {gate.description}")
    sheet = _contact_sheet_markdown(sel, qc, stores, context.partition_key, config)
    per_mode = {m: len(sel.anchors.get(m, [])) for m in ("A_SELFIE", "B_MIRROR", "C_CUTAWAY")}
    _report(context, "anchor_sets: " + ", ".join(f"{m} {n}" for m, n in per_mode.items()))
    canonical = {mode: {"file": sel.anchors[mode][0].face.name, **choice.model_dump(mode="json")}
                 for mode, choice in sel.canonical.items()}
    if canonical:
        _report(context, "anchor_sets: canonical " + ", ".join(
            f"{mode} {sel.anchors[mode][0].face.name} ({verdict_words(choice)})"
            for mode, choice in sel.canonical.items()))
    for outcome in (gate, stability):
        _report(context, f"check {outcome.name} [{outcome.severity}] "
                         f"{'passed' if outcome.passed else 'FAILED'}: {outcome.description}")
    yield dg.Output(sel, metadata={
        "anchors_per_mode": dg.MetadataValue.json(per_mode),
        "dropped": dg.MetadataValue.json(sel.dropped),
        "identity_groups": dg.MetadataValue.json(sel.stability.groups),
        "canonical": dg.MetadataValue.json(canonical),
        "identity_calibration": dg.MetadataValue.json(
            sel.calibration.model_dump(mode="json") if sel.calibration else {}
        ),
        "contact_sheet": dg.MetadataValue.md(sheet),
    })
    for outcome, severity in ((gate, dg.AssetCheckSeverity.ERROR), (stability, dg.AssetCheckSeverity.WARN)):
        yield dg.AssetCheckResult(check_name=outcome.name, passed=outcome.passed, severity=severity,
                                  description=outcome.description,
                                  metadata={k: dg.MetadataValue.json(v) if isinstance(v, dict | list) else v
                                            for k, v in outcome.metadata.items()})


def gate_failed_here(context: dg.AssetExecutionContext, anchor_sets: AnchorSelection) -> bool:
    """The gate failed in this run: anchor_sets ran in it (the whole partition, or a selection
    holding it) and its enough_anchors check failed. Publish is then skipped, not failed. A run
    of later steps alone on a blocked version did not evaluate the gate: persona_pack refuses."""
    return runs_asset(context.run, "anchor_sets") and not checks.enough_anchors(anchor_sets).passed


@dg.asset(**_COMMON, output_required=False,
          description="Optional head-and-shoulders alpha mask per chosen anchor. Skipped, with "
          "persona_pack after it, when the gate failed in the same run.")
def masks(
    context: dg.AssetExecutionContext, anchor_sets: AnchorSelection, stores: StoresResource,
    models: ModelsResource,
) -> Iterator[dg.Output[MasksResult]]:
    if gate_failed_here(context, anchor_sets):
        _report(context, f"masks: skipped, with persona_pack: the {checks.ENOUGH_ANCHORS} check failed "
                         "(the version is blocked; nothing is published)")
        return
    matter = _with_models(context, models, ("matting",), models.matting_model)
    result = make_masks([c.face for c in anchor_sets.ordered()], stores.blobs(), matter)
    _report(context, f"masks: {len(result.mask_refs)} mask(s)" + ("" if result.model else " (masks off)"))
    yield dg.Output(result, metadata={"masks": len(result.mask_refs), "model": result.model,
                                      "seconds": result.seconds, **result.counters})


@dg.asset(
    **_COMMON,
    description="The PersonaPack, published through persona_core (atomic, immutable) with provenance.",
    check_specs=[_version_check(checks.CONFIG_DEFAULTS, "persona_pack",
                                description="Defaults written for missing voice/behaviour config.")],
)
def persona_pack(  # noqa: PLR0917 - Dagster passes upstream values and resources by name
    context: dg.AssetExecutionContext, inputs: VersionInputs, qc: QcResult, anchor_sets: AnchorSelection,
    face_embeddings: Embeddings, style_embeddings: Embeddings, voice_embedding: VoiceEmbedding,
    masks: MasksResult, stores: StoresResource, models: ModelsResource,
    pipeline_config: PipelineConfigResource,
) -> Iterator[dg.Output[dict[str, Any]] | dg.AssetCheckResult]:
    meta, blobs = stores.meta(), stores.blobs()
    persona_id, version = parse_partition_key(context.partition_key)
    gate = checks.enough_anchors(anchor_sets)
    if not gate.passed:
        # A failed gate in this run skips masks, and this step with it: here the gate failed in an
        # earlier run and this asset was materialized without anchor_sets (from the UI), which
        # must refuse too. InvalidTransitionError leaves
        # the version's stored `blocked` status and reasons as they are.
        raise InvalidTransitionError(
            f"{persona_id} v{version} is blocked by the {checks.ENOUGH_ANCHORS} check "
            f"({gate.description}); not publishing. Upload a new version with more photos, or "
            "rebuild this one from anchor_sets on with a configuration the photos can meet."
        )
    defaults = checks.config_defaults(inputs, voice_embedding.vector is not None)
    outcomes = [gate, checks.identity_stability(anchor_sets), defaults]
    used = [models.detector_model(), models.identity_model(), models.style_model(),
            *models.taggers().models()]
    matter = models.matting_model() if masks.model else None
    if matter is not None:
        used.append(matter)
    if voice_embedding.model:
        used.append(models.voice_model())
    qc_rows = {r.name: (bool(r.passed), r.reason) for r in qc.table.itertuples()}
    pack = assemble_pack(inputs, anchor_sets, face_embeddings, style_embeddings, voice_embedding,
                         masks=masks, blobs=blobs, qc_rows=qc_rows, models=used, checks=outcomes,
                         config=pipeline_config.to_config(), run_id=context.run.run_id)
    # The lease beats on through publish (its blob writes can take a while on S3): a kill at
    # any point leaves either the published pack or a lease whose process is gone. Publishing
    # drops the lease, and the heartbeat stops by itself.
    record = publish_pack(meta, blobs, pack)
    anchors_per_mode = {m.value: len(a) for m, a in pack.anchor_sets.items()}
    summary = {
        "persona_id": pack.persona_id, "version": pack.version, "content_hash": pack.content_hash,
        "pack_ref": record.pack_ref, "status": record.status.value,
        "anchors_per_mode": anchors_per_mode,
    }
    _report(context, f"persona_pack: published {pack.persona_id} v{pack.version} "
                     f"content_hash {pack.content_hash}")
    set_outcome(context.instance, context.run.run_id, "published")
    yield dg.Output(summary, metadata={
        "content_hash": pack.content_hash or "", "pack_ref": record.pack_ref,
        "anchors_per_mode": dg.MetadataValue.json(anchors_per_mode),
        "models": dg.MetadataValue.json([m.model_dump() for m in pack.provenance.models]),
        "pack_bytes": len(json.dumps(pack.to_json_dict())),
    })
    yield dg.AssetCheckResult(check_name=defaults.name, passed=defaults.passed,
                              severity=dg.AssetCheckSeverity.WARN, description=defaults.description,
                              metadata={"defaults_applied": dg.MetadataValue.json(defaults.metadata)})


build_assets = [inputs, qc, faces, face_embeddings, style_embeddings, voice_embedding, anchor_sets, masks,
                persona_pack]
