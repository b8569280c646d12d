"""A model -> one self-describing .onnx graph (step, full or chunk: ``graphs.GRAPHS``), verified.

    arexport onnx CHECKPOINT_DIR --graph step|full|chunk [--out FILE] [--opset 18..20] [--no-verify] [--force] [--json]
    arexport verify MODEL.onnx CHECKPOINT_DIR [--json]

From Python, ``export_model(model, data, out)`` exports any ``ARModel`` (a family of this project or a user's
own: docs/families.md) with a description of its data (``DataInfo``), no checkpoint needed;
``export_onnx(CHECKPOINT_DIR)`` rebuilds the model from the checkpoint alone (its config.json) and calls it.

The graph is traced (``tracing.trace``); I/O names and metadata come from ``arrun.contract.schema``
(docs/contract.md), the state spec from the model itself (``ARModel.state_spec``: this module only serialises
it); the file is written to a ``PendingFile`` beside the target, verified (``verify.py``), and only then
renamed: a failure leaves no .onnx and no temporary file behind.

State: whatever the model declares in ``state_spec()`` (fixed shapes apart from the batch, so a runtime
allocates once; a step does O(layers) work; the graph is a pure function, so each step writes fresh state
tensors). Each family's module in ``artrain/models`` documents its layout.

Metadata (``arrun.contract.schema.Key``): state spec entries {name, input, output, shape ['batch', ...],
dtype, init} as the model declares them, and ``in_place`` true for each state verification proved safe to
update in one buffer (``inplace.py``; false everywhere with verify=False); ``ar.max_length`` the model's ``max_length`` (0 = unbounded);
``ar.start_token`` = V; ``ar.bits_per_dim`` and ``ar.bits_split`` from the model's evaluation ('nan' and ''
when it has none); producer versions of torch, onnx, onnxscript, onnxruntime and arexport.

Versions: opset 18 by default (18..20 accepted); the IR version is the lowest the opset allows (8 for
opset 18) after dropping the exporter's IR-10 node annotations (stack traces); weights stay inside the
one file. ``ar.min_onnxruntime`` records the oldest onnxruntime verified for the opset (MIN_ONNXRUNTIME).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime
import onnxscript
import torch

from artrain.checkpoint import CONFIG, METRICS, TRAINER, WEIGHTS, DataInfo, data_info, load_checkpoint
from artrain.models import ARModel
from arrun.contract.errors import UsageError, first_line
from arrun.contract.files import PendingFile
from arrun.contract.registry import UnknownEntry
from arrun.contract.schema import GRAPH_IO, ModelInfo, SchemaError
from arrun.kinds import kind_of

from . import __version__
from .graphs import GRAPHS, GraphKind
from .probe import check_family
from .constants import DEFAULT_OPSET, MIN_ONNXRUNTIME, SUPPORTED_OPSETS
from .verify import ExportError, VerifyReport, verify_onnx


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


@dataclass(frozen=True)
class _Source:
    """Who gave the model and its data, for the advice in a message."""
    name: str   # the model's origin, in schema messages
    data: str   # what holds the data description
    fix: str    # what to do when the model and its data do not fit


_PYTHON = _Source("the model", "the data description", "describe the data the model was trained on")
_CHECKPOINT = _Source("the checkpoint", "the checkpoint's data", "fix the checkpoint's config.json or train again")


def model_info(model: ARModel, data: DataInfo, graph: str, opset: int, *, bits_per_dim: float | None = None,
               bits_split: str = "", source: _Source = _PYTHON) -> ModelInfo:
    """The metadata contract of ``model`` (trained on ``data``; ``bits_per_dim`` of its evaluation on the
    ``bits_split`` split, if any) exported as ``graph``; UsageError when they do not fit or the family does not
    export that graph kind (``ARModel.graph_kinds``)."""
    kind, family, c = graph_kind(graph), model.family, model.config
    if data.levels != c.vocab_size:
        raise UsageError(f"{source.data} has {data.levels} levels but its {family} model {c.vocab_size} outputs; {source.fix}")
    if model.fixed_length and model.fixed_length != math.prod(data.image_shape or (0,)):
        raise UsageError(f"{source.data}'s images are {data.image_shape} but its {family} model takes "
                         f"{model.fixed_length} pixels; {source.fix}")
    if graph not in model.graph_kinds:
        raise UsageError(f"a {graph} graph {kind.needs}; the {family} family exports {', '.join(model.graph_kinds)} "
                         "graphs (its graph_kinds): export its step graph instead (--graph step)")
    head = model.output_head
    io = GRAPH_IO[graph]
    if io.samples and not head.samples_in_graph:
        raise UsageError(f"a {graph} graph samples a softmax head; this {family} has a {head.description} head: "
                         "export its step graph instead (--graph step; arrun samples it in numpy)")
    info = ModelInfo(
        family=family, graph=graph, data_kind=data.kind, vocab_size=c.vocab_size, start_token=c.vocab_size,
        max_length=model.max_length, state=model.state_spec() if io.stateful else (), window=model.window,
        receptive_field=model.receptive_field, step_tokens=model.step_tokens if kind.prefill else 1,
        data_name=Path(data.name).name,  # a user's path: no local folders
        features=model.feature_spec,
        image_shape=tuple(data.image_shape or ()),
        alphabet=data.alphabet or "", sample_rate=data.sample_rate or 0, num_classes=c.num_classes,
        kind_fields=dict(data.kind_fields),
        class_names=tuple(data.class_names) if c.num_classes else (),
        unconditioned=data.unconditioned if c.num_classes and data.unconditioned >= 0 else None,
        uses_position=io.stateful and (model.uses_position or io.samples),  # a chunk starts at `position`
        bits_per_dim=math.nan if bits_per_dim is None else float(bits_per_dim), bits_split=bits_split,
        opset=opset, min_onnxruntime=MIN_ONNXRUNTIME[opset], producer=_producer_versions(), output=head.spec)
    try:
        info.validate(source.name)
        kind_of(info, source.name)
    except SchemaError as e:
        problems = str(e).rsplit("; re-export", 1)[0]  # the schema's advice is for files, not models
        raise UsageError(f"{problems}; {source.fix}") from None
    return info


def graph_kind(graph: str) -> GraphKind:
    """The entry of ``graph`` in ``GRAPHS``; UsageError naming the kinds there are."""
    try:
        return GRAPHS[graph]
    except UnknownEntry:
        raise UsageError(f"unknown graph kind {graph!r}; choose one of {', '.join(GRAPHS)}") from None


def to_onnx(model: ARModel, info: ModelInfo) -> onnx.ModelProto:
    """Build ``model`` as the ``info.graph`` graph -> ModelProto with the metadata, at the lowest IR version its
    opset allows."""
    proto = GRAPHS[info.graph].build(model, info)
    set_metadata(proto, info)
    return proto


def set_metadata(proto: onnx.ModelProto, info: ModelInfo) -> None:
    """Replace ``proto``'s metadata with the contract of ``info``."""
    del proto.metadata_props[:]
    for key, value in info.to_metadata().items():
        proto.metadata_props.add(key=key, value=value)


