"""The lifecycle diagram is written from the code: its builder steps and checks are the Dagster
assets and checks by name, its steps follow the real dependency order, and the committed .mmd
is what the generator writes now (`python -m persona_pipeline.diagram`, `make diagrams`)."""

from __future__ import annotations

from persona_pipeline.diagram import MMD, asset_graph, code_names, names_in, render


def test_the_diagrams_asset_and_check_names_are_the_codes() -> None:
    drawn_assets, drawn_checks = names_in(MMD.read_text())
    assets, checks = code_names()
    assert drawn_assets == assets
    assert drawn_checks == checks
    assert "identity_stability" in drawn_checks
    assert "embedding_stability" not in MMD.read_text()


def test_masks_come_after_the_embeddings_and_anchor_sets() -> None:
    _, edges, _ = asset_graph()
    assert ("anchor_sets", "masks") in edges
    assert ("face_embeddings", "anchor_sets") in edges
    assert not any(down == "face_embeddings" and up == "masks" for up, down in edges)
    assert "    anchor_sets --> masks" in MMD.read_text()


def test_the_committed_diagram_is_what_the_code_writes() -> None:
    assert MMD.read_text() == render(), "diagrams/persona_pack_lifecycle.mmd is stale: run `make diagrams`"
