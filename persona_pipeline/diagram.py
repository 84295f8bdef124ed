"""``diagrams/persona_pack_lifecycle.mmd`` written from the code, so the picture cannot drift:
the version states from ``VersionStatus`` and the moves a person acts on, each checked against
the state machine's table (``persona_core.store.version_states.ALLOWED``); the builder's
assets, their dependencies (without the ones another path implies) and their checks from the
Dagster definitions (``build_assets``); the runtime's hooks by the names ``persona_core.runtime``
exports.

``python -m persona_pipeline.diagram`` rewrites the file (``make diagrams`` also renders it to
PNG and SVG); ``--check`` exits non-zero when it is stale (tests do the same).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from persona_core import runtime
from persona_core.snapshots import write_or_check
from persona_core.store.base import VersionStatus
from persona_core.store.version_states import ALLOWED
from persona_pipeline.defs.assets import build_assets
from persona_pipeline.defs.sensors import upload_manifest_sensor

MMD = Path(__file__).resolve().parent.parent / "diagrams" / "persona_pack_lifecycle.mmd"
S = VersionStatus

# The moves drawn, with what makes them; the others ALLOWED holds (a blocked version failed by
# a later run, a claim handed over within one process) would only crowd the picture.
_MOVE_LABELS = {
    (S.PENDING, S.BUILDING): "a run claims its lease",
    (S.BUILDING, S.BLOCKED): "blocking ERROR check failed",
    (S.BUILDING, S.FAILED): "a step or the run failed,<br/>or its process died",
    (S.BUILDING, S.PUBLISHED): "publish: blobs, pack JSON,<br/>then one DB transaction",
    (S.PENDING, S.FAILED): "no build service picked it up",
    (S.PENDING, S.PUBLISHED): "import of a .personapack",
    (S.BLOCKED, S.BUILDING): "re-run",
    (S.FAILED, S.BUILDING): "re-run",
    (S.PUBLISHED, S.ERASING): "erase",
    (S.ERASING, S.ERASED): "what it held is deleted",
}
_STATE_NOTES = {
    S.BLOCKED: "reasons recorded",
    S.PUBLISHED: "immutable, ETag = content hash",
    S.ERASING: "reads answer 410",
    S.ERASED: "tombstone",
}
_RUNTIME = ("PackCache", "select_anchor", "DriftMeter", "anchor_refresh_policy", "behavior_policy_clamp")


def _wrap(text: str, width: int = 30) -> str:
    return "<br/>".join(textwrap.wrap(text, width, break_on_hyphens=False))


def _summary(description: str, most: int = 70) -> str:
    """A description's first phrase (up to its first '(', ';' or '.'), cut at a comma when long."""
    cut = min((i for i in (description.find(c) for c in "(;.") if i > 0), default=len(description))
    phrase = description[:cut].strip()
    if len(phrase) > most and ", " in phrase[:most]:
        phrase = phrase[: phrase[:most].rindex(", ")]
    return phrase


def asset_graph() -> tuple[dict[str, str], list[tuple[str, str]], list[tuple[str, str, bool, str]]]:
    """The build assets (name -> description), their dependency edges without the ones another
    path already implies (the transitive reduction), and their checks (asset, name, blocking,
    description)."""
    assets: dict[str, str] = {}
    deps: dict[str, set[str]] = {}
    checks = []
    for a in build_assets:
        for key in a.keys:
            name = key.to_user_string()
            assets[name] = a.descriptions_by_key.get(key) or ""
            deps[name] = {d.to_user_string() for d in a.asset_deps[key]}
        for spec in a.check_specs:
            checks.append((spec.asset_key.to_user_string(), spec.name, spec.blocking, spec.description or ""))

    def reaches(start: str, goal: str) -> bool:
        todo, seen = list(deps[start]), set()
        while todo:
            cur = todo.pop()
            if cur == goal:
                return True
            if cur not in seen:
                seen.add(cur)
                todo.extend(deps[cur])
        return False

    edges = [(up, name) for name in assets for up in sorted(deps[name])
             if not any(reaches(other, up) for other in deps[name] - {up})]
    return assets, edges, checks


def render() -> str:
    assets, edges, checks = asset_graph()
    missing = [n for n in _RUNTIME if n not in runtime.__all__]
    if missing:
        raise ValueError(f"persona_core.runtime no longer exports {missing}: update the diagram")
    first = next(n for n in assets if not any(v == n for _, v in edges))
    lines = [
        "%% PersonaPack lifecycle: upload -> version states -> builder steps -> runtime loop.",
        "%% Written by `python -m persona_pipeline.diagram` from the code (version_states.ALLOWED, the",
        "%% Dagster build assets and their checks); do not edit by hand. `make diagrams` renders it.",
        "flowchart TB",
        '  subgraph upload["1 Upload (HTTP, gRPC, persona-core build)"]',
        "    direction LR",
        '    create["CreatePersonaVersion<br/>photos, clips, voice, mode tags, behaviour config"]',
        '    manifest[("blob store<br/>inputs + manifest object")]',
        f'    sensor["{upload_manifest_sensor.name}<br/>adds partition = version<br/>'
        'requests a run, run_key = version"]',
        "    create --> manifest --> sensor",
        "  end",
        "",
        '  subgraph states["2 Version status (persona_core/store/version_states.py)"]',
        "    direction LR",
    ]
    for s in S:
        note = _STATE_NOTES.get(s)
        lines.append(f"    {s.value}([{s.value}" + (f"<br/>{note}" if note else "") + "])")
    for (src, dst), label in _MOVE_LABELS.items():
        if dst not in ALLOWED[src]:
            raise ValueError(f"the state machine no longer allows {src.value} -> {dst.value}: "
                             "update the diagram")
        arrow = "-.->" if dst == S.BUILDING and src in (S.BLOCKED, S.FAILED) else "-->"
        lines.append(f'    {src.value} {arrow}|"{label}"| {dst.value}')
    unfinished = [s.value for s, targets in ALLOWED.items()
                  if S.ERASING in targets and s not in (S.PUBLISHED, S.ERASING)]
    lines += [
        f'    unfinished["{", ".join(unfinished)}"] -.->|"erase"| erasing',
        "  end",
        "",
        f'  subgraph builder["3 Builder: Dagster assets partitioned by version ({len(assets)} steps)"]',
        "    direction LR",
    ]
    for name, description in assets.items():
        lines.append(f'    {name}["{name}<br/>{_wrap(_summary(description))}"]')
    lines += [f"    {up} --> {down}" for up, down in edges]
    for asset, name, blocking, description in checks:
        kind = "ERROR" if blocking else "WARN"
        lines.append(f"    {name}{{{{{name}}}}}")
        lines.append(f'    {asset} -. "{kind}: {_wrap(_summary(description).lower(), 40)}" .-> {name}')
    lines += [
        "  end",
        "",
        '  subgraph runtime["4 Runtime loop (renderer process, persona_core.runtime)"]',
        "    direction LR",
        '    fetch["PackCache<br/>fetch once, verify hash,<br/>disk + memory"] --> select["select_anchor<br/>'
        'mode, emotion, continuity, drift"]',
        '    select --> render["render turn"]',
        '    render --> drift["DriftMeter<br/>identity, background, flicker"]',
        '    drift --> refresh{"anchor_refresh_policy<br/>turn index, drift trend"}',
        '    refresh -->|"keep anchor"| render',
        '    refresh -->|"refresh: every N turns or drift"| select',
        '    clamp["behavior_policy_clamp<br/>emotion timeline within pack ranges"] --> render',
        "  end",
        "",
        "  sensor --> pending",
        f'  pending -. "run starts" .-> {first}',
    ]
    lines += [f'  {name} -. "fails" .-> blocked' for _, name, blocking, _ in checks if blocking]
    last = next(n for n in reversed(assets) if not any(u == n for u, _ in edges))
    lines += [
        f"  {last} --> published",
        '  published -->|"GetPersonaPack / ResolveAsset<br/>HTTP + gRPC"| fetch',
    ]
    return "\n".join(lines) + "\n"


def names_in(mmd: str) -> tuple[set[str], set[str]]:
    """The asset and check names a lifecycle .mmd draws in its builder subgraph."""
    body = mmd[mmd.index('subgraph builder['):]
    body = body[: body.index("\n  end")]
    assets, checks = set(), set()
    for line in body.splitlines()[2:]:
        node = line.strip().split("[", 1)[0].split("{", 1)[0]
        if line.strip().startswith(node + '["'):
            assets.add(node)
        elif line.strip().startswith(node + "{{"):
            checks.add(node)
    return assets, checks


def code_names() -> tuple[set[str], set[str]]:
    """The build assets' and their checks' names, as Dagster has them."""
    assets, _, checks = asset_graph()
    return set(assets), {name for _, name, _, _ in checks}


def main() -> None:
    write_or_check(MMD, render(), "diagrams")


if __name__ == "__main__":
    main()


__all__ = ["MMD", "asset_graph", "code_names", "names_in", "render"]