def export_model(model: ARModel, data: DataInfo, out: Path | str, *, graph: str = "step", opset: int = DEFAULT_OPSET,
                 verify: bool = True, force: bool = False, bits_per_dim: float | None = None,
                 bits_split: str = "") -> ExportResult:
    """Export ``model`` (any family implementing docs/families.md, on the CPU; put in eval mode) as the ``graph``
    graph ('step' | 'full' | 'chunk', those its family declares in ``graph_kinds``) to the file ``out`` and,
    unless verify=False, prove parity with the eager model before the file appears. ``data`` says what the
    model was trained on (levels, kind, and how its elements decode); ``bits_per_dim`` (its evaluation on the
    ``bits_split`` split) is recorded in the metadata when given.

    Raises UsageError (a model or data that do not fit, a bad output path, opset or graph) or ExportError
    (export or verification failed; ParityError, with the report, when the graph does not reproduce the
    model); in both cases nothing is left at ``out`` or beside it. The file is what `arexport onnx` writes:
    arrun runs it.
    """
    if not isinstance(model, ARModel):
        raise UsageError(f"export_model takes an ARModel (docs/families.md), not {type(model).__name__}; "
                         "subclass artrain.models.ARModel")
    if not isinstance(data, DataInfo):
        raise UsageError(f"export_model takes its data as an arexport.DataInfo, not {type(data).__name__}; "
                         "describe the data with DataInfo(name, kind, levels, ...)")
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise UsageError("export_model traces on the CPU; pass model.cpu()")
    _check_opset(opset)
    return _export(model.eval(), data, Path(out), graph, opset, verify, force, bits_per_dim, bits_split, _PYTHON)


