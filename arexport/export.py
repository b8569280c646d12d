"""Checkpoint -> one self-describing .onnx: a single-step graph with explicit state, or the full graph.

    arexport onnx CHECKPOINT_DIR --step-graph|--full-graph [--out FILE] [--opset 18..20] [--no-verify] [--force] [--json]
    arexport verify MODEL.onnx CHECKPOINT_DIR [--json]

The checkpoint alone decides the architecture (its config.json rebuilds the model). The graph is traced
with ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript); I/O names and metadata come
from ``arrun.contract.schema``, the state spec from the model itself (``ARModel.state_spec``: this module
only serialises it); the file is written to a ``PendingFile`` beside the target, verified (``verify.py``),
and only then renamed: a failure leaves no .onnx and no temporary file behind.

Graphs (B = batch, dynamic in every graph; V = vocabulary size):
- step: ``input_ids`` (B,) int64 [+ ``position`` () int64] [+ ``condition`` (B,) int64] + one input per
  state tensor -> ``logits`` (B, V) float32 + one output per state tensor with its input's shape and
  dtype, fed straight back; a model whose step takes chunks (``ARModel.step_tokens`` S > 1: the windowed
  Transformer) has ``input_ids`` (B, s) and ``logits`` (B, s, V), 1 <= s <= S. Names pair up ``in.<s>`` -> ``out.<s>``; the KV cache uses the
  Optimum/onnxruntime-genai names ``past_key_values.{i}.key|value`` -> ``present.{i}.key|value``.
  ``position`` is there when the model's step reads it (``ARModel.uses_position``).
- full: ``input_ids`` (B, T) int64 [+ ``condition`` (B,)] -> ``logits`` (B, T, V), logits[:, t]
  predicting x_t from x_<t; T is dynamic up to the model's maximum length (or unbounded), or fixed where the
  model fixes it (``ARModel.fixed_length``: an image's H*W).

State: whatever the model declares in ``state_spec()`` (fixed shapes apart from the batch, so a runtime
allocates once; a step does O(layers) work; the graph is a pure function, so each step writes fresh state
tensors). Each family's module in ``artrain/models`` documents its layout.

Metadata (``arrun.contract.schema.Key``): state spec entries {name, input, output, shape ['batch', ...],
dtype, init} as the model declares them; ``ar.max_length`` the model's ``max_length`` (0 = unbounded);
``ar.start_token`` = V; ``ar.bits_per_dim`` and ``ar.bits_split`` from the checkpoint's
evaluation ('nan' and '' when it has none); producer versions of torch, onnx, onnxscript, onnxruntime
and arexport.

Versions: opset 18 by default (18..20 accepted); the IR version is the lowest the opset allows (8 for
opset 18) after dropping the exporter's IR-10 node annotations (stack traces); weights stay inside the
one file. ``ar.min_onnxruntime`` records the oldest onnxruntime verified for the opset (MIN_ONNXRUNTIME).
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime
import onnxscript
import onnxscript.optimizer
import torch
from torch import nn

from artrain.checkpoint import CONFIG, METRICS, TRAINER, WEIGHTS, data_info, load_checkpoint
from artrain.models import ARModel
from arrun.contract import edge
from arrun.contract.errors import UsageError, first_line
from arrun.contract.files import PendingFile
from arrun.contract.schema import BATCH_DIM, GRAPH_KINDS, ModelInfo, SchemaError
from arrun.kinds import kind_of

from . import __version__
from .chunk import chunk_graph
from .constants import DEFAULT_OPSET, MIN_ONNXRUNTIME, SUPPORTED_OPSETS
from .verify import ExportError, VerifyReport, verify_onnx

_EXAMPLE_BATCH = 2  # export traces batch 2, so batch 1 and 3 in verification are sizes it never saw


@dataclass(frozen=True)
class ExportResult:
    path: Path
    info: ModelInfo
    size_bytes: int
    ir_version: int
    export_seconds: float
    report: VerifyReport | None  # None with verify=False

    def to_dict(self) -> dict:
        return {"path": str(self.path), "family": self.info.family, "graph": self.info.graph,
                "opset": self.info.opset, "ir_version": self.ir_version, "size_bytes": self.size_bytes,
                "inputs": self.info.input_names(), "outputs": self.info.output_names(),
                "min_onnxruntime": self.info.min_onnxruntime, "export_seconds": round(self.export_seconds, 2),
                "verification": self.report.to_dict() if self.report else None}


def model_info(model: ARModel, config: dict, graph: str, opset: int) -> ModelInfo:
    """The metadata contract of ``model`` (rebuilt from checkpoint ``config``) exported as ``graph``."""
    family, c, data = model.family, model.config, data_info(config)
    if data.levels != c.vocab_size:
        raise UsageError(f"the checkpoint's data has {data.levels} levels but its {family} model "
                         f"{c.vocab_size} outputs; the checkpoint is mixed, train again")
    if model.fixed_length and model.fixed_length != math.prod(data.image_shape or (0,)):
        raise UsageError(f"the checkpoint's images are {data.image_shape} but its {family} model takes "
                         f"{model.fixed_length} pixels; the checkpoint is mixed, train again")
    head = model.output_head
    if graph == "chunk" and not head.samples_in_graph:
        raise UsageError(f"a chunk graph samples a softmax head; this {family} has a {head.description} head: "
                         "export it with --step-graph (arrun samples it in numpy)")
    if graph == "chunk" and (model.step_tokens != 1 or model.fixed_length):
        raise UsageError(f"a chunk graph rolls the one-element step of a sequence model of any length (a WaveNet); "
                         f"export the {family} model with --step-graph")
    state = model.state_spec() if graph != "full" else ()
    evaluation = config.get("eval") or {}
    bits = evaluation.get("bits_per_dim")
    info = ModelInfo(
        family=family, graph=graph, data_kind=data.kind, vocab_size=c.vocab_size, start_token=c.vocab_size,
        max_length=model.max_length, state=state, window=model.window, receptive_field=model.receptive_field,
        step_tokens=model.step_tokens if graph == "step" else 1, data_name=Path(data.name).name,  # a user's path: no local folders
        features=model.feature_spec,
        image_shape=tuple(data.image_shape or ()),
        alphabet=data.alphabet or "", sample_rate=data.sample_rate or 0, num_classes=c.num_classes,
        kind_fields=dict(data.kind_fields),
        class_names=tuple(data.class_names) if c.num_classes else (),
        uses_position=graph != "full" and model.uses_position,
        bits_per_dim=math.nan if bits is None else float(bits), bits_split=evaluation.get("split") or "",
        opset=opset, min_onnxruntime=MIN_ONNXRUNTIME[opset], producer=_producer_versions(), output=head.spec)
    try:
        info.validate("the checkpoint")
        kind_of(info, "the checkpoint")
    except SchemaError as e:
        problems = str(e).rsplit("; re-export", 1)[0]  # the schema's advice is for files, not checkpoints
        raise UsageError(f"{problems}; fix the checkpoint's config.json or train again") from None
    return info


class StepGraph(nn.Module):
    """forward(input_ids, [position], [condition], [features (B, M)], *state_in) -> (logits, *state_out), state
    in spec order; the frame's conditioning vector is computed in the graph."""

    def __init__(self, model: ARModel, info: ModelInfo):
        super().__init__()
        self.model, self.names = model, [s.name for s in info.state]
        self.uses_position, self.conditional, self.local = info.uses_position, info.num_classes > 0, bool(info.features)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        token, rest = inputs[0], list(inputs[1:])
        pos = rest.pop(0) if self.uses_position else None
        cond = rest.pop(0) if self.conditional else None
        local = {"features": self.model.frame_vectors(rest.pop(0))} if self.local else {}
        logits, new_state = self.model.step(token, pos, dict(zip(self.names, rest)), cond, **local)
        return (logits, *(new_state[name] for name in self.names))


