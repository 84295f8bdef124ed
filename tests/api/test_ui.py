"""The pack viewer (/ui/...): server-rendered HTML of a pack's anchors, scores, checks and
rejected inputs, behind the same API-key auth as the JSON routes."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from chromium import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from fastapi.testclient import TestClient
from playwright.sync_api import sync_playwright

from persona_core.pack import (
    CameraMode,
    CanonicalChoice,
    CheckResult,
    InputRecord,
    PersonaPack,
    RenderCriterion,
)
from persona_core.publish import publish_pack
from persona_core.store.base import VersionStatus
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.testing import make_pack
from registry_api.config import ApiSettings
from registry_api.key_store import ApiKeyStore
from registry_api.main import create_app
from registry_api.routes import ui
from registry_api.server import BackgroundServer, reserve_socket

XSS = "<script>alert('x')</script>"


@dataclass
class Viewer:
    settings: ApiSettings
    meta: SqlMetadataStore
    blobs: LocalBlobStore
    pack: PersonaPack
    keys: dict[str, str]


def viewer_stores(home: Path, public_base_url: str = "http://testserver") -> Viewer:
    """alice v1 published (with a rejected input and a failed WARN check), v2 blocked."""
    settings = ApiSettings(env="test", home=home, public_base_url=public_base_url)
    meta = SqlMetadataStore.open(settings.resolved_database_url)
    blobs = LocalBlobStore(
        home / "blobs", settings.signing_secret.get_secret_value().encode(), public_base_url
    )
    meta.create_persona("alice", {})
    meta.create_persona("bob", {})
    meta.create_version("alice", {})
    base = make_pack(blobs, "alice", 1, n_anchors=6, image_size=48)
    rejected = InputRecord(
        name="two_people.jpg",
        sha256=hashlib.sha256(b"two").hexdigest(),
        kind="image",
        accepted=False,
        reason=f"2 faces in frame {XSS}",
    )
    warn = CheckResult(
        name="embedding_stability",
        passed=False,
        severity="WARN",
        description="outlier anchors",
        metadata={"observed": 0.41, "threshold": 0.5, "outliers": "b_mirror-0001"},
    )
    pack = base.model_copy(
        update={
            "provenance": base.provenance.model_copy(update={"inputs": [*base.provenance.inputs, rejected]}),
            "checks": [*base.checks, warn],
        }
    )
    publish_pack(meta, blobs, pack)
    meta.create_version("alice", {})
    meta.transition(
        "alice",
        2,
        VersionStatus.BLOCKED,
        reasons=["A_SELFIE has 1 usable anchor, needs 3"],
        checks=[
            {"name": "enough_anchors", "passed": False, "severity": "ERROR", "metadata": {"observed": 1}}
        ],
    )
    keys = {
        "read": ApiKeyStore.of(meta).create_api_key("viewer", ["read"])[1],
        "bob": ApiKeyStore.of(meta).create_api_key("bob-only", ["read"], persona_ids=["bob"])[1],
    }
    return Viewer(
        settings,
        meta,
        blobs,
        PersonaPack.model_validate_json(blobs.get(meta.get_published("alice", 1).pack_ref)),
        keys,
    )


@pytest.fixture
def viewer(tmp_path: Path) -> tuple[TestClient, Viewer]:
    v = viewer_stores(tmp_path)
    app = create_app(v.settings, metadata=v.meta, blobs=v.blobs)
    ui.register(app)
    return TestClient(app), v


def test_published_page_shows_anchors_scores_checks_and_rejections(viewer: tuple[TestClient, Viewer]) -> None:
    http, v = viewer
    r = http.get("/ui/personas/alice/versions/1", headers={"X-API-Key": v.keys["read"]})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    html = r.text
    for mode, anchors in v.pack.anchor_sets.items():
        assert f"id='mode-{mode.value}'" in html
        for a in anchors:
            assert f"data-anchor-id='{a.anchor_id}'" in html
    assert v.pack.content_hash in html
    assert "embedding_stability" in html
    assert "observed=0.41" in html
    assert "threshold=0.5" in html
    assert "two_people.jpg" in html
    assert "Rejected inputs <small>(1 of 7)</small>" in html
    # The face-mesh and camera-mode tags show with their confidences.
    assert "eyes open 0.90" in html
    assert "mouth closed 0.85" in html
    assert "(close framing)" in html
    assert "expression neutrality" in html
    # Input text is escaped, never markup.
    assert XSS not in html
    assert "&lt;script&gt;" in html
    # Every image is a signed, same-origin blob URL that serves the PNG it names.
    srcs = re.findall(r"<img class='anchor-image' src='([^']+)'", html)
    assert len(srcs) == 6
    for src in srcs[:2]:
        assert src.startswith("/v1/blobs/")
        img = http.get(src.replace("&amp;", "&"))
        assert img.status_code == 200
        assert img.content.startswith(b"\x89PNG")


def test_a_warn_check_that_did_not_pass_reads_warn_and_only_an_error_check_fail(
    viewer: tuple[TestClient, Viewer],
) -> None:
    """A WARN check that did not pass (defaults written, an outlier named) asks a person to look;
    it is not shown as a failure. A failed ERROR check (the gate) is FAIL."""
    http, v = viewer
    published = http.get("/ui/personas/alice/versions/1", headers={"X-API-Key": v.keys["read"]}).text
    assert "<tr class='warn'><td>embedding_stability</td><td>WARN</td><td>warn</td>" in published
    assert "FAIL" not in published
    blocked = http.get("/ui/personas/alice/versions/2", headers={"X-API-Key": v.keys["read"]}).text
    assert "<tr class='fail'><td>enough_anchors</td><td>ERROR</td><td>FAIL</td>" in blocked


def test_blocked_version_shows_reasons_and_checks(viewer: tuple[TestClient, Viewer]) -> None:
    http, v = viewer
    html = http.get("/ui/personas/alice/versions/2", headers={"X-API-Key": v.keys["read"]}).text
    assert "status-blocked" in html
    assert "A_SELFIE has 1 usable anchor, needs 3" in html
    assert "enough_anchors" in html
    assert "<img" not in html


def test_markup_in_reasons_and_checks_shows_as_text(viewer: tuple[TestClient, Viewer]) -> None:
    """A failed version's reason and check fields holding <script> are escaped on the persona
    page and the version page: the escaped text is there, the tag never is."""
    http, v = viewer
    v.meta.create_version("alice", {})
    v.meta.transition(
        "alice",
        3,
        VersionStatus.FAILED,
        reasons=[f"decoder said {XSS}"],
        checks=[{"name": "decode", "passed": False, "severity": "ERROR", "description": XSS,
                 "metadata": {"observed": XSS}}],
    )  # fmt: skip
    for path in ("/ui/personas/alice", "/ui/personas/alice/versions/3"):
        html = http.get(path, headers={"X-API-Key": v.keys["read"]}).text
        assert "<script" not in html
        assert "decoder said &lt;script&gt;alert(" in html
    assert html.count("&lt;script&gt;alert(") == 3  # the reason, the description, the metadata


def test_canonical_anchor_shows_why_it_was_chosen(viewer: tuple[TestClient, Viewer]) -> None:
    """A pack that records its canonical choice shows the reason on the canonical anchor's card
    (escaped); a pack built before the choice was recorded shows none and still renders."""
    http, v = viewer
    base = make_pack(v.blobs, "bob", 1, n_anchors=4, image_size=48)
    selfies = base.anchor_sets[CameraMode.A_SELFIE]
    choice = CanonicalChoice(
        render_ready=False,
        met=[RenderCriterion.NEUTRAL, RenderCriterion.EYES_OPEN],
        missed=[RenderCriterion.MOUTH_CLOSED],
        candidates=len(selfies),
        reason=f"not render-ready, misses mouth closed {XSS}",
    )
    first = selfies[0].model_copy(
        update={"metadata": selfies[0].metadata.model_copy(update={"canonical_choice": choice})}
    )
    pack = base.model_copy(
        update={"anchor_sets": {**base.anchor_sets, CameraMode.A_SELFIE: [first, *selfies[1:]]}}
    )
    v.meta.create_version("bob", {})
    publish_pack(v.meta, v.blobs, pack)
    html = http.get("/ui/personas/bob/versions/1", headers={"X-API-Key": v.keys["read"]}).text
    card = html.split(f"data-anchor-id='{first.anchor_id}'")[1].split("</figure>")[0]
    why = "<span class='canonical-choice'>why canonical: not render-ready, misses mouth closed &lt;script"
    assert why in card
    assert html.count("class='canonical-choice'") == 1
    assert XSS not in html
    older = http.get("/ui/personas/alice/versions/1", headers={"X-API-Key": v.keys["read"]}).text
    assert "class='canonical-choice'" not in older
    assert "badge'>canonical" in older


def test_persona_page_links_every_version(viewer: tuple[TestClient, Viewer]) -> None:
    http, v = viewer
    html = http.get("/ui/personas/alice", headers={"X-API-Key": v.keys["read"]}).text
    assert "href='/ui/personas/alice/versions/1'" in html
    assert "href='/ui/personas/alice/versions/2'" in html


@pytest.mark.parametrize(
    ("key", "path", "status"),
    [
        (None, "/ui/personas/alice/versions/1", 401),
        ("bob", "/ui/personas/alice/versions/1", 403),
        ("read", "/ui/personas/alice/versions/9", 404),
        ("read", "/ui/personas/nobody/versions/1", 404),
        ("read", "/ui/personas/alice/versions/zero", 400),
    ],
)
def test_auth_and_errors(viewer: tuple[TestClient, Viewer], key: str | None, path: str, status: int) -> None:
    http, v = viewer
    headers = {"X-API-Key": v.keys[key]} if key else {}
    assert http.get(path, headers=headers).status_code == status


@pytest.mark.slow
@pytest.mark.e2e
def test_viewer_in_headless_chromium(tmp_path: Path) -> None:
    """A real browser loads the page from a real server and every anchor image decodes."""
    sock = reserve_socket()
    v = viewer_stores(tmp_path, public_base_url=f"http://127.0.0.1:{sock.getsockname()[1]}")
    server = BackgroundServer(v.settings, metadata=v.meta, blobs=v.blobs, with_grpc=False, sock=sock)
    ui.register(server.app)
    ARTIFACTS.mkdir(exist_ok=True)
    with server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(extra_http_headers={"X-API-Key": v.keys["read"]})
            page = context.new_page()
            response = page.goto(f"{server.base_url}/ui/personas/alice/versions/1", wait_until="load")
            assert response is not None
            assert response.status == 200
            assert page.title() == "alice v1 - persona-core"
            images = page.locator("img.anchor-image")
            assert images.count() == 6
            widths = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
            assert len(widths) == 12  # image + face crop per anchor
            assert all(complete and width > 0 for complete, width in widths)
            assert page.locator("table.rejected").inner_text().count("two_people.jpg") == 1
            assert page.locator("tr.warn").first.inner_text().startswith("embedding_stability")
            page.screenshot(path=str(ARTIFACTS / "ui_pack_viewer.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "ui_pack_viewer.png").stat().st_size > 10_000