def export_onnx(checkpoint_dir: Path | str, out: Path | str | None = None, *, graph: str = "step",
                opset: int = DEFAULT_OPSET, force: bool = False, verify: bool = True) -> ExportResult:
    """Export the checkpoint's model as the ``graph`` graph to ``out`` (default CHECKPOINT_DIR/<graph>.onnx):
    ``export_model`` of the model and data its config.json describes, with its evaluation.

    Raises UsageError (bad checkpoint, output path, opset, graph) or ExportError (export or verification
    failed); in both cases nothing is left at ``out`` or beside it.
    """
    graph_kind(graph)
    _check_opset(opset)
    checkpoint_dir = Path(checkpoint_dir)
    model, config = load_checkpoint(checkpoint_dir)
    out = Path(out) if out is not None else checkpoint_dir / f"{graph}.onnx"
    if out.parent.resolve() == checkpoint_dir.resolve() and out.name in (WEIGHTS, CONFIG, TRAINER, METRICS):
        raise UsageError(f"--out {out} would replace a file of the checkpoint; choose another name")
    evaluation = config.get("eval") or {}
    return _export(model, data_info(config), out, graph, opset, verify, force, evaluation.get("bits_per_dim"),
                   evaluation.get("split") or "", _CHECKPOINT)


def _export(model: ARModel, data: DataInfo, out: Path, graph: str, opset: int, verify: bool, force: bool,
            bits_per_dim: float | None, bits_split: str, source: _Source) -> ExportResult:
    """Describe, run the family once (``probe``), trace, write to a pending file beside ``out``, verify, rename."""
    info = model_info(model, data, graph, opset, bits_per_dim=bits_per_dim, bits_split=bits_split, source=source)
    check_output(out, force)
    check_family(model, info)  # the family's own faults in one line, before the exporter hides them
    try:
        pending = PendingFile(out)
    except OSError as e:
        raise UsageError(f"cannot write to {out.parent} ({e.strerror}); choose another --out") from None
    with pending:
        start = time.perf_counter()
        proto = to_onnx(model, info)
        seconds = time.perf_counter() - start
        pending.file.close()
        _save(proto, pending.tmp, out)
        report = verify_onnx(pending.tmp, model, name=str(out)) if verify else None
        if report and any(v.in_place for v in report.in_place):  # proved: say so in the metadata
            info = declare_in_place(info, report.in_place)
            set_metadata(proto, info)
            _save(proto, pending.tmp, out)
    return ExportResult(out, info, out.stat().st_size, proto.ir_version, seconds, report)


def declare_in_place(info: ModelInfo, verdicts) -> ModelInfo:
    """``info`` with each state's ``in_place`` as the proof found it (``verify.prove_in_place``)."""
    proved = {v.name: v.in_place for v in verdicts}
    return dataclasses.replace(info, state=tuple(dataclasses.replace(s, in_place=proved[s.name]) for s in info.state))


def _save(proto: onnx.ModelProto, path: Path, out: Path) -> None:
    try:
        onnx.save_model(proto, path, save_as_external_data=False)
    except (OSError, ValueError) as e:
        raise ExportError(f"could not write {out} ({first_line(e)}); check the disk space and the path") from e


def _check_opset(opset: int) -> None:
    if opset not in SUPPORTED_OPSETS:
        raise UsageError(f"opset {opset} is not supported; choose one of {SUPPORTED_OPSETS[0]}..{SUPPORTED_OPSETS[-1]} "
                         f"(default {DEFAULT_OPSET})")


def check_output(out: Path, force: bool) -> None:
    """``out`` may be (over)written: not a directory, not there unless ``force``, in an existing folder."""
    if out.is_dir():
        raise UsageError(f"output path {out} is a directory; give a file name with --out")
    if out.exists() and not force:
        raise UsageError(f"{out} already exists; pass --force to overwrite it or choose another --out")
    if not out.parent.is_dir():
        raise UsageError(f"output directory {out.parent} does not exist or is not a directory; create it or "
                         "choose another --out")


def _producer_versions() -> dict[str, str]:
    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__,
            "onnxruntime": onnxruntime.__version__, "arexport": __version__}
