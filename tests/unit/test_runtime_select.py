"""select_anchor: continuity while drift is fine, best match, canonical and other-mode fallbacks."""

from __future__ import annotations

import hashlib

import pytest

from persona_core.errors import InvalidInputError, NotFoundError
from persona_core.pack import (
    Anchor,
    AnchorMetadata,
    AnchorQuality,
    BoolTag,
    CameraMode,
    Expression,
    HeadPose,
    PersonaPack,
    RefreshPolicy,
)
from persona_core.runtime import AnchorChoice, DriftStats, PackCache, SelectReason, select_anchor
from persona_core.store.local import LocalBlobStore
from persona_core.testing import make_pack


def _ref(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def _anchor(anchor_id: str, expression: str, quality: float, canonical: bool = False) -> Anchor:
    q = dict.fromkeys(("overall", "sharpness", "exposure", "face_size", "frontalness"), quality)
    return Anchor(
        anchor_id=anchor_id,
        image_ref=_ref(anchor_id),
        face_crop_ref=_ref(anchor_id + "-crop"),
        embedding_ref=_ref("ident") + "#0",
        style_embedding_ref=_ref("style") + "#0",
        source_sha256=hashlib.sha256(anchor_id.encode()).hexdigest(),
        canonical=canonical,
        metadata=AnchorMetadata(
            expression_tag=Expression(expression),
            head_pose=HeadPose(yaw=0, pitch=0, roll=0),
            lighting_tag="normal",
            crop_box=[0, 0, 16, 16],
            best_for=[],
        ),
        quality=AnchorQuality(**q, identity_consistency=0.9),
    )


# A_SELFIE: two equally good happy anchors (id breaks the tie), a flagged canonical neutral,
# the best-quality sad. B_MIRROR: nothing flagged canonical. C_CUTAWAY: no anchors at all.
ANCHORS = {
    CameraMode.A_SELFIE: [
        _anchor("a2", "happy", 0.9),
        _anchor("a1", "happy", 0.9),
        _anchor("a3", "neutral", 0.7, canonical=True),
        _anchor("a4", "sad", 0.95),
        _anchor("a5", "happy", 0.5),
    ],
    CameraMode.B_MIRROR: [_anchor("b1", "neutral", 0.6), _anchor("b2", "angry", 0.8)],
}


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> PersonaPack:
    blobs = LocalBlobStore(tmp_path_factory.mktemp("blobs"), b"s", "http://127.0.0.1")
    base = make_pack(blobs, "sel", 1, n_anchors=3)
    return base.model_copy(update={"anchor_sets": ANCHORS}).sealed()


@pytest.mark.parametrize(
    ("mode", "emotion", "anchor_id", "reason"),
    [
        ("A_SELFIE", "happy", "a1", SelectReason.BEST_MATCH),  # quality tie -> lower id
        ("A_SELFIE", "sad", "a4", SelectReason.BEST_MATCH),
        ("A_SELFIE", "surprised", "a3", SelectReason.NEUTRAL_FALLBACK),  # no surprised: best neutral
        ("B_MIRROR", "surprised", "b1", SelectReason.NEUTRAL_FALLBACK),  # neutral over the better angry
        ("B_MIRROR", "neutral", "b1", SelectReason.BEST_MATCH),
        ("C_CUTAWAY", "happy", "a1", SelectReason.OTHER_MODE),  # first other mode in fixed order
        ("C_CUTAWAY", "angry", "a3", SelectReason.OTHER_MODE),  # ...its canonical when no match
        (CameraMode.A_SELFIE, Expression.HAPPY, "a1", SelectReason.BEST_MATCH),  # enums work too
    ],
)
def test_selection_without_continuity(pack, mode, emotion, anchor_id, reason):
    """Without a previous anchor: best emotion match in the mode, else its best neutral, else its
    canonical, else another mode."""
    choice = select_anchor(pack, mode, emotion)
    assert (choice.anchor_id, choice.reason) == (anchor_id, reason)
    assert choice.image_ref == _ref(anchor_id)
    assert choice.mode == {"a": CameraMode.A_SELFIE, "b": CameraMode.B_MIRROR}[anchor_id[0]]


FINE = DriftStats(identity_similarity=0.9, bg_similarity=0.9, flicker_score=0.1)


@pytest.mark.parametrize(
    ("mode", "emotion", "previous", "drift", "anchor_id", "reason", "detail"),
    [
        ("A_SELFIE", "happy", "a2", None, "a2", SelectReason.CONTINUITY, "kept"),
        ("A_SELFIE", "happy", "a5", FINE, "a5", SelectReason.CONTINUITY, "kept"),
        ("A_SELFIE", "happy", "a2", {"identity_similarity": 0.80}, "a1", SelectReason.BEST_MATCH, "identity"),
        ("A_SELFIE", "happy", "a2", {"bg_similarity": 0.5}, "a1", SelectReason.BEST_MATCH, "background"),
        ("A_SELFIE", "happy", "a2", {"flicker_score": 0.7}, "a1", SelectReason.BEST_MATCH, "flicker"),
        ("A_SELFIE", "sad", "a2", None, "a4", SelectReason.BEST_MATCH, "shows happy"),
        ("B_MIRROR", "neutral", "a2", None, "b1", SelectReason.BEST_MATCH, "is in A_SELFIE"),
        ("A_SELFIE", "surprised", "a2", None, "a2", SelectReason.CONTINUITY, "kept"),  # nothing better
        ("A_SELFIE", "happy", "zz-gone", None, "a1", SelectReason.BEST_MATCH, "not in this pack"),
        ("C_CUTAWAY", "happy", "a2", None, "a2", SelectReason.CONTINUITY, "kept"),  # fallback mode
    ],
)
def test_continuity_holds_only_while_drift_is_fine(
    pack, mode, emotion, previous, drift, anchor_id, reason, detail
):
    """The previous anchor is kept while drift is within the pack's thresholds and it still fits;
    otherwise the normal choice is made and the detail says why continuity broke."""
    choice = select_anchor(pack, mode, emotion, continuity=previous, drift_stats=drift)
    assert (choice.anchor_id, choice.reason) == (anchor_id, reason)
    assert detail in choice.detail


def test_drift_thresholds_come_from_the_packs_refresh_policy(pack):
    """A pack with a laxer identity warn line keeps continuity at a similarity the default would reject."""
    lax = pack.model_copy(update={"refresh_policy": RefreshPolicy(identity_drift_warn=0.75)}).sealed()
    drift = DriftStats(identity_similarity=0.80)
    assert select_anchor(pack, "A_SELFIE", "happy", "a2", drift).anchor_id == "a1"
    assert select_anchor(lax, "A_SELFIE", "happy", "a2", drift).anchor_id == "a2"


def test_choice_is_deterministic_and_same_for_cached_and_plain_packs(pack, tmp_path):
    """Repeated calls return the identical choice, and a cache-loaded pack chooses like the PersonaPack."""
    first = select_anchor(pack, "A_SELFIE", "happy", "a2", FINE)
    assert select_anchor(pack, "A_SELFIE", "happy", "a2", FINE) is first
    assert isinstance(first, AnchorChoice)

    blobs = LocalBlobStore(tmp_path / "blobs", b"s", "http://127.0.0.1")
    built = make_pack(blobs, "det", 1, n_anchors=30)

    class Source:
        def pack_document(self, persona_id, version):
            return built.canonical_bytes()

        def blob(self, ref):
            return blobs.get(ref)

    cached = PackCache(tmp_path / "cache", Source()).load("det", 1)
    for mode in CameraMode:
        for emotion in Expression:
            assert select_anchor(cached, mode, emotion) == select_anchor(built, mode, emotion)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"mode": "D_DRONE"}, InvalidInputError),
        ({"mode": None}, InvalidInputError),
        ({"mode": ["A_SELFIE"]}, InvalidInputError),
        ({"desired_emotion": "ecstatic"}, InvalidInputError),
        ({"continuity": 3}, InvalidInputError),
        ({"drift_stats": {"identity": 0.9}}, InvalidInputError),
        ({"drift_stats": {"identity_similarity": 1.5}}, InvalidInputError),
        ({"drift_stats": {"flicker_score": float("nan")}}, InvalidInputError),
        ({"drift_stats": 0.9}, InvalidInputError),
    ],
)
def test_bad_arguments_raise_typed_errors(pack, kwargs, error):
    """Unknown modes or emotions and malformed drift stats raise InvalidInputError."""
    args = {"mode": "A_SELFIE", "desired_emotion": "happy", **kwargs}
    with pytest.raises(error):
        select_anchor(pack, **args)


