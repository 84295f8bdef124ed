"""Data ops work in the Dagster UI: a version built into an on-disk DAGSTER_HOME, then `dagster
dev` on it. The `anchor_sets` asset page in headless Chromium opens the contact sheet from the
metadata; the promote_version job's Launchpad, filled in, launches a run that puts the version
live. The screenshots are kept in test-artifacts/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pytest
from chromium import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from dagster_dev_server import DagsterDev, dagster_dev, dagster_env, make_dagster_home, stop_sensor
from pipeline_support import FIXTURE_CONFIG, OBAMA, Home
from playwright.sync_api import Browser, Page, expect, sync_playwright

from persona_core.store.base import VersionStatus
from persona_pipeline.build import BuildResult, build_version

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]
SCREENSHOT = ARTIFACTS / "dagster_anchor_sets.png"
LAUNCHPAD_SCREENSHOT = ARTIFACTS / "dagster_promote_launchpad.png"
PROMOTE_CONFIG = """\
ops:
  promote:
    config:
      persona_id: obama
      version: {version}
      alias: live
      reason: reviewed the contact sheet
"""


@dataclass
class Ui:
    home: Home
    result: BuildResult
    dev: DagsterDev
    browser: Browser
    welcomed: bool = False

    def page(self, path: str) -> Page:
        page = self.browser.new_page(viewport={"width": 1400, "height": 1250})
        page.goto(f"{self.dev.base_url}{path}", wait_until="load")
        # A fresh DAGSTER_HOME has not seen the first-visit dialog; it covers the page until
        # skipped, and once skipped it stays away for the instance (any later page).
        if not self.welcomed:
            page.get_by_role("button", name="Skip").click(timeout=30_000)
            self.welcomed = True
        return page


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    """One build and one `dagster dev` (about 30 s to start) for the tests of this module."""
    tmp_path = tmp_path_factory.mktemp("dagster_ui")
    home = Home(tmp_path / "persona")
    upload = home.upload("obama", [*OBAMA, "two_people.jpg"])  # one rejected input, listed on the sheet
    dagster_home = make_dagster_home(tmp_path / "dagster_home")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
        with dg.DagsterInstance.get() as instance:
            result = build_version("obama", upload.version, home.settings, instance, config=FIXTURE_CONFIG)
    assert result.status == VersionStatus.PUBLISHED
    # The upload's manifest is in the stores dagster dev reads: with the sensor on, its daemon
    # would start a second build of this (already published) version.
    stop_sensor("upload_manifest_sensor", dagster_env(dagster_home, home.settings.home))

    ARTIFACTS.mkdir(exist_ok=True)
    with dagster_dev(dagster_home, home.settings.home, tmp_path / "dagster_dev.log") as dev, \
            sync_playwright() as pw:
        dev.wait_for_assets()
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield Ui(home, result, dev, browser)
        finally:
            browser.close()


def test_anchor_sets_asset_page_shows_the_contact_sheet(ui: Ui) -> None:
    result = ui.result
    sheet = re.fullmatch(r"!\[contact sheet\]\((data:image/png;base64,[A-Za-z0-9+/=]+)\)",
                         result.metadata["anchor_sets"]["contact_sheet"])
    assert sheet is not None
    SCREENSHOT.unlink(missing_ok=True)
    page = ui.page(f"/assets/anchor_sets?partition={result.partition_key}")
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
    assert SCREENSHOT.stat().st_size > 50_000


def test_promote_from_the_launchpad_puts_the_version_live(ui: Ui) -> None:
    version = ui.result.record.version
    LAUNCHPAD_SCREENSHOT.unlink(missing_ok=True)
    page = ui.page("/locations/persona_pipeline/jobs/promote_version/playground")
    # The config editor is CodeMirror: set its text as a paste would (typing would auto-indent).
    page.locator(".CodeMirror").first.wait_for(timeout=30_000)
    page.evaluate("text => document.querySelector('.CodeMirror').CodeMirror.setValue(text)",
                  PROMOTE_CONFIG.format(version=version))
    expect(page.get_by_text("No errors")).to_be_visible()  # the typed config validated
    expect(page.get_by_text("No missing config")).to_be_visible()
    page.screenshot(path=str(LAUNCHPAD_SCREENSHOT), animations="disabled")
    assert LAUNCHPAD_SCREENSHOT.stat().st_size > 20_000

    page.get_by_role("button", name="Launch Run").click()
    page.wait_for_url("**/runs/*", timeout=30_000)
    run_id = page.url.rstrip("/").rsplit("/", 1)[1]
    query = f'{{ runOrError(runId: "{run_id}") {{ ... on Run {{ status }} }} }}'
    deadline = time.monotonic() + 180  # queued, then started by the daemon in its own process
    status = ""
    while time.monotonic() < deadline and status not in {"SUCCESS", "FAILURE", "CANCELED"}:
        time.sleep(0.5)
        status = ui.dev.graphql(query)["runOrError"]["status"]
    assert status == "SUCCESS"
    [move] = ui.home.meta.aliases.history("obama", "live")
    assert (move.from_version, move.to_version) == (None, version)
    assert (move.actor, move.reason) == (f"dagster:{run_id}", "reviewed the contact sheet")
