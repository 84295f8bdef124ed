"""Logs are structured (JSON on request) and never carry a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from persona_core.logging import REDACTED, configure_logging, redact_text, register_secret
from persona_core.settings import Settings


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    root = logging.getLogger()
    level = root.level
    yield buf
    for h in [h for h in root.handlers if h.get_name() == "persona-core"]:
        root.removeHandler(h)
    root.setLevel(level)


def test_json_lines_with_extras(stream: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    """PERSONA_LOG_JSON=1 gives one parseable object per line, extras as keys."""
    monkeypatch.setenv("PERSONA_LOG_JSON", "1")
    configure_logging(stream=stream)
    logging.getLogger("persona.build").info("built %s v%d", "alice", 3, extra={"persona_id": "alice"})
    doc = json.loads(stream.getvalue().strip())
    assert doc["message"] == "built alice v3"
    assert doc["level"] == "INFO"
    assert doc["logger"] == "persona.build"
    assert doc["persona_id"] == "alice"
    assert doc["ts"].endswith("+00:00")


def test_text_lines_by_default(stream: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSONA_LOG_JSON", raising=False)
    configure_logging(stream=stream)
    logging.getLogger("x").warning("hello", extra={"version": 2})
    line = stream.getvalue().strip()
    assert "WARNING" in line
    assert "x: hello version=2" in line


SECRET_KEY = "pk_live_7f3a9c1e5b2d4f60a8c7e9b1d3f5a7c9"


@pytest.mark.parametrize(
    ("template", "args", "extra"),
    [
        ("request with Authorization: Bearer %s", (SECRET_KEY,), {}),
        ("X-API-Key: %s", (SECRET_KEY,), {}),
        ("GET /v1/blobs/ab?exp=1700000000&sig=%s", (SECRET_KEY,), {}),
        ("connecting to postgresql+psycopg://persona:%s@db:5432/persona", (SECRET_KEY,), {}),
        ("created key", (), {"api_key": SECRET_KEY}),
        ("settings", (), {"config": {"s3_secret_key": SECRET_KEY, "region": "us-east-1"}}),
        ("api_key=%s rest", (SECRET_KEY,), {}),
        ("key %s used", ("pk_0123456789abcdef_" + SECRET_KEY,), {}),
    ],
)
def test_secrets_are_redacted(
    stream: io.StringIO, template: str, args: tuple[str, ...], extra: dict[str, object]
) -> None:
    """No secret reaches the output, whatever form it is logged in; the rest still does."""
    configure_logging(stream=stream, json_output=True)
    logging.getLogger("t").info(template, *args, extra=extra)
    out = stream.getvalue()
    assert SECRET_KEY not in out
    assert REDACTED in out
    doc = json.loads(out)
    if "config" in extra:
        assert doc["config"]["region"] == "us-east-1"


def test_settings_secrets_and_tracebacks_are_redacted(stream: io.StringIO) -> None:
    """A secret from Settings stays out even when it shows up bare inside an exception."""
    signing = "a-very-long-signing-secret-value-123"
    settings = Settings(signing_secret=SecretStr(signing), s3_secret_key=SecretStr("s3-secret-value-xyz"))
    configure_logging(stream=stream, json_output=False, settings=settings)
    try:
        raise RuntimeError(f"boom while using {signing} and s3-secret-value-xyz")
    except RuntimeError:
        logging.getLogger("t").exception("failed")
    out = stream.getvalue()
    assert "RuntimeError: boom while using ***" in out
    assert signing not in out
    assert "s3-secret-value-xyz" not in out


def test_ordinary_text_is_untouched() -> None:
    register_secret("short")  # too short to register: would eat ordinary words
    text = "persona alice v3 published; design assignment short token_count"
    assert redact_text(text) == text
