"""EfficientNet-Lite0 ImageNet features (1280-d) as the style embedder.

The PyTorch weights are exported once to ONNX (cached, keyed by the weights' sha256) and run on
onnxruntime, which is several times faster than eager torch on two cores; torch stays as the
fallback when the export cannot be made."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from persona_core.vision.base import ModelEntry
from persona_core.vision.graph_cache import cached_session
from persona_core.vision.imageutil import center_crop_square, check_bgr
from persona_core.vision.sface import l2_normalise
from persona_pipeline.models.base import StyleEmbedder

log = logging.getLogger(__name__)


def _torch_features_model(weights: Path) -> Any:
    # torch is imported only here: loading the cached ONNX export never needs it.
    import torch  # noqa: PLC0415
    from efficientnet_lite_pytorch import EfficientNet  # noqa: PLC0415

    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(str(weights), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    net.eval()

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            return self.net.extract_features(x).mean(dim=(2, 3))

    return Features().eval()


def export_onnx(weights: Path, target: Path, size: int) -> Path:
    """Write the feature extractor at ``weights`` as ONNX to ``target`` (atomic rename)."""
    import torch  # noqa: PLC0415

    model = _torch_features_model(weights)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".onnx.part")
    os.close(fd)
    try:
        # The TorchScript exporter is the one that needs no onnxscript; its deprecation and
        # constant-folding notices say nothing about this fixed-shape CNN.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (torch.zeros(1, 3, size, size),),
                tmp,
                input_names=["image"],
                output_names=["features"],
                dynamic_axes={"image": {0: "N"}, "features": {0: "N"}},
                opset_version=17,
                dynamo=False,
            )
        Path(tmp).replace(target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


class EfficientNetLiteStyle(StyleEmbedder):
    def __init__(self, entry: ModelEntry, weights: Path, providers: tuple[str, ...], cache_dir: Path) -> None:
        self.entry = entry
        pre = entry.preprocessing
        self.dim = int(pre["dim"])
        self.size = int(pre["size"])
        scale = float(pre["scale"])
        # Folded into one multiply-add per pixel: (x * scale - mean) / std.
        self._mul = (scale / np.asarray(pre["std"], np.float32)).reshape(1, 1, 3).astype(np.float32)
        self._add = (-np.asarray(pre["mean"], np.float32) / np.asarray(pre["std"], np.float32)).reshape(
            1, 1, 3
        )
        self._session: Any = None
        self._torch: Any = None
        onnx_path = cache_dir / f"efficientnet-lite0-features-{entry.files[0].sha256[:16]}.onnx"

        def exported() -> Path:
            if not onnx_path.is_file():
                export_onnx(weights, onnx_path, self.size)
            return onnx_path

        try:
            made = cached_session(entry.name, tuple(f.sha256 for f in entry.files),
                                  "efficientnet-lite0-features-export-v1", exported,
                                  cache_dir=cache_dir, providers=providers)
            self._session, self.graph_from_cache = made.session, made.from_cache
            self.runtime = "onnxruntime"
        except Exception:  # export/ORT trouble must not take the style step down
            log.warning("EfficientNet-Lite0 ONNX export failed; using torch", exc_info=True)
            self._torch = _torch_features_model(weights)
            self.runtime = "torch"
            self.providers = ("torch:cpu",)

    def preprocess(self, images_bgr: list[np.ndarray]) -> np.ndarray:
        batch = np.empty((len(images_bgr), self.size, self.size, 3), np.float32)
        for i, image in enumerate(images_bgr):
            crop = center_crop_square(check_bgr(image, f"image {i}"), self.size)
            rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
            np.multiply(rgb, self._mul, out=batch[i])
            batch[i] += self._add
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))

    def embed(self, images_bgr: list[np.ndarray]) -> np.ndarray:
        """(N, 1280) float32, L2-normalised ImageNet features of BGR uint8 images (centre crop)."""
        if len(images_bgr) == 0:
            return np.zeros((0, self.dim), np.float32)
        batch = self.preprocess(images_bgr)
        if self._session is not None:
            features = self._session.run(None, {"image": batch})[0]
        else:
            import torch  # noqa: PLC0415

            with torch.no_grad():
                features = self._torch(torch.from_numpy(batch)).numpy()
        return l2_normalise(features)


def build(
    entry: ModelEntry, paths: list[Path], providers: tuple[str, ...], cache_dir: Path
) -> EfficientNetLiteStyle:
    return EfficientNetLiteStyle(entry, paths[0], providers, cache_dir)
