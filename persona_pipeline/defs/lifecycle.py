"""The version lifecycle from Dagster's own run events: a build run holds its version's lease
(``StoresResource`` set-up), a failed step fails the version with its error (the job's
failure hook), a failed or killed run fails it with the cause (the run-failure sensor), and
a ``building`` version whose build process or run is gone is failed with "build process
died" (the stuck-builds sensor, and ``persona-core versions`` / the API when they look).

Every run gets a ``persona/outcome`` tag (published, unchanged, blocked, failed) so the
runs list tells a blocked upload from a crash at a glance."""

# No `from __future__ import annotations` here: Dagster reads these annotations at definition time.

import dagster as dg

from persona_core.errors import ImmutableVersionError, InvalidTransitionError, NotFoundError
from persona_core.store.base import MetadataStore, VersionStatus
from persona_core.versions import RunCause, dead_build_cause, settle_dead_builds
from persona_pipeline.defs.resources import BUILD_JOB, PARTITION_TAG, StoresResource
from persona_pipeline.partition_keys import parse_partition_key

OUTCOME_TAG = "persona/outcome"
STUCK_SENSOR_INTERVAL_S = 15
_UNFINISHED = (VersionStatus.BUILDING, VersionStatus.PENDING)


def set_outcome(instance: dg.DagsterInstance, run_id: str, outcome: str) -> None:
    instance.add_run_tags(run_id, {OUTCOME_TAG: outcome})


def fail_version(meta: MetadataStore, partition: str | None, reason: str, run_id: str | None = None,
                 expected: tuple[VersionStatus, ...] | None = None) -> bool:
    """Mark the partition's version ``failed`` unless it already ended (published, blocked,
    failed); with ``run_id``, only while that run holds it (a run that failed before it claimed
    the version, e.g. on a bad Launchpad config, or a run of another build, changes nothing);
    ``expected`` narrows the states it may leave. True when it was marked."""
    if not partition:
        return False
    persona_id, version = parse_partition_key(partition)
    if expected is None:
        expected = _UNFINISHED if run_id is None else (VersionStatus.BUILDING,)
    try:
        meta.transition(persona_id, version, VersionStatus.FAILED, reasons=[reason], expected=expected,
                        run_id=run_id)
    except (ImmutableVersionError, InvalidTransitionError, NotFoundError):
        return False
    return True


@dg.failure_hook(required_resource_keys={"stores", "build_lease"})
def fail_version_on_step_failure(context: dg.HookContext) -> None:
    """A step of a build run failed: its version is ``failed`` with the step's error. (The hook
    needs the build lease: it is what makes every build run hold one.)"""
    exc = context.op_exception
    error = f"{type(exc).__name__}: {exc}" if exc is not None else "step failed"
    run = context.instance.get_run_by_id(context.run_id)
    partition = run.tags.get(PARTITION_TAG) if run is not None else None
    step = context.op.name if context.op else context.step_key
    if fail_version(context.resources.stores.meta(), partition, f"{step}: {error}", context.run_id):
        set_outcome(context.instance, context.run_id, "failed")


def failure_cause(event: dg.DagsterEvent) -> str:
    """The failure's own error (a step's exception, a resource's set-up error) as "<Class>: <text>"."""
    # The step's own exception message is what a person needs, not Dagster's wrapper line; a run
    # that failed outside any step (a resource's set-up) carries its cause the same way.
    error = getattr(event.event_specific_data, "error", None)
    while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    if error is None:
        return event.message or ""
    # The message reads "<module>.<Class>: <text>"; the class name alone is enough.
    message, name = error.message.strip(), error.cls_name or ""
    head, _, text = message.partition(": ")
    return f"{name}: {text}" if name and head.endswith(name) else message


def fail_unstarted_version(meta: MetadataStore, instance: dg.DagsterInstance, partition: str,
                           run_id: str, reason: str) -> bool:
    """A build run failed before it claimed its ``pending`` version (its worker or code server
    was killed as it started, a bad Launchpad config): with no other run of that version under
    way, nothing will build it, so it is failed now with the run's cause instead of sitting
    ``pending`` until PERSONA_PENDING_TIMEOUT_S. Only a still-``pending`` row moves (a run that
    claimed it meanwhile keeps it). True when it was failed."""
    runs = instance.get_runs(dg.RunsFilter(job_name=BUILD_JOB, tags={PARTITION_TAG: partition}))
    if any(r.run_id != run_id and not r.is_finished for r in runs):
        return False
    return fail_version(meta, partition, f"{reason} (before it started building); re-run its partition or "
                        "upload again", expected=(VersionStatus.PENDING,))


def run_cause_from(instance: dg.DagsterInstance) -> RunCause:
    """run id -> why that run is over (failed, canceled, gone), None while it runs."""

    def cause(run_id: str) -> str | None:
        run = instance.get_run_by_id(run_id)
        if run is None:
            return None  # an in-process build outside this instance: its lease decides
        if run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            return f"Dagster run {run_id} {run.status.value.lower()}"
        if run.is_finished:
            return f"Dagster run {run_id} ended {run.status.value.lower()} without finishing the version"
        return None

    return cause


@dg.run_failure_sensor(
    name="version_run_failure_sensor",
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=STUCK_SENSOR_INTERVAL_S,
    description="A failed build run (a crash outside any step, a killed worker) fails its version "
                "with the run's error.",
)
def version_run_failure_sensor(context: dg.RunFailureSensorContext, stores: StoresResource) -> None:
    run = context.dagster_run
    if run.job_name != BUILD_JOB:
        return  # a rebuild run's partition is a persona, not a version: it holds no version
    partition = run.tags.get(PARTITION_TAG)
    reason = f"run {run.run_id} failed: {failure_cause(context.failure_event) or 'run failed'}"
    if partition:
        # A killed worker (run monitoring failed the run) is named as such, not generically.
        record = stores.meta().get_version(*parse_partition_key(partition))
        reason = dead_build_cause(record, ttl_s=stores.settings().lease_ttl_s) or reason
    if not fail_version(stores.meta(), partition, reason, run.run_id) and partition:
        fail_unstarted_version(stores.meta(), context.instance, partition, run.run_id, reason)
    ended = stores.meta().get_version(*parse_partition_key(partition)).status if partition else None
    if ended is VersionStatus.FAILED:
        set_outcome(context.instance, run.run_id, "failed")


@dg.sensor(
    minimum_interval_seconds=STUCK_SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Fails every `building` version whose build process or Dagster run is gone "
                "(\"build process died\"), so none stays building without a live run, and every "
                "`pending` version no run picked up within PERSONA_PENDING_TIMEOUT_S.",
)
def stuck_builds_sensor(context: dg.SensorEvaluationContext, stores: StoresResource) -> dg.SkipReason:
    settings = stores.settings()
    settled = list(settle_dead_builds(stores.meta(), ttl_s=settings.lease_ttl_s,
                                      run_cause=run_cause_from(context.instance),
                                      pending_timeout_s=settings.pending_timeout_s))
    if not settled:
        return dg.SkipReason("every building version has a live build")
    for seen, failed in settled:
        # The run whose worker died is still `started` in the instance: fail it there too, so
        # the runs list shows it failed with the same cause.
        run = context.instance.get_run_by_id(seen.lease.run_id) if seen.lease and seen.lease.run_id else None
        if run is not None and not run.is_finished:
            context.instance.report_run_failed(run, failed.reasons[0])
        if run is not None:
            set_outcome(context.instance, run.run_id, "failed")
    return dg.SkipReason("failed: " + "; ".join(f"{r.persona_id} v{r.version}: {r.reasons[0]}"
                                                for _, r in settled))
