"""`pack diff` on two real builds of one persona that differ in photos and thresholds: the CLI
(--json and the table) and the HTTP route list each difference, and the gRPC call agrees."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace

import dagster as dg
import grpc
import pytest
from pipeline_support import FACES, FIXTURE_CONFIG, Home
from services import settings_env
from typer.testing import CliRunner

from persona_cli.main import app
from persona_core.api_models import PackDiff
from persona_core.refs import sha256_hex
from persona_core.store.base import VersionStatus
from persona_pipeline.build import build_version
from registry_api.config import ApiSettings
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.grpc_server import start_grpc_server
from registry_api.key_store import ApiKeyStore
from registry_api.main import create_app

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]

V1_PHOTOS = ["obama.jpg", "obama1.jpg", "obama3.jpg"]
V2_PHOTOS = ["obama1.jpg", "obama2.jpg", "obama3.jpg"]  # obama.jpg out, obama2.jpg in (both A_SELFIE)
# Everything but the mouth threshold is as in v1; a looser mouth line tags more mouths closed.
V2_CONFIG = replace(FIXTURE_CONFIG, mouth_closed_max=0.9, max_anchors_per_mode=4)


def image_ref(name: str) -> str:
    return f"sha256:{sha256_hex((FACES / name).read_bytes())}"


@dataclass
class Built:
    home: Home
    env: dict[str, str]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    home = Home(tmp_path_factory.mktemp("diff-home"))
    with dg.instance_for_test() as instance:
        for version, photos, config in ((1, V1_PHOTOS, FIXTURE_CONFIG), (2, V2_PHOTOS, V2_CONFIG)):
            home.upload("obama", photos)
            result = build_version("obama", version, home.settings, instance, config=config)
            assert result.status == VersionStatus.PUBLISHED, result
    yield Built(home, settings_env(home.settings))
    home.meta.close()


def assert_listed_changes(diff: PackDiff) -> None:
    assert (diff.persona_id, diff.from_version, diff.to_version, diff.same_content) == ("obama", 1, 2, False)
    modes = {m.camera_mode: m for m in diff.anchors}
    selfie, cutaway = modes["A_SELFIE"], modes["C_CUTAWAY"]
    assert [a.image_ref for a in selfie.added] == [image_ref("obama2.jpg")]
    assert [a.image_ref for a in selfie.removed] == [image_ref("obama.jpg")]
    assert [k.image_ref for k in selfie.kept] == [image_ref("obama1.jpg")]
    assert (cutaway.added, cutaway.removed) == ([], [])
    assert [k.image_ref for k in cutaway.kept] == [image_ref("obama3.jpg")]
    # The looser mouth line changes a tag of a kept photo: the same photo, another verdict.
    mouth = {c.path: c for c in cutaway.kept[0].changes}["metadata.mouth_closed.confidence"]
    assert mouth.before < 0.9 <= mouth.after
    thresholds = {c.path: (c.before, c.after) for c in diff.thresholds}
    assert thresholds == {"mouth_closed_max": (0.3, 0.9), "max_anchors_per_mode": (8, 4)}
    assert [i.name for i in diff.inputs_added] == ["obama2.jpg"]
    assert [i.name for i in diff.inputs_removed] == ["obama.jpg"]
    # The same man from overlapping photos, with the same models.
    assert diff.centroid_cosine is not None
    assert 0.8 < diff.centroid_cosine < 1.0
    assert diff.models == []
    assert diff.identity == []
    assert diff.behavior == []
    assert diff.voice == []
    assert {c.name for c in diff.checks} >= {"enough_anchors"}
    assert all(c.from_passed == c.to_passed for c in diff.checks)


def test_cli_json_lists_each_difference(built: Built) -> None:
    result = CliRunner().invoke(app, ["pack", "diff", "obama", "1", "latest", "--json"], env=built.env)
    assert result.exit_code == 0, result.output
    assert_listed_changes(PackDiff.model_validate(json.loads(result.stdout)))


def test_cli_table_shows_each_difference(built: Built) -> None:
    result = CliRunner().invoke(app, ["pack", "diff", "obama", "1", "2"], env={**built.env, "COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "obama v1 -> v2" in text
    assert "identity centroid cosine 0.9" in text
    assert "a_selfie-" + image_ref("obama2.jpg")[7:19] in text
    assert "+ added" in text
    assert "a_selfie-" + image_ref("obama.jpg")[7:19] in text
    assert "- removed" in text
    assert "mouth_closed_max" in text
    assert "max_anchors_per_mode" in text
    assert "+ obama2.jpg" in text
    assert "- obama.jpg" in text


def test_cli_unknown_version_is_not_found(built: Built) -> None:
    result = CliRunner().invoke(app, ["pack", "diff", "obama", "1", "9", "--json"], env=built.env)
    assert result.exit_code == 3, result.output
    assert "version_not_found" in result.output


def test_http_and_grpc_list_each_difference(built: Built) -> None:
    from fastapi.testclient import TestClient  # noqa: PLC0415

    key = ApiKeyStore.of(built.home.meta).create_api_key("diff-reader", ["read"])[1]
    settings = ApiSettings(env="test", home=built.home.settings.home, public_base_url="http://testserver")
    application = create_app(settings, metadata=built.home.meta, blobs=built.home.blobs)
    with TestClient(application) as http:
        answer = http.get("/v1/personas/obama/diff", params={"from": "1", "to": "latest"},
                          headers={"X-API-Key": key})
        assert answer.status_code == 200, answer.text
        assert_listed_changes(PackDiff.model_validate(answer.json()))
        missing = http.get("/v1/personas/obama/diff", params={"from": "1", "to": "7"},
                           headers={"X-API-Key": key})
        assert (missing.status_code, missing.json()["code"]) == (404, "version_not_found")
        server, port = start_grpc_server(application.state.service)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.PersonaRegistryStub(channel)
                reply = stub.DiffPersonaVersions(
                    pb.DiffPersonaVersionsRequest(persona_id="obama", from_version="1", to_version="2"),
                    metadata=(("x-api-key", key),),
                )
        finally:
            server.stop(None)
    assert (reply.from_version, reply.to_version, reply.same_content) == (1, 2, False)
    assert_listed_changes(PackDiff.model_validate_json(reply.diff_json))
    cosine = PackDiff.model_validate_json(reply.diff_json).centroid_cosine
    assert reply.centroid_cosine == pytest.approx(cosine)
