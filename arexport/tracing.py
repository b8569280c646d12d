"""Tracing a module to ONNX, quietly: the one ``torch.onnx.export`` call every graph kind goes through.

The exporter is ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript). Its output is folded
(weights-only subgraphs become initializers), stripped of the IR-10 annotations it adds (stack traces) and
set to the lowest IR version its opset allows (8 for opset 18).
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings

import onnx
import onnxscript
import onnxscript.optimizer
import torch
from torch import nn

from arrun.contract import edge
from arrun.contract.errors import first_line

from . import __version__
from .verify import ExportError


def trace(module: nn.Module, args: tuple, dynamic_shapes, input_names: list[str], output_names: list[str],
          opset: int, what: str, rewrite: bool = True) -> onnx.ModelProto:
    """``torch.onnx.export`` (dynamo) of ``module`` in eval mode, quietly -> ModelProto at the lowest IR version
    its opset allows, without the exporter's IR-10 annotations; ExportError naming ``what`` on failure.
    ``rewrite=False`` skips the exporter's own pattern rewrites (most of the time of a graph of thousands of
    nodes, such as a chunk graph's unrolled block; onnxruntime then gives the same nodes), not the folding below."""
    with quiet():
        try:
            program = torch.onnx.export(module.eval(), args, dynamo=True, dynamic_shapes=dynamic_shapes,
                                        input_names=input_names, output_names=output_names,
                                        opset_version=opset, external_data=False, verbose=False, optimize=rewrite)
            # Fold what depends on weights alone (a step's slices and stacks of weight matrices) into initializers:
            # the exporter's own pass stops at small tensors, and a step would recompute them every call.
            proto = onnxscript.optimizer.optimize(program.model_proto, input_size_limit=1 << 24,
                                                  output_size_limit=1 << 24)
        except Exception as e:
            cause = root_cause(e)
            raise ExportError(f"torch.onnx could not export {what} ({type(cause).__name__}: {plain_line(cause)}); "
                              "the model must be traceable (docs/families.md, invariant 7: no Python control flow "
                              "on tensor values, no .item()); rerun with AR_DEBUG=1 for the exporter's log") from e
    _strip_ir10_fields(proto.graph)  # node/value metadata (IR 10): the exporter's stack traces
    proto.ir_version = onnx.helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True)
    proto.producer_name, proto.producer_version = "arexport", __version__
    return proto


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # the exporter colours its messages for a terminal


def root_cause(e: BaseException) -> BaseException:
    """The innermost exception ``e`` was raised from: the exporter wraps the reason (a family's own error, a
    data-dependent branch) in a TorchExportError whose first line only says that step 1/3 failed."""
    seen = {id(e)}
    while e.__cause__ is not None and id(e.__cause__) not in seen:
        e = e.__cause__
        seen.add(id(e))
    return e


def plain_line(e: BaseException) -> str:
    """``first_line(e)`` without terminal colour codes."""
    return _ANSI.sub("", first_line(e))


@contextlib.contextmanager
def quiet():
    """Swallow the exporter's progress prints, warnings and log lines, unless AR_DEBUG=1."""
    if edge.debugging():
        yield
        return
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _strip_ir10_fields(graph: onnx.GraphProto) -> None:
    """Drop metadata_props (an IR 10 field) from the graph, its nodes, values and subgraphs."""
    graph.ClearField("metadata_props")
    for value in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        value.ClearField("metadata_props")
    for node in graph.node:
        node.ClearField("metadata_props")
        for attr in node.attribute:
            for sub in [attr.g] * attr.HasField("g") + list(attr.graphs):
                _strip_ir10_fields(sub)
