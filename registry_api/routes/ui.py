"""A read-only pack viewer for people: server-rendered HTML, no JavaScript.

``GET /ui/personas/{persona_id}`` lists the versions; ``GET /ui/personas/{persona_id}/versions/{v}``
shows one version: for a published pack, the anchors of every camera mode with their images
(signed, expiring blob URLs), tags, quality and identity scores, the checks and the inputs
the build rejected with the reason; for any other status, the status, reasons and checks.
Same API-key auth as the JSON routes (scope ``read`` on the persona).
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse

from persona_core.pack import Anchor, AnchorMetadata, CheckResult, PersonaPack
from persona_core.store.base import VersionRecord, VersionStatus
from registry_api.deps import PrincipalDep, ServiceDep
from registry_api.routes.common import PROBLEMS
from registry_api.service import RegistryService

router = APIRouter(tags=["ui"], include_in_schema=True)

IMAGE_TTL_S = 3600
# Images may come from the registry itself (HMAC URLs) or a presigned S3 host.
# frame-ancestors: no other site may frame the viewer (clickjacking).
_CSP = (
    "default-src 'none'; img-src 'self' https: http:; style-src 'unsafe-inline'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
_HTML: dict[int | str, Any] = {200: {"content": {"text/html": {}}}}


def register(app: FastAPI) -> None:
    """Mount the viewer on the registry app (needs ``app.state.service``)."""
    app.include_router(router)


@router.get(
    "/ui/personas/{persona_id}",
    response_class=HTMLResponse,
    responses={**_HTML, **PROBLEMS(401, 403, 404)},
)
def persona_page(persona_id: str, who: PrincipalDep, service: ServiceDep) -> HTMLResponse:
    """The persona's versions, newest first, each linking to its page."""
    records = service.list_versions(who, persona_id)
    rows = "".join(
        f"<tr><td><a href='/ui/personas/{_e(persona_id)}/versions/{r.version}'>v{r.version}</a></td>"
        f"<td>{_status(r.status)}</td><td>{_e(r.created_at.isoformat(timespec='seconds'))}</td>"
        f"<td><code>{_e((r.content_hash or '')[:16])}</code></td><td>{_e('; '.join(r.reasons))}</td></tr>"
        for r in reversed(records)
    )
    body = (
        f"<h1>{_e(persona_id)}</h1><table><thead><tr><th>version</th><th>status</th><th>created</th>"
        f"<th>content hash</th><th>reasons</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return _page(f"{persona_id} versions", body)


@router.get(
    "/ui/personas/{persona_id}/versions/{version}",
    response_class=HTMLResponse,
    responses={**_HTML, **PROBLEMS(400, 401, 403, 404)},
)
def version_page(persona_id: str, version: str, who: PrincipalDep, service: ServiceDep) -> HTMLResponse:
    """One version: the pack's anchors, scores, checks and rejected inputs (or why it has no pack)."""
    record = service.get_version(who, persona_id, version)
    title = f"{persona_id} v{record.version}"
    if record.status != VersionStatus.PUBLISHED:
        return _page(title, _unpublished(record))
    cached = service.get_pack(who, persona_id, record.version)
    pack = PersonaPack.model_validate_json(cached.body)
    return _page(title, _published(service, record, pack))


def _unpublished(record: VersionRecord) -> str:
    reasons = "".join(f"<li>{_e(r)}</li>" for r in record.reasons) or "<li>none recorded</li>"
    checks = [CheckResult.model_validate(c) for c in record.checks if isinstance(c, dict)]
    return (
        f"<h1>{_e(record.persona_id)} v{record.version} {_status(record.status)}</h1>"
        f"<p>This version has no pack.</p><h2>Reasons</h2><ul class='reasons'>{reasons}</ul>"
        + (_checks(checks) if checks else "")
    )


def _published(service: RegistryService, record: VersionRecord, pack: PersonaPack) -> str:
    prov = pack.provenance
    models = ", ".join(f"{m.name} ({m.task}, {m.licence})" for m in prov.models)
    head = (
        f"<h1>{_e(pack.persona_id)} v{pack.version} {_status(record.status)}</h1>"
        f"<dl><dt>content hash</dt><dd><code id='content-hash'>{_e(pack.content_hash or '')}</code></dd>"
        f"<dt>created</dt><dd>{_e(pack.created_at)}</dd>"
        f"<dt>pipeline</dt><dd>{_e(prov.pipeline_version)} (run <code>{_e(prov.run_id)}</code>)</dd>"
        f"<dt>identity</dt><dd>{_e(pack.identity.embedding_model)}, {pack.identity.embedding_dim}-d</dd>"
        f"<dt>style</dt><dd>{_e(pack.style.embedding_model)}, {pack.style.embedding_dim}-d</dd>"
        f"<dt>voice</dt><dd>{_voice(pack)}</dd>"
        f"<dt>models</dt><dd>{_e(models)}</dd></dl>"
    )
    modes = "".join(_mode(service, mode.value, anchors) for mode, anchors in pack.anchor_sets.items())
    return head + modes + _checks(pack.checks) + _calibration(pack) + _inputs(pack) + _behavior(pack)


def _mode(service: RegistryService, mode: str, anchors: list[Anchor]) -> str:
    if not anchors:
        return f"<section class='mode' id='mode-{_e(mode)}'><h2>{_e(mode)}</h2><p>no anchors</p></section>"
    cards = "".join(_anchor(service, a) for a in anchors)
    return (
        f"<section class='mode' id='mode-{_e(mode)}'><h2>{_e(mode)} "
        f"<small>({len(anchors)} anchors)</small></h2><div class='grid'>{cards}</div></section>"
    )


def _anchor(service: RegistryService, a: Anchor) -> str:
    md, q = a.metadata, a.quality
    pose = md.head_pose
    scores = "".join(
        f"<tr><th>{name}</th><td>{value:.2f}</td></tr>"
        for name, value in (
            ("overall", q.overall),
            ("identity", q.identity_consistency),
            ("sharpness", q.sharpness),
            ("exposure", q.exposure),
            ("face size", q.face_size),
            ("frontalness", q.frontalness),
            ("eyes open", q.eyes_open),
            ("mouth closed", q.mouth_closed),
            ("expression neutrality", q.expression_neutrality),
        )
        if value is not None  # packs built before the face-mesh components lack them
    )
    badge = " <span class='badge'>canonical</span>" if a.canonical else ""
    name = _e(a.anchor_id)
    return (
        f"<figure class='anchor' data-anchor-id='{_e(a.anchor_id)}'>"
        f"<img class='anchor-image' src='{_e(_url(service, a.image_ref))}' alt='{name} image'>"
        f"<img class='anchor-crop' src='{_e(_url(service, a.face_crop_ref))}' alt='{name} face crop'>"
        f"<figcaption><b>{_e(a.anchor_id)}</b>{badge}<br>"
        f"<span class='tags'>{_e(md.expression_tag.value)} · {_e(md.lighting_tag.value)} · "
        f"yaw {pose.yaw:.0f} pitch {pose.pitch:.0f} roll {pose.roll:.0f}</span><br>"
        f"{_mesh_tags(md)}"
        f"best for: {_e(', '.join(md.best_for) or '-')}"
        f"<table class='scores'>{scores}</table></figcaption></figure>"
    )


def _mesh_tags(md: AnchorMetadata) -> str:
    """The face-mesh and camera-mode tags with their confidences ("" for older packs)."""
    parts = []
    if md.expression_confidence is not None:
        parts.append(f"{md.expression_tag.value} {md.expression_confidence:.2f}")
    if md.eyes_open is not None:
        parts.append(f"eyes {'open' if md.eyes_open.value else 'closed'} {md.eyes_open.confidence:.2f}")
    if md.mouth_closed is not None:
        mouth = "closed" if md.mouth_closed.value else "open"
        parts.append(f"mouth {mouth} {md.mouth_closed.confidence:.2f}")
    if md.camera_mode is not None:
        cm = md.camera_mode
        why = "tagged by the uploader" if cm.source == "uploader" else f"{cm.framing} framing"
        parts.append(f"mode {cm.value.value} {cm.confidence:.2f} ({why})")
    if not parts:
        return ""
    return f"<span class='mesh-tags'>{_e(' · '.join(parts))}</span><br>"


def _checks(checks: list[CheckResult]) -> str:
    if not checks:
        return "<h2>Checks</h2><p>none recorded</p>"
    rows = "".join(
        f"<tr class='{'pass' if c.passed else 'fail'}'><td>{_e(c.name)}</td><td>{_e(c.severity)}</td>"
        f"<td>{'pass' if c.passed else 'FAIL'}</td><td>{_e(c.description)}</td>"
        f"<td>{_e(', '.join(f'{k}={v}' for k, v in sorted(c.metadata.items())))}</td></tr>"
        for c in checks
    )
    return (
        "<h2>Checks</h2><table class='checks'><thead><tr><th>check</th><th>severity</th><th>result</th>"
        f"<th>description</th><th>observed / threshold</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _inputs(pack: PersonaPack) -> str:
    inputs = pack.provenance.inputs
    rejected = [i for i in inputs if not i.accepted]
    rows = "".join(
        f"<tr><td>{_e(i.name)}</td><td>{_e(i.kind)}</td><td>{_e(i.reason)}</td>"
        f"<td><code>{_e(i.sha256[:12])}</code></td></tr>"
        for i in rejected
    )
    table = (
        "<table class='rejected'><thead><tr><th>input</th><th>kind</th><th>reason</th><th>sha256</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
        if rejected
        else "<p>none</p>"
    )
    return f"<h2>Rejected inputs <small>({len(rejected)} of {len(inputs)})</small></h2>{table}"


def _calibration(pack: PersonaPack) -> str:
    rp = pack.refresh_policy
    cal = rp.identity_calibration
    lines = (
        f"<p>identity drift: warn below {rp.identity_drift_warn:.4f}, "
        f"fail below {rp.identity_drift_fail:.4f}; "
        f"background fail below {rp.bg_drift_fail:.2f}; flicker fail above {rp.flicker_fail:.2f}</p>"
    )
    if cal is None:
        return f"<h2>Drift thresholds</h2>{lines}<p>not calibrated (a pack built before calibration)</p>"
    loo = cal.leave_one_out
    rows = [
        ("source", cal.source + (f" - {cal.reason}" if cal.reason else "")),
        ("model", cal.model),
        ("leave-one-out", f"n {loo.n}, min {loo.min}, p5 {loo.p5}, median {loo.median}"),
        ("derived", f"warn {cal.derived_warn}, fail {cal.derived_fail}"),
        ("method", cal.method),
    ]
    if cal.impostor is not None:
        imp = cal.impostor
        rows.append(("impostor p99.9", f"{imp.p99_9} over {imp.pairs} pairs: {imp.set_name} ({imp.source})"))
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    title = "<h2>Drift thresholds <small>(identity calibration)</small></h2>"
    return f"{title}{lines}<dl class='calibration'>{body}</dl>"


def _behavior(pack: PersonaPack) -> str:
    bp = pack.behavior_policy
    ranges = "".join(
        f"<tr><td>{_e(getattr(emotion, 'value', emotion))}</td><td>{r.min:.2f}</td><td>{r.max:.2f}</td></tr>"
        for emotion, r in bp.emotion_ranges.items()
    )
    defaults = " (defaults applied)" if bp.defaults_applied else ""
    return (
        f"<h2>Behaviour{defaults}</h2><p>gestures: {_e(', '.join(bp.allowed_gestures))}</p>"
        f"<table><thead><tr><th>emotion</th><th>min</th><th>max</th></tr></thead><tbody>{ranges}</tbody></table>"
    )


def _voice(pack: PersonaPack) -> str:
    v = pack.voice_profile
    if v is None:
        return "none"
    defaults = " (defaults applied)" if v.defaults_applied else ""
    return _e(f"{v.embedding_model or v.provider_voice_id or 'configured'}{defaults}")


def _url(service: RegistryService, ref: str) -> str:
    url = service.blobs.signed_url(ref, IMAGE_TTL_S)
    # HMAC URLs point at this registry: keep them relative so the page works whatever host
    # name the browser used to reach it.
    base = service.settings.public_base_url.rstrip("/")
    return url[len(base) :] if url.startswith(base + "/v1/blobs/") else url


def _status(status: VersionStatus) -> str:
    return f"<span class='status status-{_e(status.value)}'>{_e(status.value)}</span>"


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1 small,h2 small{color:#777;font-weight:normal}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}dt{color:#666}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.anchor{border:1px solid #ddd;border-radius:6px;padding:8px;margin:0;width:220px}
.anchor img{width:104px;height:104px;object-fit:cover;image-rendering:pixelated;background:#eee}
.badge{background:#2a6;color:#fff;border-radius:3px;padding:0 4px;font-size:11px}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
.scores td,.scores th{border:none;padding:0 6px 0 0;font-size:12px}
tr.fail td{background:#fee}.rejected td{background:#fff4f4}
.status{border-radius:3px;padding:1px 6px;font-size:13px;vertical-align:middle;background:#eee}
.status-published{background:#dfd}.status-blocked,.status-failed{background:#fdd}
"""


def _page(title: str, body: str) -> HTMLResponse:
    html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)} - persona-core</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": _CSP,
            "Cache-Control": "private, no-store",  # signed image URLs expire; never cache the page
            "X-Content-Type-Options": "nosniff",
        },
    )
