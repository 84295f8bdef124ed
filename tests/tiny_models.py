"""Tiny ONNX models with the real input/output signatures of the spec's named backends
(InsightFace SCRFD + ArcFace, ...), for tests: no real weights ship with the project."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def const(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, np.float32), name)


def pooled_linear_graph(in_name: str, in_shape: list, out_name: str, weight: np.ndarray) -> onnx.GraphProto:
    """GlobalAveragePool -> Flatten -> MatMul: output = per-channel input means @ weight."""
    nodes = [
        helper.make_node("GlobalAveragePool", [in_name], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], [out_name]),
    ]
    return helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [in_shape[0], weight.shape[1]])],
        [const("w", weight)],
    )


# --- SCRFD ---------------------------------------------------------------------------------

STRIDES = (8, 16, 32)
FACE_STRIDE, FACE_ROW, FACE_COL = 16, 10, 20
FACE_DIST = np.array([3, 4, 3, 5], np.float32)  # left, top, right, bottom, in stride units
FACE_KPS = np.array([[-1.5, -1], [1.5, -1], [0, 0.5], [-1, 2], [1, 2]], np.float32)


def scrfd_graph() -> onnx.GraphProto:
    """SCRFD's 9 outputs (scores, then bboxes, then kps, per stride 8/16/32, two anchors per
    cell) for a 640x640 input, holding one face at stride 16, a weaker overlapping duplicate on
    the cell's second anchor (NMS must drop it) and a sub-threshold blip at stride 8."""
    outputs: dict[str, np.ndarray] = {}
    for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
        for s in STRIDES:
            outputs[f"{kind}_{s}"] = np.zeros(((640 // s) ** 2 * 2, width), np.float32)
    face = (FACE_ROW * (640 // FACE_STRIDE) + FACE_COL) * 2
    outputs[f"score_{FACE_STRIDE}"][face] = 0.9
    outputs[f"bbox_{FACE_STRIDE}"][face] = FACE_DIST
    outputs[f"kps_{FACE_STRIDE}"][face] = FACE_KPS.reshape(-1)
    outputs[f"score_{FACE_STRIDE}"][face + 1] = 0.8
    outputs[f"bbox_{FACE_STRIDE}"][face + 1] = FACE_DIST + 0.2
    outputs["score_8"][100] = 0.3
    outputs["bbox_8"][100] = [2, 2, 2, 2]
    # Each output = its constant + 0 * mean(input), so the graph really consumes the image.
    nodes = [
        helper.make_node("ReduceMean", ["input.1"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
    ]
    inits = [const("zero", np.float32(0))]
    names = [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in STRIDES]
    for name in names:
        inits.append(const(f"c_{name}", outputs[name]))
        nodes.append(helper.make_node("Add", [f"c_{name}", "z"], [name]))
    return helper.make_graph(
        nodes,
        "scrfd_tiny",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(outputs[n].shape)) for n in names],
        inits,
    )


def constant_embedding_graph(
    in_name: str, in_shape: list, out_name: str, vector: np.ndarray
) -> onnx.GraphProto:
    """Output = ``vector`` for every input row (the input is consumed, times zero)."""
    nodes = [
        helper.make_node("GlobalAveragePool", [in_name], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "zeros"], ["nothing"]),
        helper.make_node("Add", ["nothing", "v"], [out_name]),
    ]
    return helper.make_graph(
        nodes,
        "constant",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [in_shape[0], vector.shape[0]])],
        [const("zeros", np.zeros((in_shape[1], vector.shape[0]))), const("v", vector)],
    )


def write_buffalo_l(root: Path, *, same_identity_for_all: bool = False) -> Path:
    """A model dir holding a tiny ``buffalo_l`` pack: SCRFD (one known face) and an ArcFace
    whose embedding is the crop's mean R, G, B, or (``same_identity_for_all``) one fixed
    vector, so every face reads as the same person."""
    save(scrfd_graph(), root / "buffalo_l" / "det_10g.onnx")
    shape = ["N", 3, 112, 112]
    if same_identity_for_all:
        arcface = constant_embedding_graph("input.1", shape, "683", np.linspace(1.0, 2.0, 512))
    else:
        weight = np.zeros((3, 512), np.float32)
        weight[0, 0] = weight[1, 1] = weight[2, 2] = 1.0
        arcface = pooled_linear_graph("input.1", shape, "683", weight)
    save(arcface, root / "buffalo_l" / "w600k_r50.onnx")
    return root
