"""Export SpeechBrain's ECAPA-TDNN speaker embedder to the ONNX file the
``speechbrain-ecapa-voxceleb`` voice entry names.

persona-core runs the voice model on onnxruntime only; torch and SpeechBrain are needed here,
once, in a venv of their own (``pip install speechbrain torch torchaudio onnx onnxruntime``):

    python scripts/export_ecapa_onnx.py --model-dir /models

loads ``speechbrain/spkrec-ecapa-voxceleb``, exports its embedding network alone on features
(input ``(N, frames, 80)`` log-mel filterbanks, output ``(N, 192)``; opset 17, batch and frame
axes dynamic) to ``/models/speechbrain/ecapa-voxceleb.onnx``: the backend computes those
features itself in numpy with the entry's constants (16 kHz, 80 mels, 25 ms window, 10 ms hop,
per-utterance mean removed), so torch's STFT never has to be exported. It checks onnxruntime
against SpeechBrain's own ``encode_batch`` on a few seconds of noise and prints the sha256. Then
build with ``PERSONA_MODEL_DIR=/models PERSONA_VOICE_MODEL=speechbrain-ecapa-voxceleb`` (or
``persona-core build --model-dir /models --voice-model speechbrain-ecapa-voxceleb``).
"""

# torch, speechbrain, onnx and onnxruntime exist only in the export venv: imported where used.
# ruff: noqa: PLC0415
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

SOURCE = "speechbrain/spkrec-ecapa-voxceleb"
SAMPLE_RATE = 16000


def load_classifier(savedir: Path) -> Any:
    try:
        from speechbrain.inference.speaker import EncoderClassifier
    except ImportError:  # SpeechBrain before 1.0
        from speechbrain.pretrained import EncoderClassifier
    return EncoderClassifier.from_hparams(source=SOURCE, savedir=str(savedir), run_opts={"device": "cpu"})


def export(classifier: Any, target: Path) -> None:
    import torch

    class Embedding(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, feats: torch.Tensor) -> torch.Tensor:
            return self.net(feats).reshape(feats.shape[0], -1)

    model = Embedding(classifier.mods.embedding_model).eval()
    dummy = torch.randn(2, 300, 80)
    target.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (dummy,),
            str(target),
            input_names=["feats"],
            output_names=["embedding"],
            dynamic_axes={"feats": {0: "n", 1: "frames"}, "embedding": {0: "n"}},
            opset_version=17,
        )


def check(classifier: Any, target: Path) -> None:
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    onnx.checker.check_model(str(target))
    noise = np.random.default_rng(0).normal(scale=0.1, size=(1, 3 * SAMPLE_RATE))
    wav = torch.from_numpy(noise.astype("float32"))
    with torch.no_grad():
        lens = torch.ones(1)
        feats = classifier.mods.mean_var_norm(classifier.mods.compute_features(wav), lens)
        want = classifier.encode_batch(wav).reshape(1, -1).numpy()
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: feats.numpy()})[0]
    cos = float((got * want).sum() / (np.linalg.norm(got) * np.linalg.norm(want)))
    print(f"onnxruntime vs SpeechBrain encode_batch: cosine {cos:.6f}, output {got.shape}")
    if cos < 0.9999:
        raise SystemExit(f"export differs from SpeechBrain (cosine {cos:.6f})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="PERSONA_MODEL_DIR to write into")
    args = parser.parse_args()
    target = args.model_dir / "speechbrain" / "ecapa-voxceleb.onnx"
    classifier = load_classifier(args.model_dir / ".cache" / "spkrec-ecapa-voxceleb")
    export(classifier, target)
    check(classifier, target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    print(f"wrote {target}\nsha256 {digest}")


if __name__ == "__main__":
    main()
