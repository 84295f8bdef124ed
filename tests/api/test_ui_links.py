"""The viewer in a browser: a signed viewer link (``persona-core ui-link``) opens a persona's
viewer pages without an API-key header. Opening it sets an HttpOnly, SameSite=Strict cookie
scoped to that persona's pages and moves on to the clean URL; an expired or tampered link is
403; the cookie opens that persona and no other; the signature is never logged."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from chromium import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from fastapi.testclient import TestClient
from playwright.sync_api import Route, sync_playwright
from services import free_ports
from test_ui import Viewer, viewer_stores
from typer.testing import CliRunner

from persona_cli.main import app as cli
from persona_core.signing import sign_viewer_link, sign_viewer_session
from registry_api.main import create_app

LINK_TTL_S = 900


def secret(v: Viewer) -> bytes:
    return v.settings.signing_secret.get_secret_value().encode()


def link(v: Viewer, persona: str = "alice", version: int | None = 1, *, now: float | None = None) -> str:
    """The signed link's path and query (the TestClient's base URL is the public one)."""
    url = sign_viewer_link(
        v.settings.public_base_url, secret(v), persona, version=version, ttl_s=LINK_TTL_S, now=now
    )
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


@pytest.fixture
def viewer(tmp_path: Path) -> Iterator[tuple[TestClient, Viewer]]:
    v = viewer_stores(tmp_path)
    with TestClient(create_app(v.settings, metadata=v.meta, blobs=v.blobs)) as http:
        yield http, v
    v.meta.close()


BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def test_link_sets_a_persona_scoped_strict_cookie_and_moves_on_to_the_clean_url(
    viewer: tuple[TestClient, Viewer],
) -> None:
    """The link answers a page that refreshes to the version's URL (no signature in it), with no
    referrer, and sets the session cookie; the viewer page and its images then load on that
    cookie alone, without any header."""
    http, v = viewer
    r = http.get(link(v), headers=BROWSER)
    assert r.status_code == 200
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "private, no-store"
    assert "<meta http-equiv='refresh' content='0; url=/ui/personas/alice/versions/1'>" in r.text
    assert "sig=" not in r.text
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("persona_viewer=alice.")
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert attributes >= {"httponly", "samesite=strict", "path=/ui/personas/alice", "max-age=3600"}
    assert "secure" not in attributes  # the public base URL here is plain http
    page = http.get("/ui/personas/alice/versions/1")
    assert page.status_code == 200
    srcs = re.findall(r"<img class='anchor-image' src='([^']+)'", page.text)
    assert len(srcs) == 6
    image = httpx.Client(transport=http._transport, base_url="http://testserver").get(  # no cookie jar
        srcs[0].replace("&amp;", "&")
    )
    assert image.status_code == 200
    assert image.content.startswith(b"\x89PNG")
    assert http.get("/ui/personas/alice").status_code == 200  # the version list, same cookie


def test_a_link_without_a_version_opens_the_version_list(viewer: tuple[TestClient, Viewer]) -> None:
    http, v = viewer
    r = http.get(link(v, version=None), headers=BROWSER)
    assert "content='0; url=/ui/personas/alice'>" in r.text
    assert "href='/ui/personas/alice/versions/2'" in http.get("/ui/personas/alice").text


def tampered(v: Viewer) -> list[str]:
    good = link(v)
    sig = good.rsplit("sig=", 1)[1]
    other = "0" if sig[0] != "0" else "1"
    return [
        good.replace(f"sig={sig}", f"sig={other}{sig[1:]}"),  # one hex digit changed
        good.replace("v=1&", "v=2&"),  # another version under v1's signature
        good.replace("/alice/", "/bob/"),  # another persona under alice's signature
        good.replace("exp=", "exp=9"),  # a later expiry
        good.replace("v=1&", ""),  # the version dropped
        good.split("&sig=")[0],  # no signature
        good.replace(f"sig={sig}", "sig=" + "é" * 64),  # not hex
        good.replace("v=1&", "v=01&"),
        good.replace("/alice/", "/Alice/"),
    ]


def test_expired_and_tampered_links_are_403_and_set_no_cookie(viewer: tuple[TestClient, Viewer]) -> None:
    """A browser gets a small HTML page saying why; an API client the problem document; neither
    a cookie, and the viewer still wants a key afterwards."""
    http, v = viewer
    expired = link(v, now=time.time() - LINK_TTL_S - 1)
    for url in [expired, *tampered(v)]:
        page = http.get(url, headers=BROWSER)
        assert page.status_code == 403, url
        assert page.headers["content-type"].startswith("text/html")
        assert "bad_signature" in page.text
        assert "set-cookie" not in page.headers
        problem = http.get(url, headers={"Accept": "application/json"})
        assert problem.status_code == 403
        assert problem.headers["content-type"] == "application/problem+json"
        assert problem.json()["code"] == "bad_signature"
    assert "has expired" in http.get(expired, headers=BROWSER).text
    assert not http.cookies
    assert http.get("/ui/personas/alice/versions/1").status_code == 401


def test_the_cookie_for_one_persona_does_not_open_another(viewer: tuple[TestClient, Viewer]) -> None:
    """Scoped by path (a browser never sends alice's cookie to bob's pages) and by signature:
    alice's cookie sent to bob's pages anyway is 403, and a cookie edited to name bob is too."""
    http, v = viewer
    http.get(link(v), headers=BROWSER)
    assert http.get("/ui/personas/alice/versions/1").status_code == 200
    assert http.get("/ui/personas/bob").status_code == 401  # the jar sends nothing to bob's path
    alice = sign_viewer_session(secret(v), "alice", 60)
    forged = "bob." + alice.split(".", 1)[1]
    expired = sign_viewer_session(secret(v), "alice", 60, now=time.time() - 61)
    fresh = TestClient(http.app)
    for cookie, path, code in [
        (alice, "/ui/personas/bob", "persona_forbidden"),
        (alice, "/ui/personas/bob/versions/1", "persona_forbidden"),
        (forged, "/ui/personas/bob", "bad_signature"),
        (expired, "/ui/personas/alice", "bad_signature"),
        ("alice.1.x", "/ui/personas/alice", "bad_signature"),
    ]:
        r = fresh.get(path, headers={"Cookie": f"persona_viewer={cookie}"})
        assert (r.status_code, r.json()["code"]) == (403, code), (cookie, path)
    # The cookie reads the viewer pages only, never the JSON API.
    r = fresh.get("/v1/personas/alice/versions", headers={"Cookie": f"persona_viewer={alice}"})
    assert r.status_code == 401
    # An API key still works as before, and wins over a cookie.
    r = fresh.get(
        "/ui/personas/bob", headers={"X-API-Key": v.keys["read"], "Cookie": f"persona_viewer={alice}"}
    )
    assert r.status_code == 200


def test_the_signature_is_in_no_log_line(
    viewer: tuple[TestClient, Viewer], caplog: pytest.LogCaptureFixture
) -> None:
    http, v = viewer
    good, bad = link(v), tampered(v)[0]
    caplog.set_level(logging.DEBUG)
    http.get(good, headers=BROWSER)
    http.get(bad, headers=BROWSER)
    http.get(bad)
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]  # not the client's
    access = [r for r in server if r.name == "registry_api.access"]
    assert [r.path for r in access] == ["/ui/personas/alice/open"] * 3  # type: ignore[attr-defined]
    assert any(r.name == "registry_api.ui" and "refused viewer link" in r.getMessage() for r in server)
    for sig in (good.rsplit("sig=", 1)[1], bad.rsplit("sig=", 1)[1]):
        for record in server:
            assert sig not in record.getMessage()
            assert sig not in json.dumps(record.__dict__, default=str)


def test_ui_link_prints_a_link_on_the_public_base_url(viewer: tuple[TestClient, Viewer]) -> None:
    """The command signs with the registry's secret; unknown personas and versions exit 3."""
    http, v = viewer
    env = {"PERSONA_HOME": str(v.settings.home), "PERSONA_PUBLIC_BASE_URL": "http://testserver"}
    run = CliRunner().invoke(cli, ["ui-link", "alice", "-v", "1"], env=env)
    assert run.exit_code == 0, run.output
    url = run.output.strip()
    assert url.startswith("http://testserver/ui/personas/alice/open?v=1&exp=")
    assert http.get(url, headers=BROWSER).status_code == 200
    assert http.get("/ui/personas/alice/versions/1").status_code == 200
    doc = json.loads(CliRunner().invoke(cli, ["--json", "ui-link", "bob", "--ttl", "60"], env=env).output)
    assert doc["url"].startswith("http://testserver/ui/personas/bob/open?exp=")
    assert 55 <= doc["expires_at"] - time.time() <= 60
    for args in (["ui-link", "nobody"], ["ui-link", "alice", "-v", "9"]):
        assert CliRunner().invoke(cli, args, env=env).exit_code == 3
    assert CliRunner().invoke(cli, ["ui-link", "alice", "--ttl", "86401"], env=env).exit_code == 2


