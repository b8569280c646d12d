"""Per-row activation quantization: onnxruntime's dynamic int8 graph made batch-invariant.

onnxruntime's ``DynamicQuantizeLinear`` takes one scale and zero point over its whole input: every row of
the batch and every element of a prefill chunk, so one row's output depends on the others. Each one is
replaced here by a quantization of its own row (the last axis: the K that the following ``MatMulInteger``
contracts over), symmetric so that the zero point stays the one scalar ``MatMulInteger`` accepts:

    x (..., K) float -> s = max(|x|, axis=-1, keepdims) / 127      (..., 1)
                        y = QuantizeLinear(x / s, 1, 128)           (..., K) uint8, in 1..255
                        z = 128                                     uint8 scalar

``y``, ``s`` and ``z`` keep the names of the node's three outputs. The quantizer's rescale
``Cast(MatMulInteger(y, w, z, w_zero)) * (s * w_scale)`` becomes ``(Cast(...) * w_scale) * s``: onnxruntime
fuses MatMulInteger, Cast and a Mul by a product of two scales into ``MatMulIntegerToFloat``, whose kernel
reads a non-scalar activation scale per column, not per row (the outputs were wrong by up to 1.2 on the tiny
WaveNet); by the weight's scalar scale alone it fuses correctly. Integer products are exact and the rest is
elementwise, so a row's output is the same bits whatever rows or elements share its call.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

LEVELS = 127  # |q - 128| <= 127: uint8 1..255, one code left unused for a zero point that stays scalar
SMALLEST = np.float32(1e-30)  # a row of zeros keeps a finite scale (and quantizes to 128, exactly 0)


def per_row_activations(graph: onnx.GraphProto, opset: int) -> int:
    """Replace every ``DynamicQuantizeLinear`` of ``graph`` (of ai.onnx ``opset``) and its subgraphs in place
    -> how many."""
    count = 0
    for node in graph.node:
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                count += per_row_activations(sub, opset)
    nodes, row_scales = [], set()
    for node in graph.node:
        if node.op_type == "DynamicQuantizeLinear" and node.domain in ("", "ai.onnx"):
            row_scales.add(node.output[1])
            nodes += _row_quantizer(node.input[0], *node.output, opset=opset, prefix=f"{node.name or node.output[0]}/row")
            count += 1
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(_rescale_per_row(nodes, row_scales))
    return count


def _rescale_per_row(nodes: list[onnx.NodeProto], row_scales: set[str]) -> list[onnx.NodeProto]:
    """``c * (s * w_scale)`` -> ``(c * w_scale) * s`` for each row scale ``s`` of ``row_scales``."""
    products = {n.output[0]: n for n in nodes if n.op_type == "Mul" and len(set(n.input) & row_scales) == 1}
    out = []
    for node in nodes:
        if node.output[0] in products:
            continue  # the product of scales: each reader multiplies by its two factors in turn
        product = next((products[i] for i in node.input if i in products), None)
        if product is None:
            out.append(node)
            continue
        if node.op_type != "Mul":
            raise ValueError(f"{node.op_type} node {node.name!r} reads a product of activation and weight scales")
        row = next(i for i in product.input if i in row_scales)
        weight = next(i for i in product.input if i != row)
        other = next(i for i in node.input if i != product.output[0])
        partial = f"{node.output[0]}/weight_scaled"
        out += [helper.make_node("Mul", [other, weight], [partial], name=f"{node.name}/weight_scale"),
                helper.make_node("Mul", [partial, row], list(node.output), name=f"{node.name}/row_scale")]
    return out


def _row_quantizer(x: str, y: str, scale: str, zero: str, *, opset: int, prefix: str) -> list[onnx.NodeProto]:
    def const(name: str, value: np.ndarray) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], name=name, value=numpy_helper.from_array(value, name))

    p = prefix
    if opset >= 18:  # ReduceMax takes its axes as an input from opset 18, as an attribute before
        reduce = [const(f"{p}/axis", np.array([-1], np.int64)),
                  helper.make_node("ReduceMax", [f"{p}/abs", f"{p}/axis"], [f"{p}/max"], name=f"{p}/ReduceMax", keepdims=1)]
    else:
        reduce = [helper.make_node("ReduceMax", [f"{p}/abs"], [f"{p}/max"], name=f"{p}/ReduceMax", axes=[-1], keepdims=1)]
    return [
        const(f"{p}/smallest", SMALLEST),
        const(f"{p}/levels", np.float32(LEVELS)),
        const(f"{p}/one", np.float32(1)),
        const(zero, np.uint8(128)),
        helper.make_node("Abs", [x], [f"{p}/abs"], name=f"{p}/Abs"),  # (..., K)
        *reduce,  # (..., 1)
        helper.make_node("Max", [f"{p}/max", f"{p}/smallest"], [f"{p}/range"], name=f"{p}/Max"),  # (..., 1)
        helper.make_node("Div", [f"{p}/range", f"{p}/levels"], [scale], name=f"{p}/scale"),  # (..., 1)
        helper.make_node("Div", [x, scale], [f"{p}/scaled"], name=f"{p}/Div"),  # (..., K) in [-127, 127]
        helper.make_node("QuantizeLinear", [f"{p}/scaled", f"{p}/one", zero], [y], name=f"{p}/QuantizeLinear"),
    ]