class FullGraph(nn.Module):
    """forward(input_ids (B, T), [condition (B,)], [features (B, F, M)]) -> logits (B, T, V)."""

    def __init__(self, model: ARModel, info: ModelInfo):
        super().__init__()
        self.model, self.conditional, self.local = model, info.num_classes > 0, bool(info.features)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        cond = inputs[1] if self.conditional else None
        local = {"features": inputs[-1]} if self.local else {}
        return self.model.sequence_logits(inputs[0], cond, **local)


def _example(model: ARModel, info: ModelInfo) -> tuple[tuple, tuple]:
    """Example inputs in graph-input order and their dynamic shapes: batch everywhere, and the full
    graph's length T unless the model fixes it (an image's H*W; dynamic dims need an example of size >= 2)."""
    B = _EXAMPLE_BATCH
    batch = torch.export.Dim(BATCH_DIM, min=1, max=4096)
    cond = [torch.zeros(B, dtype=torch.long)] if info.num_classes else []
    cond_shapes = [{0: batch}] * len(cond)
    if info.features:  # a frame (B, M) per step, frames (B, F, M) for a whole sequence
        step = info.graph == "step"
        cond.append(torch.zeros(B, info.features.n_mels) if step else torch.zeros(B, 3, info.features.n_mels))
        cond_shapes.append({0: batch} if step else {0: batch, 1: torch.export.Dim("frames", min=1)})
    if info.graph == "step":
        state = model.init_state(B)
        pos = [torch.tensor(0)] if info.uses_position else []
        if info.step_tokens > 1:  # prefill: (B, s) elements per call, 1 <= s <= step_tokens
            tokens = torch.full((B, 2), info.start_token)
            token_shape = {0: batch, 1: torch.export.Dim("step_tokens", min=1, max=info.step_tokens)}
        else:
            tokens, token_shape = torch.full((B,), info.start_token), {0: batch}
        args = [tokens, *pos, *cond, *(state[s.name] for s in info.state)]
        shapes = [token_shape, *[None] * len(pos), *cond_shapes, *[{0: batch}] * len(info.state)]
        return tuple(args), (tuple(shapes),)
    if model.fixed_length:
        tokens, length = torch.zeros(B, model.fixed_length, dtype=torch.long), {0: batch}
    else:
        bound = {"max": info.max_length} if info.max_length else {}
        T = min(3, info.max_length or 3)
        tokens = torch.zeros(B, T, dtype=torch.long)
        length = {0: batch, 1: torch.export.Dim("length", min=1, **bound)} if T >= 2 else {0: batch}
    return (tokens, *cond), ((length, *cond_shapes),)