def test_pack_without_anchors_raises_not_found(pack):
    """A pack with no anchors in any mode raises NotFoundError, not an arbitrary exception."""
    empty = pack.model_copy(update={"anchor_sets": {}})
    with pytest.raises(NotFoundError):
        select_anchor(empty, "A_SELFIE")


def test_non_pack_argument_is_refused():
    """Anything but a CachedPack or PersonaPack raises InvalidInputError."""
    with pytest.raises(InvalidInputError):
        select_anchor({"anchor_sets": {}}, "A_SELFIE")


def _tagged(anchor_id: str, expression: str, quality: float, *, eyes_open: bool = True,
            mouth_closed: bool = True, canonical: bool = False) -> Anchor:
    a = _anchor(anchor_id, expression, quality, canonical)
    meta = a.metadata.model_copy(update={"eyes_open": BoolTag(value=eyes_open, confidence=0.9),
                                         "mouth_closed": BoolTag(value=mouth_closed, confidence=0.9)})
    return a.model_copy(update={"metadata": meta})


@pytest.fixture(scope="module")
def tagged_pack(tmp_path_factory) -> PersonaPack:
    blobs = LocalBlobStore(tmp_path_factory.mktemp("blobs"), b"s", "http://127.0.0.1")
    base = make_pack(blobs, "tags", 1, n_anchors=3)
    anchors = {
        # The smiling canonical is the best anchor; two neutral ones, the better with eyes shut.
        CameraMode.A_SELFIE: [
            _tagged("s-happy", "happy", 0.95, canonical=True),
            _tagged("s-neutral-shut", "neutral", 0.9, eyes_open=False),
            _tagged("s-neutral", "neutral", 0.7),
            _tagged("s-happy-talking", "happy", 0.99, mouth_closed=False),
        ],
        # No neutral anchor at all: the canonical is what is left.
        CameraMode.C_CUTAWAY: [_tagged("c-happy", "happy", 0.8, canonical=True),
                               _tagged("c-sad", "sad", 0.6)],
    }
    return base.model_copy(update={"anchor_sets": anchors}).sealed()


