"""The run logger: Dagster's run messages (RUN_START ... RUN_SUCCESS, step events and
``context.log`` lines) through persona-core's log handler, so a run worker writes one JSON
object per line with ``PERSONA_LOG_JSON=1`` (text lines otherwise), secrets redacted, each
carrying the run's id, job, step, event type and persona tags.

Dagster prints a run's messages with its coloured console logger unless the run's config names
a logger under ``loggers:``. The code location registers this one under Dagster's own key,
``console``, for every job (``Definitions(loggers=...)``), and the jobs whose config all has
defaults name it in their default config (:data:`RUN_LOGS_CONFIG`), so their runs use it however
they are launched: the sensor, the schedule, a backfill, the Launchpad, the CLI.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import dagster as dg

from persona_core.logging import make_handler
from persona_pipeline.run_tags import PARTITION_TAG, PERSONA_TAG, VERSION_TAG

RUN_LOGGER = "console"
# A job's default run config: its runs log through the run logger.
RUN_LOGS_CONFIG: dict[str, Any] = {"loggers": {RUN_LOGGER: {}}}

# The attributes Dagster puts on the records it hands a run's loggers.
_DAGSTER_META = "dagster_meta"
_DAGSTER_ATTRS = (_DAGSTER_META, "dagster_event", "dagster_event_batch_metadata")
_TAG_FIELDS = {PERSONA_TAG: "persona_id", VERSION_TAG: "persona_version", PARTITION_TAG: "partition"}


class RunFieldsFilter(logging.Filter):
    """Turns the run metadata Dagster attaches to a record into flat fields (``run_id``,
    ``job_name``, ``step_key``, ``dagster_event_type``, the persona tags) and the message back
    into the one logged, without Dagster's ``job - run id - pid - step - EVENT -`` prefix."""

    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, _DAGSTER_META, None)
        for name in _DAGSTER_ATTRS:
            record.__dict__.pop(name, None)
        if not isinstance(meta, Mapping):
            return True
        fields: dict[str, Any] = {
            "run_id": meta.get("run_id"),
            "job_name": meta.get("job_name"),
            "step_key": meta.get("step_key"),
        }
        event = meta.get("dagster_event")
        if event is not None:
            fields["dagster_event_type"] = event.event_type.name  # RUN_START, not storage's PIPELINE_START
        tags = meta.get("job_tags") or {}
        fields.update({field: tags[tag] for tag, field in _TAG_FIELDS.items() if tag in tags})
        for key, value in fields.items():
            if value is not None:
                setattr(record, key, value)
        original = str(meta.get("orig_message") or "")
        message = record.getMessage()
        # Dagster's message is "<prefix> - <original><error text, if any>": keep from the original.
        start = message.find(original) if original else -1
        if start > 0:
            record.msg, record.args = message[start:], None
        return True


@dg.logger(
    config_schema={
        "log_level": dg.Field(
            str,
            default_value="DEBUG",
            description="The lowest level shown (DEBUG: every run event, as "
            "Dagster's own console logger shows them).",
        ),
    },
    description="Run messages through persona-core's handler: JSON lines with PERSONA_LOG_JSON=1, "
    "text otherwise; secrets redacted.",
)
def run_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    # A logger outside logging's tree: nothing propagates to the root handler, so no line twice.
    log = logging.Logger("persona_pipeline.run", init_context.logger_config["log_level"].upper())
    log.addFilter(RunFieldsFilter())
    log.addHandler(make_handler())
    return log
