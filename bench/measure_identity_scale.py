"""Measure an identity model's impostor scale on public labelled face sets.

Every face is detected (YuNet), aligned (ArcFace 5 points) and embedded with the identity model;
then every pair of photos of *different* people is an impostor pair, and the script prints the
impostor cosine similarity distribution (p99, p99.9, max) and, for reference, the genuine
leave-one-out similarity of each photo to the centroid of its person's other photos. The p99.9
figure is what the model's registry entry records (``IdentityScale``) and what pack calibration
uses to place the identity-drift fail line.

Sets are given as ``NAME=DIR``; a photo's person label comes from the file name, per layout:
  yale  ``subject01.happy`` (.gif)    -> ``subject01``  (Yale Face Database, 15 people x 11)
  orl   ``s12_3.pgm``                  -> ``s12``        (AT&T/ORL, 40 people x 10)
  dirs  ``<person>/<photo>``           -> ``<person>``
  csv   ``labels.csv`` with ``file`` and ``person`` columns
The sets' terms allow research use but not redistribution, so the photos are not kept in this
project: copy them from a public mirror (the registry entry names the one used) and run
  .venv/bin/python bench/measure_identity_scale.py yale=/tmp/yale orl=/tmp/orl --json out.json

For another identity model (weights in ``PERSONA_MODEL_DIR``), name it, with the opt-in when
its licence forbids commercial use:
  PERSONA_MODEL_DIR=/models .venv/bin/python bench/measure_identity_scale.py yale=/tmp/yale \
      orl=/tmp/orl --model buffalo_l:identity --allow-noncommercial
The printed ``identity_scale`` holds the ``IdentityScale`` fields the model's registry entry
takes (fill in ``set_name`` and ``source``); until its entry has one, the model's packs say
``impostor_scale_measured: false`` and take their drift lines from their own anchors.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from persona_core.vision.align import align_face
from persona_core.vision.registry import load_detector, load_identity

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".pgm", ".bmp"}


def read_bgr(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return cv2.cvtColor(np.asarray(im.convert("RGB")), cv2.COLOR_RGB2BGR)


def labelled_photos(layout: str, root: Path) -> list[tuple[str, Path]]:
    if layout == "csv":
        with (root / "labels.csv").open(newline="") as fh:
            return [(row["person"], root / row["file"]) for row in csv.DictReader(fh) if row.get("person")]
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES and layout != "yale":
            continue
        if not path.is_file():
            continue
        if layout == "yale":
            if ".dupe" in path.name:  # duplicates of another photo of the same subject
                continue
            label = path.name.split(".")[0]
        elif layout == "orl":
            label = path.stem.split("_")[0]
        elif layout == "dirs":
            label = path.parent.name
        else:
            raise SystemExit(f"unknown layout {layout!r}; expected yale, orl, dirs or csv")
        found.append((label, path))
    return found


def prepare(image: np.ndarray) -> np.ndarray:
    """Small, tightly cropped set photos (ORL is 92x112) get a border and 3x upscale: the
    detector is trained on faces inside a scene, not filling the frame."""
    h, w = image.shape[:2]
    if max(h, w) >= 256:
        return image
    pad = cv2.copyMakeBorder(image, h // 2, h // 2, w // 2, w // 2, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return cv2.resize(pad, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)


def embed_set(photos: list[tuple[str, Path]], detector, embedder) -> tuple[list[str], np.ndarray, int]:
    labels, crops, missed = [], [], 0
    for label, path in photos:
        image = prepare(read_bgr(path))
        faces = detector.detect(image)
        if not faces:
            missed += 1
            continue
        labels.append(label)
        crops.append(align_face(image, faces[0].landmarks, embedder.crop_size))
    vectors = np.concatenate([embedder.embed(crops[i : i + 32]) for i in range(0, len(crops), 32)])
    return labels, vectors, missed


def loo_genuine(labels: list[str], vectors: np.ndarray) -> list[float]:
    by_person: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_person[label].append(i)
    sims = []
    for idx in by_person.values():
        if len(idx) < 3:
            continue
        for i in idx:
            others = vectors[[j for j in idx if j != i]].mean(axis=0)
            others /= max(float(np.linalg.norm(others)), 1e-12)
            sims.append(float(vectors[i] @ others))
    return sims


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", metavar="LAYOUT=DIR")
    parser.add_argument("--model", default=None, help="identity model name (default: the registry's)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--allow-noncommercial", action="store_true",
                        help="allow a model whose licence forbids commercial use (InsightFace packs)")
    args = parser.parse_args(argv)
    detector = load_detector()
    embedder = load_identity(args.model or "", opt_in_noncommercial=args.allow_noncommercial)
    all_labels: list[str] = []
    all_vectors = []
    report: dict[str, object] = {"model": embedder.entry.name, "weights_sha256": embedder.weights_sha256[0]}
    sets = {}
    for spec in args.sets:
        layout, _, root = spec.partition("=")
        labels, vectors, missed = embed_set(labelled_photos(layout, Path(root)), detector, embedder)
        sets[layout] = {"photos": len(labels), "people": len(set(labels)), "no_face": missed}
        all_labels += [f"{layout}:{label}" for label in labels]
        all_vectors.append(vectors)
    vectors = np.concatenate(all_vectors)
    names = np.array(all_labels)
    sims = vectors @ vectors.T
    upper = np.triu_indices(len(names), k=1)
    different = names[upper[0]] != names[upper[1]]
    impostor = sims[upper][different]
    genuine_pairs = sims[upper][~different]
    loo = np.array(loo_genuine(all_labels, vectors))
    report |= {
        "sets": sets,
        "impostor_pairs": int(impostor.size),
        "impostor_p99": round(float(np.quantile(impostor, 0.99)), 4),
        "impostor_p99_9": round(float(np.quantile(impostor, 0.999)), 4),
        "impostor_max": round(float(impostor.max()), 4),
        "genuine_pairs": int(genuine_pairs.size),
        "genuine_pair_p1": round(float(np.quantile(genuine_pairs, 0.01)), 4),
        "genuine_loo_trials": int(loo.size),
        "genuine_loo_min": round(float(loo.min()), 4),
        "genuine_loo_p1": round(float(np.quantile(loo, 0.01)), 4),
        "genuine_loo_median": round(float(np.median(loo)), 4),
    }
    # As the registry entry's IdentityScale takes them: fail = impostor p99.9 + 0.05 (rounded to
    # 0.01), warn = genuine leave-one-out p1 - 0.05, never within 0.05 of fail.
    default_fail = round(float(np.quantile(impostor, 0.999)) + 0.05, 2)
    default_warn = round(max(float(np.quantile(loo, 0.01)) - 0.05, default_fail + 0.05), 2)
    report["identity_scale"] = {
        "impostor_p99_9": report["impostor_p99_9"], "impostor_pairs": report["impostor_pairs"],
        "genuine_loo_p1": report["genuine_loo_p1"], "default_warn": default_warn,
        "default_fail": default_fail, "set_name": "...", "source": "...",
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
