"""An exported graph in onnxruntime's ORT format, for its mobile and reduced-size builds.

    arexport ort MODEL.onnx [--out FILE.ort] [--force] [--json]

writes ``FILE.ort`` (default: MODEL.ort beside MODEL.onnx) and, beside it, ``FILE.required_operators.config``:
the operators the graph needs, one ``domain;opset;Op,Op`` line per opset, which onnxruntime's build script
takes as ``--include_ops_by_config`` to compile only those kernels. Both come from onnxruntime's own converter
(``onnxruntime.tools.convert_onnx_models_to_ort``, style 'Fixed', level 'all': the graph is optimized for the
CPU execution provider, as onnxruntime optimizes the .onnx when it loads it, and saved so). It runs in a
temporary folder, so nothing but the two files appears beside the output, and they appear together or not
at all (``write_together``).

The source must be a graph of this contract (``arrun.session.open_model``: metadata of the format version
this runtime reads, inputs and outputs as it promises). The converted file must carry the same metadata: it
is opened the same way, and ``ConversionError`` if any key or the graph's inputs and outputs changed.
Torch-free: it needs onnxruntime and the arrun package only.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from arrun.contract.errors import ARError, UsageError, first_line
from arrun.contract.files import PendingFile, check_model_file, commit_together
from arrun.contract.schema import ModelInfo

ORT_SUFFIX = ".ort"
CONFIG_SUFFIX = ".required_operators.config"  # the name onnxruntime's converter gives one model's config


class ConversionError(ARError):
    """onnxruntime's converter failed, or its output lost what the contract needs (exit code 1)."""


@dataclass(frozen=True)
class OrtResult:
    """What ``convert_to_ort`` wrote: the .ort, its operator config, and the figures it reports."""
    path: Path
    config: Path
    source: Path
    info: ModelInfo
    onnx_bytes: int
    ort_bytes: int
    operators: dict[str, list[str]]  # 'domain;opset' -> operator types, as in the config
    seconds: float

    def to_dict(self) -> dict:
        return {"path": str(self.path), "config": str(self.config), "source": str(self.source),
                "family": self.info.family, "graph": self.info.graph, "precision": self.info.precision,
                "onnx_bytes": self.onnx_bytes, "ort_bytes": self.ort_bytes, "operators": self.operators,
                "operator_types": sum(len(ops) for ops in self.operators.values()), "seconds": self.seconds}


def config_path(ort_path: Path) -> Path:
    """The operator config written beside ``ort_path``: step.ort -> step.required_operators.config."""
    return ort_path.with_name(ort_path.name.removesuffix(ORT_SUFFIX) + CONFIG_SUFFIX)


def convert_to_ort(source: Path, out: Path | None = None, *, force: bool = False) -> OrtResult:
    """Convert the exported graph ``source`` (.onnx) to ``out`` (.ort; default beside it) and its operator
    config. UsageError for a source that is not a graph of this contract, a bad or taken output path (taken:
    unless ``force``) or a folder that cannot be written; ConversionError when onnxruntime fails or its file
    does not carry the source's metadata."""
    from arrun.session import open_model  # onnxruntime: after the quick path checks

    source = Path(source)
    check_model_file(source)
    if source.suffix.lower() != ".onnx":
        raise UsageError(f"{source} is not an .onnx file; give the .onnx graph written by `arexport onnx`")
    out = Path(out) if out is not None else source.with_suffix(ORT_SUFFIX)
    config = config_path(out)
    _check_outputs(out, config, force)
    start = time.perf_counter()
    model = open_model(source, command="arexport ort")  # the contract's checks, before any work
    metadata = model.session.get_modelmeta().custom_metadata_map
    pending: list[PendingFile] = []
    try:
        pending += [_pending(out), _pending(config)]  # nameless until committed: nothing left by a failure
        with tempfile.TemporaryDirectory(prefix="arexport-ort-") as work:
            ort_file, config_file = _run_converter(source, Path(work))
            _check_carried(ort_file, metadata, source)
            text = _named_config(config_file.read_text(), out.name)
            pending[0].file.write(ort_file.read_bytes())
            pending[1].file.write(text.encode())
        commit_together(pending)
    except BaseException as e:
        for file in pending:
            file.discard()
        if isinstance(e, OSError):
            raise ARError(f"cannot write {out} and its config ({e.strerror}); check the disk space and --out") from None
        raise
    return OrtResult(out, config, source, model.info, source.stat().st_size, out.stat().st_size,
                     parse_config(text), time.perf_counter() - start)