@pytest.mark.slow
@pytest.mark.e2e
def test_headless_chromium_opens_the_viewer_through_the_link(tmp_path: Path) -> None:
    """A real ``persona-core serve``; the link from a real ``persona-core ui-link``, clicked in a
    page of another site (the way a link from chat or mail arrives); a browser sending no
    header. The viewer opens with every image, the history holds no signed URL, the cookie is
    HttpOnly and Strict, bob's pages stay closed, an expired link is refused, and the server's
    log lines hold no signature."""
    v = viewer_stores(tmp_path)
    v.meta.close()
    (port,) = free_ports(1)
    base = f"http://127.0.0.1:{port}"
    env = {
        **{k: val for k, val in os.environ.items() if not k.startswith(("PERSONA_", "PROMETHEUS_"))},
        "PERSONA_HOME": str(tmp_path),
        "PERSONA_PUBLIC_BASE_URL": base,
        "PERSONA_LOG_JSON": "1",
        "PERSONA_LOG_LEVEL": "INFO",
    }
    cli_path = str(Path(sys.executable).with_name("persona-core"))
    url = subprocess.run([cli_path, "ui-link", "alice", "-v", "1"], env=env, check=True, capture_output=True,
                         text=True, timeout=60).stdout.strip()  # fmt: skip
    assert url.startswith(f"{base}/ui/personas/alice/open?v=1&exp=")
    expired = sign_viewer_link(base, secret(v), "alice", version=1, ttl_s=1, now=time.time() - 10)
    log_path = tmp_path / "serve.log"
    ARTIFACTS.mkdir(exist_ok=True)
    with log_path.open("wb") as log:
        serve = [cli_path, "serve", "--port", str(port), "--workers", "1", "--grpc-port", "0"]
        proc = subprocess.Popen(serve, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(base, proc, log_path)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context()
                page = context.new_page()

                def chat(route: Route) -> None:
                    route.fulfill(content_type="text/html", body=f"<a id='viewer' href='{url}'>pack</a>")

                page.route("http://chat.example/**", chat)
                page.goto("http://chat.example/thread")
                page.click("#viewer")
                page.wait_for_url(f"{base}/ui/personas/alice/versions/1")
                page.wait_for_load_state("load")
                assert page.title() == "alice v1 - persona-core"
                assert page.locator("img.anchor-image").count() == 6
                widths = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
                assert len(widths) == 12
                assert all(complete and width > 0 for complete, width in widths)
                page.screenshot(path=str(ARTIFACTS / "ui_viewer_link.png"), full_page=True)
                assert page.evaluate("document.cookie") == ""  # HttpOnly: no script reads it
                (cookie,) = context.cookies()
                assert (cookie["name"], cookie["path"], cookie["httpOnly"], cookie["sameSite"]) == (
                    "persona_viewer", "/ui/personas/alice", True, "Strict"
                )  # fmt: skip
                assert 3500 < cookie["expires"] - time.time() <= 3600
                # The link's page was replaced by the clean URL: back goes to the chat.
                page.go_back()
                assert page.url == "http://chat.example/thread"
                assert page.goto(f"{base}/ui/personas/alice").status == 200  # type: ignore[union-attr]
                assert page.goto(f"{base}/ui/personas/bob").status == 401  # type: ignore[union-attr]
                refused = page.goto(expired)
                assert refused is not None
                assert refused.status == 403
                assert "bad_signature" in page.inner_text("body")
            finally:
                browser.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert (ARTIFACTS / "ui_viewer_link.png").stat().st_size > 10_000
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    paths = [line.get("path") for line in lines if line.get("logger") == "registry_api.access"]
    assert paths.count("/ui/personas/alice/open") == 2
    assert "/ui/personas/alice/versions/1" in paths
    text = log_path.read_text()
    for signed in (url, expired):
        assert signed.rsplit("sig=", 1)[1] not in text


def wait_healthy(base: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, log_path.read_text()
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "serve did not come up"
        time.sleep(0.2)
