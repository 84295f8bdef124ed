"""The in-process runtime for renderers: a verified pack cache and the per-turn hooks.

Imports nothing heavy (no dagster, torch or fastapi): a renderer can embed it with only
numpy and pydantic.
"""

from persona_core.runtime.cache import CachedPack, PackCache, PackSource, StorePackSource, embedding_blob_refs
from persona_core.runtime.clamp import (
    ActorEvent,
    ClampAdjustment,
    ClampResult,
    ClampTables,
    behavior_policy_clamp,
)
from persona_core.runtime.drift import DriftStats
from persona_core.runtime.drift_meter import DriftMeter, FrameDrift
from persona_core.runtime.refresh import RefreshDecision, RefreshReason, anchor_refresh_policy
from persona_core.runtime.select import AnchorChoice, SelectReason, select_anchor
from persona_core.vision.errors import BadFrameError, IdentityModelMismatchError, VisionUnavailableError

__all__ = [
    "ActorEvent",
    "AnchorChoice",
    "BadFrameError",
    "CachedPack",
    "ClampAdjustment",
    "ClampResult",
    "ClampTables",
    "DriftMeter",
    "DriftStats",
    "FrameDrift",
    "IdentityModelMismatchError",
    "PackCache",
    "PackSource",
    "RefreshDecision",
    "RefreshReason",
    "SelectReason",
    "StorePackSource",
    "VisionUnavailableError",
    "anchor_refresh_policy",
    "behavior_policy_clamp",
    "embedding_blob_refs",
    "select_anchor",
]
