"""The in-process runtime for renderers: a verified pack cache and the per-turn hooks.

Imports nothing heavy (no dagster, torch or fastapi): a renderer can embed it with only
numpy and pydantic.
"""

from persona_core.runtime.cache import (
    AliasPackSource,
    CacheWriteWarning,
    ErasureNotice,
    PackCache,
    PackSource,
    StorePackSource,
    embedding_blob_refs,
)
from persona_core.runtime.cached_pack import CachedPack
from persona_core.runtime.clamp import (
    ActorEvent,
    ActorEventDict,
    BehaviorPolicySource,
    ClampAdjustment,
    ClampResult,
    ClampTables,
    behavior_policy_clamp,
)
from persona_core.runtime.drift import DriftStats, DriftStatsLike
from persona_core.runtime.drift_meter import DriftMeter, Frame, FrameDrift, FrameDriftDoc, IdentityVerdict
from persona_core.runtime.erasure_feed import ErasureEntry, ErasureFeedSource, ErasurePage, follow_erasures
from persona_core.runtime.refresh import (
    DriftTrend,
    PolicySource,
    RefreshDecision,
    RefreshReason,
    anchor_refresh_policy,
)
from persona_core.runtime.select import AnchorChoice, PackLike, SelectReason, select_anchor
from persona_core.vision.errors import BadFrameError, IdentityModelMismatchError, VisionUnavailableError

__all__ = [
    "ActorEvent",
    "ActorEventDict",
    "AliasPackSource",
    "AnchorChoice",
    "BadFrameError",
    "BehaviorPolicySource",
    "CacheWriteWarning",
    "CachedPack",
    "ClampAdjustment",
    "ClampResult",
    "ClampTables",
    "DriftMeter",
    "DriftStats",
    "DriftStatsLike",
    "DriftTrend",
    "ErasureEntry",
    "ErasureFeedSource",
    "ErasureNotice",
    "ErasurePage",
    "Frame",
    "FrameDrift",
    "FrameDriftDoc",
    "IdentityModelMismatchError",
    "IdentityVerdict",
    "PackCache",
    "PackLike",
    "PackSource",
    "PolicySource",
    "RefreshDecision",
    "RefreshReason",
    "SelectReason",
    "StorePackSource",
    "VisionUnavailableError",
    "anchor_refresh_policy",
    "behavior_policy_clamp",
    "embedding_blob_refs",
    "follow_erasures",
    "select_anchor",
]