def to_onnx(model: ARModel, info: ModelInfo) -> onnx.ModelProto:
    """Trace ``model`` as ``info.graph`` -> ModelProto with the metadata, at the lowest IR version its opset allows."""
    if info.graph == "chunk":
        proto = chunk_graph(model, info)
    else:
        wrapper = StepGraph(model, info) if info.graph == "step" else FullGraph(model, info)
        args, dynamic_shapes = _example(model, info)
        proto = trace(wrapper, args, dynamic_shapes, info.input_names(), info.output_names(), info.opset,
                      f"the {info.family} {info.graph} graph")
    set_metadata(proto, info)
    return proto


def set_metadata(proto: onnx.ModelProto, info: ModelInfo) -> None:
    """Replace ``proto``'s metadata with the contract of ``info``."""
    del proto.metadata_props[:]
    for key, value in info.to_metadata().items():
        proto.metadata_props.add(key=key, value=value)


def trace(module: nn.Module, args: tuple, dynamic_shapes, input_names: list[str], output_names: list[str],
          opset: int, what: str) -> onnx.ModelProto:
    """``torch.onnx.export`` (dynamo) of ``module`` in eval mode, quietly -> ModelProto at the lowest IR version
    its opset allows, without the exporter's IR-10 annotations; ExportError naming ``what`` on failure."""
    with _quiet():
        try:
            program = torch.onnx.export(module.eval(), args, dynamo=True, dynamic_shapes=dynamic_shapes,
                                        input_names=input_names, output_names=output_names,
                                        opset_version=opset, external_data=False, verbose=False)
            # Fold what depends on weights alone (a step's slices and stacks of weight matrices) into initializers:
            # the exporter's own pass stops at small tensors, and a step would recompute them every call.
            proto = onnxscript.optimizer.optimize(program.model_proto, input_size_limit=1 << 24,
                                                  output_size_limit=1 << 24)
        except Exception as e:
            raise ExportError(f"torch.onnx could not export {what} ({type(e).__name__}: {first_line(e)}); rerun "
                              "with AR_DEBUG=1 for the exporter's log") from e
    _strip_ir10_fields(proto.graph)  # node/value metadata (IR 10): the exporter's stack traces
    proto.ir_version = onnx.helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True)
    proto.producer_name, proto.producer_version = "arexport", __version__
    return proto


