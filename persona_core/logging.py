"""Structured logging for every persona-core process, with secrets redacted.

``configure_logging()`` installs one handler on the root logger: human-readable lines by
default, one JSON object per line when ``PERSONA_LOG_JSON=1`` (for log shippers). Fields
passed with ``extra={...}`` become JSON keys, and so does ``request_id`` on every line logged
while the registry handles a request (:mod:`persona_core.log_context`). A filter on the
handler redacts secrets before anything is formatted: values under secret-looking keys,
bearer tokens, API-key headers, ``sig=`` of signed URLs, passwords in database URLs, and any
literal value registered with :func:`register_secret` (``configure_logging`` registers the
settings' own secrets).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from persona_core.log_context import RequestIdFilter
from persona_core.settings import LogSettings

REDACTED = "***"
_HANDLER_NAME = "persona-core"

# Keys whose values are secret wherever they appear (extras, dict args, key=value text).
_SECRET_KEY_RE = re.compile(
    r"(?i)(?:^|[_.-])(?:api[_-]?key|apikey|secret|password|passwd|token|authorization|sig|signature"
    r"|credentials?)(?:$|[_.-])"
)
_TEXT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # registry API keys "pk_<key_id>_<secret>": keep the id (useful in logs), drop the secret
    (re.compile(r"\bpk_([0-9a-f]{16})_[A-Za-z0-9_-]{16,}"), rf"pk_\1_{REDACTED}"),
    # "Authorization: Bearer abc", "bearer abc"
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}"),
    # header or key=value forms: "X-API-Key: abc", "api_key=abc", "secret: 'abc'"
    (
        re.compile(
            r"(?i)\b((?:x-)?api[_-]?key|[a-z_]*secret[a-z_]*|password|passwd|token|sig)"
            r"(\"?\s*[:=]\s*[\"']?)([^\s\"'&,;}]+)"
        ),
        rf"\1\2{REDACTED}",
    ),
    # credentials inside URLs: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+):[^@\s/]+@"), rf"\1:{REDACTED}@"),
)

_lock = threading.Lock()
_literal_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Redact this exact value from every log record from now on (ignores short values)."""
    # Very short strings would redact ordinary words; real secrets are longer.
    if value and len(value) >= 8:
        with _lock:
            _literal_secrets.add(value)


def redact_text(text: str) -> str:
    """``text`` with every known secret form replaced by ``***``."""
    with _lock:
        literals = sorted(_literal_secrets, key=len, reverse=True)
    for lit in literals:
        text = text.replace(lit, REDACTED)
    for pattern, repl in _TEXT_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact_value(value: Any, key: str = "") -> Any:
    """A copy of ``value`` (str, mapping, list or scalar) with secrets redacted."""
    if key and _SECRET_KEY_RE.search(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    if hasattr(value, "get_secret_value"):  # pydantic SecretStr / SecretBytes
        return REDACTED
    return value


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Rewrites the record in place so no handler or formatter ever sees a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        for key in list(vars(record)):
            if key not in _RECORD_ATTRS:
                setattr(record, key, redact_value(getattr(record, key), key))
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now, redacted, and keep only the text.
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, pid, extras (``request_id`` while a
    request is handled), exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        return json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS}
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in sorted(extras.items()))
        return line


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def json_logs_enabled() -> bool:
    return LogSettings().log_json


def configure_logging(
    level: str | int | None = None,
    *,
    json_output: bool | None = None,
    stream: TextIO | None = None,
    settings: Any = None,
) -> logging.Handler:
    """Install (or replace) persona-core's handler on the root logger and return it.

    ``json_output=None`` follows ``settings.log_json`` or ``PERSONA_LOG_JSON``; ``level=None``
    follows ``settings.log_level`` or ``PERSONA_LOG_LEVEL`` (default INFO). Secrets of
    ``settings`` (a :class:`persona_core.settings.Settings`) are registered for redaction.
    """
    if settings is not None:
        for name in ("signing_secret", "s3_secret_key"):
            secret = getattr(settings, name, None)
            if secret is not None:
                register_secret(secret.get_secret_value())
        register_secret(_url_password(getattr(settings, "database_url", None)))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    if json_output is None:
        json_output = bool(getattr(settings, "log_json", False)) or json_logs_enabled()
    handler = make_handler(json_output=json_output, stream=stream)
    root.addHandler(handler)
    if level is None:
        level = getattr(settings, "log_level", None) or LogSettings().log_level
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # warnings.warn() text goes through the handler too (logger py.warnings), not bare to stderr.
    logging.captureWarnings(True)
    return handler


def ensure_logging(settings: Any = None) -> None:
    """:func:`configure_logging` unless this process has already done it: for code that may
    run in a process of its own (a Dagster code server or run worker) or inside one that set
    its logging up itself (the CLI, a test)."""
    if not any(h.get_name() == _HANDLER_NAME for h in logging.getLogger().handlers):
        configure_logging(settings=settings)


def make_handler(*, json_output: bool | None = None, stream: TextIO | None = None) -> logging.Handler:
    """persona-core's handler (request ids, redaction, JSON or text) for a logger of its own,
    such as the Dagster run logger; ``json_output=None`` follows ``PERSONA_LOG_JSON``."""
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    if json_output is None:
        json_output = json_logs_enabled()
    handler.setFormatter(JsonFormatter() if json_output else TextFormatter())
    return handler


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def _url_password(url: str | None) -> str | None:
    match = re.match(r"^[a-z][a-z0-9+.-]*://[^/\s:@]+:([^@\s/]+)@", url or "")
    return match.group(1) if match else None
