"""Data ops see a build's contact sheet in the Dagster UI: a version built into an on-disk
DAGSTER_HOME, then `dagster dev` on it, and the `anchor_sets` asset page in headless Chromium
opens the contact sheet from the metadata. The screenshot is kept in test-artifacts/."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest
from chromium import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from dagster_dev_server import dagster_dev, dagster_env, make_dagster_home, stop_sensor
from pipeline_support import FIXTURE_CONFIG, OBAMA, Home
from playwright.sync_api import expect, sync_playwright

from persona_core.store.base import VersionStatus
from persona_pipeline.build import build_version

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]
SCREENSHOT = ARTIFACTS / "dagster_anchor_sets.png"


def test_anchor_sets_asset_page_shows_the_contact_sheet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Home(tmp_path / "persona")
    upload = home.upload("obama", [*OBAMA, "two_people.jpg"])  # one rejected input, listed on the sheet
    dagster_home = make_dagster_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    with dg.DagsterInstance.get() as instance:
        result = build_version("obama", upload.version, home.settings, instance, config=FIXTURE_CONFIG)
    assert result.status == VersionStatus.PUBLISHED
    sheet = re.fullmatch(r"!\[contact sheet\]\((data:image/png;base64,[A-Za-z0-9+/=]+)\)",
                         result.metadata["anchor_sets"]["contact_sheet"])
    assert sheet is not None
    # The upload's manifest is in the stores dagster dev reads: with the sensor on, its daemon
    # would start a second build of this (already published) version.
    stop_sensor("upload_manifest_sensor", dagster_env(dagster_home, home.settings.home))

    ARTIFACTS.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    with dagster_dev(dagster_home, home.settings.home, tmp_path / "dagster_dev.log") as dev, \
            sync_playwright() as pw:
        dev.wait_for_assets()
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1250})
            url = f"{dev.base_url}/assets/anchor_sets?partition={result.partition_key}"
            page.goto(url, wait_until="load")
            # A fresh DAGSTER_HOME has not seen the first-visit dialog; it covers the page until skipped.
            page.get_by_role("button", name="Skip").click(timeout=30_000)
            page.get_by_text("[Show Markdown]").click()
            dialog = page.get_by_role("dialog")
            expect(dialog).to_contain_text("contact_sheet")
            img = dialog.locator("img[alt='contact sheet']")
            expect(img).to_be_visible()
            assert img.get_attribute("src") == sheet.group(1)  # this build's sheet, not another
            natural_width, complete = img.evaluate("i => [i.naturalWidth, i.complete]")
            assert complete
            assert natural_width > 0
            box = img.bounding_box()
            assert box is not None
            assert box["width"] > 500  # shown at a readable size, not a broken-image icon
            # Finite CSS transitions are fast-forwarded: the dialog is captured opaque, not mid-fade.
            page.screenshot(path=str(SCREENSHOT), animations="disabled")
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 50_000
