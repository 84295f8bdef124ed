"""Defect 4: a set with no usable image (a corrupt MP4, only WAVs) is ``blocked`` with reasons,
exactly like a video without a face, instead of failing with an internal SchemaError."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest
from pipeline_support import FIXTURE_CONFIG, Home

from persona_core.store.base import VersionStatus
from persona_pipeline.build import build_version

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def test_a_corrupt_video_and_voices_only_is_blocked(home: Home, instance: dg.DagsterInstance) -> None:
    corrupt = ("clip.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 400, "video")
    v = home.upload("nobody", voices=["a1.wav"], extra=[corrupt])
    result = build_version("nobody", v.version, home.settings, instance, config=FIXTURE_CONFIG)
    assert result.status == VersionStatus.BLOCKED, result
    record = home.meta.get_version("nobody", v.version)
    assert record.status == VersionStatus.BLOCKED
    assert any("A_SELFIE" in reason for reason in record.reasons), record.reasons
