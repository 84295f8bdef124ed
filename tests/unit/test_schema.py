"""The committed JSON Schema and the Python pack types agree; broken packs are refused by
both, with a message naming the field; the content hash covers content, not build noise."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from persona_core.errors import PackValidationError
from persona_core.pack import (
    CameraMode,
    CanonicalChoice,
    PersonaPack,
    RenderCriterion,
    canonical_json,
    content_hash,
)
from persona_core.schema import SCHEMA_PATH, generated_schema, validate_pack_document
from persona_core.store.local import LocalBlobStore
from persona_core.testing import make_pack

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Doc:
    blobs = LocalBlobStore(tmp_path_factory.mktemp("blobs"), signing_secret=b"s", public_base_url="http://x")
    return make_pack(blobs, "alice", 2, n_anchors=6).to_json_dict()


def test_committed_schema_is_the_one_the_types_generate() -> None:
    """`make schema` output is committed: editing pack.py without it fails here."""
    committed = json.loads(SCHEMA_PATH.read_text())
    assert committed == generated_schema(), "schemas/persona_pack.schema.json is stale: run `make schema`"
    assert committed["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_a_pack_built_by_the_code_validates_and_round_trips(good: Doc) -> None:
    """What the code builds, the schema accepts, and parsing it back changes nothing."""
    validate_pack_document(good)
    assert PersonaPack.model_validate(good).to_json_dict() == good


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is _DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


_DELETE = object()


def _rename_mode(doc: Doc) -> None:
    doc["anchor_sets"]["D_DRONE"] = doc["anchor_sets"].pop("A_SELFIE")


BROKEN: list[tuple[str, Callable[[Doc], None], str]] = [
    ("missing persona_id", _set("persona_id", _DELETE), "persona_id"),
    ("persona id with a path in it", _set("persona_id", "../etc"), "persona_id"),
    ("version zero", _set("version", 0), "version"),
    ("unknown camera mode", _rename_mode, "anchor_sets"),
    ("image_ref not a sha256 ref", _set("anchor_sets.A_SELFIE.0.image_ref", "s3://b/x.jpg"), "image_ref"),
    ("quality above 1", _set("anchor_sets.A_SELFIE.0.quality.overall", 1.5), "overall"),
    ("unknown expression", _set("anchor_sets.B_MIRROR.0.metadata.expression_tag", "smug"), "expression_tag"),
    ("crop box of 3 numbers", _set("anchor_sets.A_SELFIE.0.metadata.crop_box", [1, 2, 3]), "crop_box"),
    ("extra top-level field", _set("secret_field", 1), "secret_field"),
    ("input sha256 too short", _set("provenance.inputs.0.sha256", "abc"), "sha256"),
    ("check severity not ERROR/WARN", _set("checks", [{"name": "x", "passed": True, "severity": "INFO"}]),
     "severity"),
    ("embedding dim zero", _set("identity.embedding_dim", 0), "embedding_dim"),
]


@pytest.mark.parametrize(("case", "mutate", "field"), BROKEN, ids=[c for c, _, _ in BROKEN])
def test_broken_pack_is_refused_by_schema_and_types_naming_the_field(
    good: Doc, case: str, mutate: Callable[[Doc], None], field: str
) -> None:
    """Each broken pack fails schema validation with the field in the message, and the
    pydantic types refuse it too (types and schema agree)."""
    doc = copy.deepcopy(good)
    mutate(doc)
    with pytest.raises(PackValidationError) as schema_err:
        validate_pack_document(doc)
    assert field in str(schema_err.value), f"{case}: {schema_err.value}"
    with pytest.raises(ValidationError):
        PersonaPack.model_validate(doc)


def test_a_pack_from_before_the_canonical_choice_loads_and_keeps_its_hash(good: Doc) -> None:
    """Packs built before anchors recorded ``canonical_choice`` have no such key: they validate,
    load and hash as they did; a pack that records it validates and hashes it as content."""
    assert "canonical_choice" not in json.dumps(good)
    old = PersonaPack.model_validate(good)
    validate_pack_document(old.to_json_dict())
    assert old.to_json_dict() == good
    assert old.compute_content_hash() == good["content_hash"]
    choice = CanonicalChoice(render_ready=True, met=list(RenderCriterion), missed=[], candidates=2,
                             reason="render-ready")
    doc = copy.deepcopy(good)
    doc["anchor_sets"]["A_SELFIE"][0]["metadata"]["canonical_choice"] = choice.model_dump(mode="json")
    validate_pack_document(doc)
    chosen = PersonaPack.model_validate(doc)
    assert chosen.anchor_sets[CameraMode.A_SELFIE][0].metadata.canonical_choice == choice
    assert chosen.to_json_dict() == doc
    assert content_hash(doc) != good["content_hash"]


def test_canonical_bytes_do_not_depend_on_key_order(good: Doc) -> None:
    reordered = json.loads(json.dumps(good, sort_keys=False))
    reordered = dict(reversed(list(reordered.items())))
    assert canonical_json(reordered) == canonical_json(good)
    assert b" " not in canonical_json({"a": 1, "b": [1, 2]})


def test_content_hash_ignores_build_noise_but_not_content(good: Doc) -> None:
    """Same content built at another time, as another version, by another run: same hash."""
    rebuilt = copy.deepcopy(good)
    rebuilt.update(created_at="2030-01-01T00:00:00+00:00", version=9, content_hash=None)
    rebuilt["provenance"]["run_id"] = "another-run"
    assert content_hash(rebuilt) == content_hash(good) == good["content_hash"]
    changed = copy.deepcopy(good)
    changed["anchor_sets"]["A_SELFIE"][0]["quality"]["overall"] = 0.1234
    assert content_hash(changed) != content_hash(good)

