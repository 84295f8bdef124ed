"""The builder's checks as plain values: the assets turn them into Dagster check results
and the pack records them. Every outcome carries the observed values next to thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from persona_core.pack import CheckResult
from persona_pipeline.steps.anchors import AnchorSelection
from persona_pipeline.steps.inputs import VersionInputs

ENOUGH_ANCHORS = "enough_anchors"
IDENTITY_STABILITY = "identity_stability"
CONFIG_DEFAULTS = "config_defaults"


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    severity: Literal["ERROR", "WARN"]
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_pack(self) -> CheckResult:
        return CheckResult(name=self.name, passed=self.passed, severity=self.severity,
                           description=self.description, metadata=self.metadata)


def enough_anchors(sel: AnchorSelection) -> CheckOutcome:
    """ERROR (blocks publish): every required mode has its minimum of usable anchors."""
    desc = ("every required camera mode has enough usable anchors" if sel.gate_passed
            else "; ".join(sel.gate_reasons))
    return CheckOutcome(ENOUGH_ANCHORS, sel.gate_passed, "ERROR", desc,
                        {"per_mode": sel.gate_counts, "reasons": list(sel.gate_reasons)})


def identity_stability(sel: AnchorSelection) -> CheckOutcome:
    """WARN: candidates whose identity similarity to the others falls below the threshold."""
    st = sel.stability
    if st.blocked_reason:
        desc = st.blocked_reason
    elif st.outliers:
        named = ", ".join(f"{n} ({s:.4f})" for n, s in sorted(st.outliers.items()))
        desc = f"identity outliers left out of the anchors: {named}; threshold {st.threshold:.4f}"
        if st.people > 1:
            desc = f"{st.note}; {desc}"
    else:
        desc = st.note or f"all {len(st.scores)} candidates agree (threshold {st.threshold:.4f})"
    return CheckOutcome(IDENTITY_STABILITY, not st.outliers and not st.blocked_reason, "WARN", desc, {
        "people": st.people,
        "groups": st.groups,
        "outliers": dict(sorted(st.outliers.items())),
        "threshold": st.threshold,
        "median_similarity": st.median,
        "spread": st.spread,
        "scores": dict(sorted(st.scores.items())),
    })


def config_defaults(inputs: VersionInputs, has_voice_embedding: bool) -> CheckOutcome:
    """WARN: the upload lacked voice clips/config or a behaviour policy, so defaults were used."""
    missing = []
    if inputs.behavior_policy is None:
        missing.append("behavior_policy: no behaviour config uploaded; conservative defaults written")
    if not has_voice_embedding:
        missing.append("voice: no usable voice clip; no speaker embedding, default prosody bounds")
    if inputs.voice_config is None:
        missing.append("voice config: no provider voice id or prosody bounds; defaults written")
    desc = "; ".join(missing) if missing else "voice and behaviour config came with the upload"
    return CheckOutcome(CONFIG_DEFAULTS, not missing, "WARN", desc, {"defaults_applied": missing})