@pytest.mark.parametrize(
    ("mode", "emotion", "talking", "anchor_id", "reason"),
    [
        # Sad and angry get the mode's best neutral anchor, not the smiling canonical.
        ("A_SELFIE", "sad", True, "s-neutral", SelectReason.NEUTRAL_FALLBACK),
        ("A_SELFIE", "angry", True, "s-neutral", SelectReason.NEUTRAL_FALLBACK),
        # Listening turn: quality alone, so the better neutral anchor even with its eyes shut.
        ("A_SELFIE", "sad", False, "s-neutral-shut", SelectReason.NEUTRAL_FALLBACK),
        # Talking turn: the open-eyed, closed-mouth happy anchor beats a better one mid-word.
        ("A_SELFIE", "happy", True, "s-happy", SelectReason.BEST_MATCH),
        ("A_SELFIE", "happy", False, "s-happy-talking", SelectReason.BEST_MATCH),
        # A mode without neutral anchors falls back to its canonical.
        ("C_CUTAWAY", "angry", True, "c-happy", SelectReason.MODE_CANONICAL),
        ("C_CUTAWAY", "sad", True, "c-sad", SelectReason.BEST_MATCH),
    ],
)
def test_neutral_fallback_and_talking_turns_use_the_anchor_tags(tagged_pack, mode, emotion, talking,
                                                                 anchor_id, reason):
    """No anchor with the wanted emotion: the best neutral one, before a smiling canonical; a
    talking turn prefers eyes open and mouth closed, ties by quality."""
    choice = select_anchor(tagged_pack, mode, emotion, talking=talking)
    assert (choice.anchor_id, choice.reason) == (anchor_id, reason)