def parse_config(text: str) -> dict[str, list[str]]:
    """A required_operators config -> {'domain;opset': [operator types]} (comment lines skipped)."""
    operators = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            domain, opset, ops = line.strip().split(";", 2)
            operators[f"{domain};{opset}"] = ops.split(",")
    return operators


def _check_outputs(out: Path, config: Path, force: bool) -> None:
    if out.suffix != ORT_SUFFIX:
        raise UsageError(f"--out {out} does not end in {ORT_SUFFIX}; give a file name like {out.stem or 'model'}.ort")
    for path in (out, config):
        if path.is_dir():
            raise UsageError(f"output path {path} is a directory; give a file name with --out")
        if (path.exists() or path.is_symlink()) and not force:
            raise UsageError(f"{path} already exists; pass --force to overwrite it or choose another --out")
    if not out.parent.is_dir():
        raise UsageError(f"output directory {out.parent} does not exist or is not a directory; create it or "
                         "choose another --out")


def _pending(path: Path) -> PendingFile:
    try:
        return PendingFile(path)
    except OSError as e:
        raise UsageError(f"cannot write to {path.parent} ({e.strerror}); choose another --out") from None


def _run_converter(source: Path, work: Path) -> tuple[Path, Path]:
    """onnxruntime's converter on ``source`` (a single file: it reads nothing else beside it) -> (its .ort, its
    config), both written in ``work``. Its progress lines (print and logging) are swallowed; its failure is a
    ConversionError. (Its ORT_CONVERT_ONNX_MODELS_TO_ORT_OPTIMIZATION_LEVEL variable, if set, changes the level.)"""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    converted = work / "converted"
    chatter = io.StringIO()
    loggers = [logging.getLogger(name) for name in ("ort_format_model.utils", "ort_format_model")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        with contextlib.redirect_stdout(chatter):
            convert_onnx_models_to_ort(source, output_dir=converted, optimization_styles=[OptimizationStyle.Fixed])
    except Exception as e:  # onnxruntime's pybind errors, or the converter's own
        raise ConversionError(f"onnxruntime's converter failed on {source} ({first_line(e)}); "
                              "rerun with AR_DEBUG=1 for details") from None
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    ort_files, configs = sorted(converted.glob(f"*{ORT_SUFFIX}")), sorted(converted.glob("*.config"))
    if len(ort_files) != 1 or len(configs) != 1:
        raise ConversionError(f"onnxruntime's converter wrote {[p.name for p in converted.iterdir()]} for {source}, "
                              "not one .ort and its config; rerun with AR_DEBUG=1 for details")
    return ort_files[0], configs[0]


def _check_carried(ort_file: Path, metadata: dict[str, str], source: Path) -> None:
    """The .ort opens as a graph of this contract (inputs and outputs checked) with exactly the source's
    metadata_props, every key, the contract's and any other."""
    from arrun.session import open_model

    try:
        carried = open_model(ort_file, command="arexport ort").session.get_modelmeta().custom_metadata_map
    except UsageError as e:
        raise ConversionError(f"the ORT file converted from {source} does not open as the same model ({e}); "
                              "report it with the onnxruntime version") from None
    if carried != metadata:
        changed = sorted(k for k in {*metadata, *carried} if carried.get(k) != metadata.get(k))
        raise ConversionError(f"the ORT file converted from {source} changed the metadata ({', '.join(changed)}); "
                              "report it with the onnxruntime version")


def _named_config(text: str, ort_name: str) -> str:
    """The converter's config with its header naming ``ort_name`` instead of the temporary file it read."""
    lines = text.splitlines()
    body = [line for line in lines if not line.startswith("#")]
    return "\n".join(["# Generated from model/s:", f"# - {ort_name}", *body]) + "\n"


def ort_nodes(path: Path) -> list[tuple[str, str]]:
    """(domain, operator type) of every node of the ORT file at ``path``, subgraphs included (an ``If``'s
    branches), read with onnxruntime's generated FlatBuffers classes ('ai.onnx' for the default domain)."""
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs import AttributeType, InferenceSession

    def walk(graph):
        for i in range(graph.NodesLength()):
            node = graph.Nodes(i)
            yield node.Domain().decode() or "ai.onnx", node.OpType().decode()
            for a in range(node.AttributesLength()):
                attribute = node.Attributes(a)
                if attribute.Type() == AttributeType.AttributeType.GRAPH:
                    yield from walk(attribute.G())

    session = InferenceSession.InferenceSession.GetRootAs(Path(path).read_bytes(), 0)
    return list(walk(session.Model().Graph()))
