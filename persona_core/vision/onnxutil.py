"""Graph fix-ups for zoo ONNX files, done in memory at load time (needs the ``onnx`` package)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _dequantize(node: Any, consts: dict[str, np.ndarray]) -> np.ndarray:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    q = consts[node.input[0]].astype(np.float32)
    scale = consts[node.input[1]].astype(np.float32)
    has_zero = len(node.input) > 2 and node.input[2]
    zero = consts[node.input[2]].astype(np.float32) if has_zero else np.float32(0)
    axis, block = int(attrs.get("axis", 1)), int(attrs.get("block_size", 0))
    if block:
        scale = np.repeat(scale, block, axis=axis)[tuple(slice(0, n) for n in q.shape)]
        if zero.ndim:
            zero = np.repeat(zero, block, axis=axis)[tuple(slice(0, n) for n in q.shape)]
    elif scale.ndim == 1 and scale.size > 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zero = zero.reshape(shape) if zero.ndim else zero
    return ((q - zero) * scale).astype(np.float32)


def fold_weights_and_prune(path: Path, keep_inputs: tuple[str, ...], batch_dim: str = "N") -> bytes:
    """The graph at ``path`` serialized with: only ``keep_inputs`` as graph inputs (zoo files
    list every initializer as an input, which onnxruntime treats as overridable, so nothing is
    constant-folded), int8 weights dequantized once into float32 initializers (otherwise every
    call dequantizes ~10 MB of weights), and a symbolic batch dimension so batches run in one call.
    """
    model = onnx.load(str(path))
    graph = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and all(i in consts for i in node.input if i):
            consts[node.output[0]] = _dequantize(node, consts)
            continue
        if node.op_type == "Reshape" and all(i in consts for i in node.input):
            consts[node.output[0]] = consts[node.input[0]].reshape(consts[node.input[1]])
            continue
        nodes.append(node)
    used = {i for n in nodes for i in n.input} | {o.name for o in graph.output}
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items() if k in used)
    kept = [i for i in graph.input if i.name in keep_inputs]
    del graph.input[:]
    graph.input.extend(kept)
    for value in (*graph.input, *graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = batch_dim
    serialized: bytes = model.SerializeToString()
    return serialized
