"""Export OpenCLIP's image tower to the ONNX file the ``openclip-vit-b-32`` style entry names.

persona-core runs the style model on onnxruntime only; torch and open_clip are needed here,
once, in a venv of their own (``pip install open_clip_torch torch onnx onnxruntime``):

    python scripts/export_openclip_onnx.py --model-dir /models

writes ``/models/openclip/vit-b-32-laion2b_s34b_b79k.visual.onnx`` (opset 17, batch axis
dynamic), checks onnxruntime's output against torch's on a random batch and prints the file's
sha256. Then build with ``PERSONA_MODEL_DIR=/models PERSONA_STYLE_MODEL=openclip-vit-b-32`` (or
``persona-core build --model-dir /models --style-model openclip-vit-b-32``); the pack records the
sha256. Another architecture or weights: ``--arch`` / ``--pretrained`` and a registry entry of
your own (``persona_core.vision.registry.register``) naming the file this writes.
"""

# torch, open_clip, onnx and onnxruntime exist only in the export venv: imported where used.
# ruff: noqa: PLC0415
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

SIZE = 224  # the entry's preprocessing: shorter side to 224, centre crop


def export(arch: str, pretrained: str, target: Path) -> None:
    import open_clip
    import torch

    model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=pretrained)
    visual = model.visual.eval()
    dummy = torch.randn(2, 3, SIZE, SIZE)
    target.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            visual,
            (dummy,),
            str(target),
            input_names=["image"],
            output_names=["embedding"],
            dynamic_axes={"image": {0: "n"}, "embedding": {0: "n"}},
            opset_version=17,
        )
        expected = visual(dummy).numpy()
    check(target, dummy.numpy(), expected)


def check(target: Path, batch: object, expected: object) -> None:
    import numpy as np
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(target))
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: batch})[0]
    want = np.asarray(expected)
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    print(f"onnxruntime vs torch: cosine min {cos.min():.6f}, output {got.shape}")
    if cos.min() < 0.9999:
        raise SystemExit(f"export differs from torch (cosine {cos.min():.6f})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="PERSONA_MODEL_DIR to write into")
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--pretrained", default="laion2b_s34b_b79k")
    args = parser.parse_args()
    name = f"{args.arch.lower()}-{args.pretrained}.visual.onnx"
    target = args.model_dir / "openclip" / name
    export(args.arch, args.pretrained, target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    print(f"wrote {target}\nsha256 {digest}")


if __name__ == "__main__":
    main()
