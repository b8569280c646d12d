"""Precision variants of an exported fp32 graph, each written only if it passes a quality gate.

    arexport quantize SOURCE.onnx CHECKPOINT_DIR --precision int8|fp16 [--out FILE] [--force] [--json]

- int8, step graph: onnxruntime's dynamic quantization. MatMul, Gemm, Conv and Gather weights become
  uint8, one scale and zero point per tensor (products of two activations, attention's, stay float);
  activations are quantized at run time, so the recurrent state stays float, each row on its own
  (``rowquant.py``: one symmetric scale per row of a product's input, where onnxruntime takes one over the
  whole tensor, so no row of a batch and no element of a prefill chunk changes another's output). Weights
  that only an ``If`` branch reads (the PixelCNN's once-per-row vertical stack) move into the branch first, where the quantizer sees them. Measured choices: per output channel cost the
  vocoder 5 % bits/dim where per tensor costs 0.8 %; uint8 weights because onnxruntime before 1.24 has no
  ConvInteger for int8 ones (and uint8 x uint8 products cannot saturate on AVX2).
- int8, a full graph with convolutions (the PixelCNN's): static QDQ, weights per channel and activations
  calibrated (min-max) on ``CALIBRATION_BATCHES`` batches of training windows. Measured on the PixelCNN's
  full graph (the test split scored): static 2.4x faster than fp32, dynamic 2.2x slower, both within
  0.03 % bits/dim. Other full graphs are quantized like step graphs.
- fp16: onnxruntime's float16 converter. Every float32 tensor becomes fp16, the state included: it is
  declared float16 in ``ar.state`` (a float64 state stays float64), at half the memory and bandwidth and with
  no cast per step. ``logits`` and ``features`` stay float32, cast at the graph's edge, and the int64 inputs
  are untouched.

The gate scores the checkpoint's validation split with ``arrun.score`` (the runtime users run, on CPU)
through the source and through the variant. The variant may be at most ``TOLERANCE[precision]``
relatively worse in bits/dim, and an fp16 variant must also choose the source's greedy tokens at every
one of ``GREEDY_STEPS`` steps (batch ``GREEDY_BATCH``, fed the source's greedy path), or, where the source
itself has a near-tie (the variant's token within ``NEAR_TIE`` nats of its best logit), one of the tied
tokens: a µ-law vocoder's neighbouring levels tie that closely, 2e-4 nats apart, where fp16's logits move
4e-2. Otherwise
``GateError`` (exit 1) and no file. The variant keeps the source's metadata and adds ``ar.precision``,
``ar.source_sha256`` (of the source file) and ``ar.precision.gate`` (the figures it passed); opset and IR
version are the source's. A state is ``in_place`` in the variant only where the in-place proof
(``inplace.py``) holds on the variant graph itself, re-run after the gate.
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from artrain.checkpoint import data_info, load_checkpoint, read_config
from artrain.data import Split, reload_dataset
from arrun.contract.errors import UsageError, first_line
from arrun.contract.features import mulaw_features
from arrun.contract.files import PendingFile, sha256_file
from arrun.contract.schema import CONDITION_INPUT, FEATURES_INPUT, TOKEN_INPUT, ModelInfo, variant_name
from arrun.runtime import Stepper, full_logits, prefill
from arrun.score import score
from arrun.session import Model, open_model

from . import __version__
from .constants import VARIANTS
from .export import check_output, declare_in_place, set_metadata
from .inplace import StateVerdict
from .rowquant import per_row_activations
from .tracing import quiet
from .verify import ExportError, prove_in_place

TOLERANCE = {"int8": 0.01, "fp16": 0.001}  # relative increase of validation bits/dim a variant may have
GREEDY_STEPS, GREEDY_BATCH = 64, 4
NEAR_TIE = 0.01  # nats: two logits this close are a tie to the model (a 1 % probability ratio)
GATE_SPLIT = "val"
# The calibrator keeps every intermediate tensor of every batch (its option to merge ranges as it goes
# discards batches in onnxruntime 1.32), so calibration stays small.
CALIBRATION_BATCHES, CALIBRATION_BATCH, CALIBRATION_LENGTH = 4, 8, 128
# The oldest onnxruntime that ran every shipped variant within the compatibility matrix's tolerance
# (benchmarks/ort_compat.py: 1.14.1, 1.17.3, 1.20.1 and the newest release, logits against the newest);
# onnxruntime 1.14.1 crashes on the fp16 graphs.
MIN_ONNXRUNTIME = {"int8": "1.14.1", "fp16": "1.17.3"}
_INT8_OPS = ["MatMul", "Gemm", "Conv", "Gather"]


class GateError(ExportError):
    """The variant is worse than its tolerance allows (exit 1; nothing written)."""


@dataclass(frozen=True)
class VariantResult:
    path: Path
    info: ModelInfo
    size_bytes: int
    source_bytes: int
    gate: dict
    seconds: float
    in_place: tuple[StateVerdict, ...] = ()  # the variant graph's own in-place proof, per state

    def to_dict(self) -> dict:
        return {"path": str(self.path), "precision": self.info.precision, "graph": self.info.graph,
                "family": self.info.family, "size_bytes": self.size_bytes, "source_bytes": self.source_bytes,
                "size_ratio": round(self.size_bytes / self.source_bytes, 4), "gate": self.gate,
                "min_onnxruntime": self.info.min_onnxruntime, "seconds": round(self.seconds, 1),
                "in_place": [dataclasses.asdict(v) for v in self.in_place]}


def make_variant(source: Path | str, checkpoint_dir: Path | str, precision: str, out: Path | str | None = None,
                 *, force: bool = False) -> VariantResult:
    """Write the ``precision`` variant of the fp32 step or full graph ``source`` to ``out`` (default
    beside it: ``variant_name``), gated on the validation split of the checkpoint it was exported from.

    Raises UsageError (bad arguments, a source that is not an fp32 step/full graph of this checkpoint) or
    GateError / ExportError (the variant fails its gate or cannot be made); nothing is left at ``out``."""
    if precision not in VARIANTS:
        raise UsageError(f"unknown precision {precision!r}; choose int8 or fp16 (the exported graph is fp32)")
    source, checkpoint_dir = Path(source), Path(checkpoint_dir)
    reference = open_model(source, threads=0, graph=("step", "full"), command="arexport quantize")
    info = reference.info
    if info.precision != "fp32":
        raise UsageError(f"{source} is already the {info.precision} variant; give the fp32 graph `arexport onnx` wrote")
    config = read_config(checkpoint_dir)
    data = data_info(config)
    if (config["family"], data.levels, Path(data.name).name) != (info.family, info.vocab_size, info.data_name):
        raise UsageError(f"{source} is a {info.family} model of {info.data_name!r} and {checkpoint_dir} a "
                         f"{config['family']} model of {Path(data.name).name!r}; give the checkpoint it was exported from")
    out = Path(out) if out is not None else source.with_name(variant_name(source.name, precision))
    check_output(out, force)
    dataset = reload_dataset(data.name, data.kind, data.levels, data.alphabet)
    proto = onnx.load(source)
    convolutional = info.graph == "full" and any(node.op_type == "Conv" for node in proto.graph.node)
    calibration = calibration_feeds(info, dataset.train) if precision == "int8" and convolutional else []
    split = dataset.split(GATE_SPLIT)
    sequences = [split.sequence(i) for i in range(len(split))]
    labels = split.labels.tolist() if info.num_classes else None
    start = time.perf_counter()
    with PendingFile(out) as pending, tempfile.TemporaryDirectory() as scratch:
        pending.file.close()
        proto = _convert(proto, precision, Path(scratch), calibration, info.output_name)
        variant_info = dataclasses.replace(
            info, precision=precision, source_sha256=sha256_file(source), min_onnxruntime=MIN_ONNXRUNTIME[precision],
            producer={**info.producer, "arexport": __version__, "onnxruntime.quantization": onnxruntime.__version__},
            state=tuple(dataclasses.replace(s, dtype=_variant_dtype(s.dtype, precision), in_place=False)
                        for s in info.state))  # in place only once proved on this graph
        _write(proto, variant_info, pending.tmp)
        variant = open_model(pending.tmp, threads=0, command="arexport quantize")
        gate = _gate(reference, variant, precision, sequences, labels, str(out))
        verdicts = _prove_in_place(pending.tmp, variant, checkpoint_dir, str(out))
        variant_info = declare_in_place(dataclasses.replace(variant_info, gate=gate), verdicts)
        _write(proto, variant_info, pending.tmp)
    return VariantResult(out, variant_info, out.stat().st_size, source.stat().st_size, gate,
                         time.perf_counter() - start, tuple(verdicts))


def _prove_in_place(path: Path, variant: Model, checkpoint_dir: Path, name: str) -> list[StateVerdict]:
    """The in-place proof (``inplace.py``) re-run on the variant's own graph: a converter may have put a Cast
    or a quantized read between a state and its scatter."""
    if not variant.info.graph_io.stateful:
        return []
    state_period = load_checkpoint(checkpoint_dir)[0].state_period
    return prove_in_place(path, variant, state_period, np.random.default_rng(0), name=name)


def calibration_feeds(info: ModelInfo, split: Split) -> list[dict[str, np.ndarray]]:
    """Full-graph inputs for static calibration: CALIBRATION_BATCHES batches of CALIBRATION_BATCH random
    windows of ``split`` (whole images; CALIBRATION_LENGTH elements of longer sequences), with their
    classes and, for a vocoder, their own features."""
    rng = np.random.default_rng(0)
    length = math.prod(info.image_shape) if info.image_shape else min(CALIBRATION_LENGTH, info.max_length or CALIBRATION_LENGTH)
    lengths = np.diff(split.offsets)
    candidates = np.flatnonzero(lengths >= length)
    if not len(candidates):
        raise UsageError(f"the training data has no sequence of {length} elements to calibrate on; train on longer sequences")
    feeds = []
    for _ in range(CALIBRATION_BATCHES):
        rows = rng.choice(candidates, CALIBRATION_BATCH)
        starts = rng.integers(0, lengths[rows] - length + 1)
        x = np.stack([split.sequence(i)[s:s + length] for i, s in zip(rows, starts)]).astype(np.int64)  # (N, L)
        feed = {TOKEN_INPUT: x}
        if info.num_classes:
            feed[CONDITION_INPUT] = split.labels[rows].astype(np.int64)
        if info.features:
            feed[FEATURES_INPUT] = np.stack([mulaw_features(row, info.features, info.vocab_size) for row in x])
        feeds.append(feed)
    return feeds


def _convert(proto: onnx.ModelProto, precision: str, scratch: Path, calibration: list[dict],
             head_output: str) -> onnx.ModelProto:
    """The fp32 ``proto`` at ``precision`` (int8 by static QDQ when ``calibration`` feeds are given, else
    dynamic; fp16 keeping ``head_output``, the head's output, in fp32), opset and IR version unchanged;
    ExportError if the tools fail."""
    ir_version = proto.ir_version
    try:
        with quiet():
            if precision == "fp16":
                converted = _fp16(proto, head_output)
            else:
                converted = _int8_static(proto, scratch, calibration) if calibration else _int8(proto, scratch)
    except Exception as e:
        raise ExportError(f"onnxruntime's {precision} conversion failed ({type(e).__name__}: {first_line(e)}); "
                          "rerun with AR_DEBUG=1 for its log") from e
    converted.ir_version = ir_version
    return converted


def _variant_dtype(dtype: str, precision: str) -> str:
    """A state's dtype in the variant: the fp16 converter makes every float32 tensor float16 and leaves float64."""
    return "float16" if precision == "fp16" and dtype == "float32" else dtype


def int8_graph(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The dynamic int8 conversion of ``proto`` with no gate and no metadata (tests build tiny variants with it)."""
    with tempfile.TemporaryDirectory() as scratch:
        return _convert(proto, "int8", Path(scratch), [], "")


def _int8(proto: onnx.ModelProto, scratch: Path) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _localise_branch_weights(proto.graph)
    out = scratch / "int8.onnx"
    quantize_dynamic(proto, out, op_types_to_quantize=_INT8_OPS, per_channel=False, weight_type=QuantType.QUInt8,
                     extra_options={"EnableSubgraph": True, "MatMulConstBOnly": True})  # weights, not attention
    converted = onnx.load(out)
    per_row_activations(converted.graph, _opset(converted))  # each row its own activation scale: rows cannot see each other
    return converted


def _opset(proto: onnx.ModelProto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _int8_static(proto: onnx.ModelProto, scratch: Path, calibration: list[dict]) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter(calibration)

        def get_next(self):
            return next(self.feeds, None)

    source, out = scratch / "fp32.onnx", scratch / "int8.onnx"
    onnx.save_model(proto, source)
    quantize_static(source, out, Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return onnx.load(out)


def _fp16(proto: onnx.ModelProto, head_output: str) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    names = {v.name for v in [*proto.graph.input, *proto.graph.output]}
    kept = (head_output, FEATURES_INPUT)  # the head's outputs and the features stay fp32
    return convert_float_to_float16(proto, keep_io_types=[n for n in kept if n in names])


def _localise_branch_weights(graph: onnx.GraphProto) -> None:
    """Move each initializer that no node of ``graph`` reads directly, and one subgraph reads, into that
    subgraph (the quantizer looks for a node's weights in its own graph)."""
    direct = {name for node in graph.node for name in node.input}
    readers: dict[str, list[onnx.GraphProto]] = {}
    for node in graph.node:
        for sub in _subgraphs(node):
            for name in {i for n in sub.node for i in n.input}:
                readers.setdefault(name, []).append(sub)
    kept = []
    for tensor in graph.initializer:
        subs = readers.get(tensor.name, [])
        if tensor.name not in direct and len(subs) == 1:
            subs[0].initializer.append(tensor)
        else:
            kept.append(tensor)
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    return [sub for a in node.attribute for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs)]


def _write(proto: onnx.ModelProto, info: ModelInfo, path: Path) -> None:
    set_metadata(proto, info)
    proto.producer_name, proto.producer_version = "arexport", __version__
    try:
        onnx.save_model(proto, path, save_as_external_data=False)
    except (OSError, ValueError) as e:
        raise ExportError(f"could not write {path} ({first_line(e)}); check the disk space and the path") from e


def _gate(reference: Model, variant: Model, precision: str, sequences: list[np.ndarray], labels: list[int] | None,
          name: str) -> dict:
    """Score both on the validation sequences (and, for fp16, compare greedy paths) -> the gate's figures,
    or GateError naming the failure."""
    ref_bits = score(reference, sequences, labels)["bits_per_dim"]
    bits = score(variant, sequences, labels)["bits_per_dim"]
    worse = (bits - ref_bits) / ref_bits
    tolerance = TOLERANCE[precision]
    gate = {"split": GATE_SPLIT, "tolerance": tolerance, "reference_bits_per_dim": round(ref_bits, 6),
            "bits_per_dim": round(bits, 6), "relative_change": round(worse, 6)}
    if not math.isfinite(bits) or worse > tolerance:
        raise GateError(f"the {precision} variant scores {bits:.4f} bits/dim on the {GATE_SPLIT} split, {100 * worse:+.2f} % "
                        f"against the fp32 graph's {ref_bits:.4f} (at most +{100 * tolerance:g} % allowed); {name} was "
                        "not written: use the fp32 graph")
    if precision == "fp16":
        mismatches, ties, steps = greedy_mismatches(reference, variant, sequences)
        gate.update(greedy_steps=steps, greedy_batch=GREEDY_BATCH, greedy_near_ties=ties)
        if mismatches:
            raise GateError(f"the fp16 variant chooses another greedy token at {mismatches} of {steps * GREEDY_BATCH} "
                            f"positions of the fp32 graph's greedy path; {name} was not written: use the fp32 graph")
    return gate


def greedy_mismatches(reference: Model, variant: Model, sequences: list[np.ndarray]) -> tuple[int, int, int]:
    """(positions where the variant picks a token the reference does not pick, positions of those that are
    the reference's near-ties, steps). The pick is the head's greedy choice (``arrun.contract.heads``: the argmax, or a
    mixture's most likely component's mean). The reference's greedy path over the first ``GREEDY_STEPS`` positions
    (batch ``GREEDY_BATCH``: classes 0, 1, ... where conditional; a vocoder given the frames of the first
    validation sequences) is fed to both by teacher forcing. A near-tie: the variant's token is within
    ``NEAR_TIE`` nats of the reference's pick in the reference's log-probability there, so either is the greedy
    choice to the model's own precision; only the other positions are mismatches."""
    info, B, head = reference.info, GREEDY_BATCH, reference.info.head
    length = math.prod(info.image_shape) if info.image_shape else GREEDY_STEPS  # an image's full graph fixes it
    steps = min(GREEDY_STEPS, length)
    cond = np.arange(B, dtype=np.int64) % info.num_classes if info.num_classes else None
    frames = None
    if info.features:
        clips = [np.resize(sequences[i % len(sequences)], length) for i in range(B)]
        frames = np.stack([mulaw_features(c, info.features, info.vocab_size) for c in clips])  # (B, F, M)
    path = np.zeros((B, length), np.int64)  # the greedy elements; zeros past `steps` (causal: never read)
    expected = np.zeros((B, steps, info.output_width), np.float32)  # the reference's outputs along the path
    if info.graph == "full":
        for t in range(steps):
            expected[:, t] = full_logits(reference, path, cond, frames)[:, t]
            path[:, t] = head.greedy(expected[:, t])
        chosen = head.greedy(full_logits(variant, path, cond, frames)[:, :steps])  # (B, steps)
    else:
        runner = Stepper(reference, B)
        runner.reset(cond, frames)
        token = np.full(B, info.start_token, np.int64)
        for t in range(steps):
            expected[:, t] = runner.step(token, np.full(B, t, np.int64))
            token = path[:, t] = head.greedy(expected[:, t])
        other = Stepper(variant, B)
        other.reset(cond, frames)
        inputs = np.concatenate([np.full((B, 1), info.start_token, np.int64), path[:, :steps - 1]], axis=1)  # (B, steps)
        chosen = head.greedy(prefill(other, inputs, np.zeros(B, np.int64)))  # (B, steps)
    differs = chosen != path[:, :steps]
    tied = head.level_log_probs(expected, chosen) >= head.level_log_probs(expected, path[:, :steps]) - NEAR_TIE
    return int((differs & ~tied).sum()), int((differs & tied).sum()), steps