def export_onnx(checkpoint_dir: Path | str, out: Path | str | None = None, *, graph: str = "step",
                opset: int = DEFAULT_OPSET, force: bool = False, verify: bool = True) -> ExportResult:
    """Export the checkpoint's model as the ``graph`` ('step' | 'full') graph to ``out`` (default
    CHECKPOINT_DIR/<graph>.onnx) and, unless verify=False, prove parity before the file appears.

    Raises UsageError (bad checkpoint, output path, opset, graph) or ExportError (export or verification
    failed); in both cases nothing is left at ``out`` or beside it.
    """
    if graph not in GRAPH_KINDS:
        raise UsageError(f"unknown graph kind {graph!r}; choose one of {', '.join(GRAPH_KINDS)}")
    if opset not in SUPPORTED_OPSETS:
        raise UsageError(f"opset {opset} is not supported; choose one of {SUPPORTED_OPSETS[0]}..{SUPPORTED_OPSETS[-1]} "
                         f"(default {DEFAULT_OPSET})")
    checkpoint_dir = Path(checkpoint_dir)
    model, config = load_checkpoint(checkpoint_dir)
    out = Path(out) if out is not None else checkpoint_dir / f"{graph}.onnx"
    if out.parent.resolve() == checkpoint_dir.resolve() and out.name in (WEIGHTS, CONFIG, TRAINER, METRICS):
        raise UsageError(f"--out {out} would replace a file of the checkpoint; choose another name")
    info = model_info(model, config, graph, opset)
    check_output(out, force)
    try:
        pending = PendingFile(out)
    except OSError as e:
        raise UsageError(f"cannot write to {out.parent} ({e.strerror}); choose another --out") from None
    with pending:
        start = time.perf_counter()
        proto = to_onnx(model, info)
        seconds = time.perf_counter() - start
        pending.file.close()
        try:
            onnx.save_model(proto, pending.tmp, save_as_external_data=False)
        except (OSError, ValueError) as e:
            raise ExportError(f"could not write {out} ({first_line(e)}); check the disk space and the path") from e
        report = verify_onnx(pending.tmp, model, name=str(out)) if verify else None
    return ExportResult(out, info, out.stat().st_size, proto.ir_version, seconds, report)


def check_output(out: Path, force: bool) -> None:
    """``out`` may be (over)written: not a directory, not there unless ``force``, in an existing folder."""
    if out.is_dir():
        raise UsageError(f"output path {out} is a directory; give a file name with --out")
    if out.exists() and not force:
        raise UsageError(f"{out} already exists; pass --force to overwrite it or choose another --out")
    if not out.parent.is_dir():
        raise UsageError(f"output directory {out.parent} does not exist or is not a directory; create it or "
                         "choose another --out")


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


def _producer_versions() -> dict[str, str]:
    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__,
            "onnxruntime": onnxruntime.__version__, "arexport": __version__}


@contextlib.contextmanager
def _quiet():
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
