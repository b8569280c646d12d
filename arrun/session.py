"""Open an exported model: file checks, onnxruntime session on the asked provider, strict metadata read,
and the graph's inputs and outputs checked against the metadata, so later code binds by name safely."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from .contract.errors import ARError, UsageError, first_line
from .contract.files import check_model_file
from .contract.schema import (CONDITION_INPUT, FEATURES_INPUT, POSITION_INPUT, TOKEN_INPUT, TOKENS_OUTPUT,
                              UNIFORMS_INPUT, ModelInfo, SchemaError, variant_name)
from .kinds import DataKind, kind_of

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# An fp32 graph computes in float32 on the GPU too. onnxruntime's CUDA provider rounds the inputs of matrix
# products and convolutions to TF32 (10-bit mantissas) by default; on an H200 the shipped fp32 step graphs' logits
# then differed from the CPU's by 3e-4 to 7e-4 of their range (benchmarks/gpu_check.py, 2026-12-04), and these
# small per-step graphs are bound by kernel launches, not by the arithmetic TF32 speeds up.
PROVIDER_OPTIONS = {"CUDAExecutionProvider": {"use_tf32": "0"}}

GPU_HINT = ("install the GPU build of onnxruntime with `pip uninstall onnxruntime && pip install .[gpu]` "
            "on a machine with an NVIDIA driver, or use --provider cpu")
# What onnxruntime raises when a run fails: its pybind classes, and RuntimeError ("Error in execution: ...").
ORT_ERRORS = (_ort_state.Fail, _ort_state.InvalidArgument, _ort_state.RuntimeException, _ort_state.EPFail,
              _ort_state.NotImplemented, _ort_state.InvalidGraph, _ort_state.EngineError, RuntimeError)
MAX_THREADS = 4 * (os.cpu_count() or 1)
_ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)", "float64": "tensor(double)"}
# onnxruntime's own warnings (e.g. "Failed to persist telemetry device ID" where $HOME is read-only) would
# garble arrun's output; arrun reports every failure itself, and AR_DEBUG=1 shows onnxruntime's log.
ort.set_default_logger_severity(2 if os.environ.get("AR_DEBUG") == "1" else 3)


@dataclass(frozen=True)
class Model:
    """A loaded model: its metadata, its data kind's adapter and a session whose I/O match it."""
    path: Path
    info: ModelInfo
    kind: DataKind
    session: ort.InferenceSession
    provider: str  # 'cpu' | 'cuda'


def open_model(path: Path, *, provider: str = "cpu", threads: int = 1, graph: tuple[str, ...] = (),
               command: str = "arrun") -> Model:
    """Load ``path`` on ``provider`` ('cpu' | 'cuda') with ``threads`` intra-op threads (0: all cores).

    graph: the graph kinds the command takes ('step', 'full', 'chunk'), () for any.
    Raises UsageError for a bad file, metadata or graph, ARError when the provider cannot run."""
    path = Path(path)
    check_model_file(path)
    if provider not in PROVIDERS:
        raise UsageError(f"unknown provider {provider!r}; use cpu or cuda")
    if not 0 <= threads <= MAX_THREADS:
        raise UsageError(f"--threads must be in 0..{MAX_THREADS} (0 = one per core), got {threads}")
    wanted = PROVIDERS[provider]
    available = wanted in ort.get_available_providers()
    if available and provider == "cuda" and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA and cuDNN from the nvidia-* packages where no system install has them (>= 1.21)
    session = _create_session(path, wanted if available else PROVIDERS["cpu"], threads)
    info = _read_info(session, path)
    if info.precision == "int8" and provider != "cpu":
        raise UsageError(f"{path} is the int8 variant, for the CPU provider ({wanted} has no kernels for its "
                         f"dynamic quantization); with --provider {provider} use {variant_name(path.name, 'fp16')} "
                         f"or {variant_name(path.name, 'fp32')}")
    if not available:
        if info.precision == "fp16":
            raise ARError(f"this onnxruntime ({ort.__version__}) has no {wanted}, and {path.name} is the fp16 variant "
                          f"made for it; on the CPU use {variant_name(path.name, 'fp32')} or "
                          f"{variant_name(path.name, 'int8')}, or {GPU_HINT}")
        raise ARError(f"this onnxruntime ({ort.__version__}) has no {wanted} "
                      f"(it offers {', '.join(ort.get_available_providers())}); {GPU_HINT}")
    if session.get_providers()[0] != wanted:
        raise ARError(f"onnxruntime could not start {wanted} (the session runs on "
                      f"{', '.join(session.get_providers())}; check the driver, CUDA and cuDNN); {GPU_HINT}")
    try:
        kind = kind_of(info, str(path))
    except SchemaError as e:
        raise UsageError(str(e)) from None
    check_graph(session, info, path)
    if graph and info.graph not in graph:
        raise UsageError(f"{path} is a {info.graph} graph and `{command}` needs the {' or '.join(graph)} graph; "
                         f"export it with `arexport onnx CHECKPOINT_DIR --{graph[0]}-graph`")
    return Model(path, info, kind, session, provider)


def _read_info(session: ort.InferenceSession, path: Path) -> ModelInfo:
    try:
        return ModelInfo.from_metadata(session.get_modelmeta().custom_metadata_map, source=str(path))
    except SchemaError as e:
        raise UsageError(str(e)) from None


def session_providers(provider: str) -> list[tuple[str, dict]]:
    """The ``providers`` argument of an InferenceSession on ``provider`` (an onnxruntime name), with its options."""
    return [(provider, PROVIDER_OPTIONS.get(provider, {}))]


def _create_session(path: Path, provider: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # arrun reports every failure itself in one line; onnxruntime's own log only with AR_DEBUG=1.
    options.log_severity_level = 2 if os.environ.get("AR_DEBUG") == "1" else 4
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle threads spinning between steps steal the core the Python loop needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=session_providers(provider))
    except Exception as e:  # onnxruntime raises its own pybind classes (InvalidProtobuf, Fail, ...)
        first = first_line(e, 300)
        if provider != "CPUExecutionProvider" and "cuda" in first.lower():
            raise ARError(f"onnxruntime could not start {provider} ({first}); {GPU_HINT}") from None
        raise UsageError(f"{path} is not a loadable ONNX model ({first}); "
                         "re-export it with `arexport onnx`") from None


def check_graph(session: ort.InferenceSession, info: ModelInfo, path: Path) -> None:
    """The session's inputs and outputs must be exactly those the metadata promises, with the right
    dtypes and, where the graph fixes them, shapes; otherwise UsageError naming the first mismatch."""
    inputs = {a.name: a for a in session.get_inputs()}
    outputs = {a.name: a for a in session.get_outputs()}
    problems = (_name_problems("inputs", inputs, info.input_names())
                + _name_problems("outputs", outputs, info.output_names()))
    if not problems:
        want = _expected_args(info)
        problems = [p for arg in [*inputs.values(), *outputs.values()] if (p := _arg_problem(arg, *want[arg.name]))]
    if problems:
        raise UsageError(f"the graph of {path} disagrees with its metadata ({problems[0]}); "
                         "re-export it with `arexport onnx`")


def _expected_args(info: ModelInfo) -> dict[str, tuple[str, list]]:
    """Graph input/output name -> (onnxruntime type, shape with None for dynamic dimensions)."""
    rank = 2 if info.graph_io.sequence or info.step_tokens > 1 else 1  # (B, T) / (B, s) or (B,)
    mels = info.features.n_mels if info.features else 0
    want = {TOKEN_INPUT: ("tensor(int64)", [None] * rank), CONDITION_INPUT: ("tensor(int64)", [None]),
            POSITION_INPUT: ("tensor(int64)", [None]), info.output_name: ("tensor(float)", [None] * rank + [info.output_width]),
            FEATURES_INPUT: ("tensor(float)", [None, None, mels] if info.graph_io.frames else [None, mels]),
            UNIFORMS_INPUT: ("tensor(double)", [None, None]), TOKENS_OUTPUT: ("tensor(int64)", [None, None])}
    for s in info.state:
        want[s.input] = want[s.output] = (_ORT_TYPES.get(s.dtype, s.dtype), [None, *s.shape])
    return want


def _name_problems(kind: str, actual: dict, expected: list[str]) -> list[str]:
    missing = [n for n in expected if n not in actual]
    extra = [n for n in actual if n not in expected]
    return ([f"{kind} missing: {', '.join(missing)}"] if missing else []) + \
           ([f"unexpected {kind}: {', '.join(extra)}"] if extra else [])


def _arg_problem(arg, dtype: str, shape: list) -> str | None:
    """shape: None where the dimension is dynamic (batch, time) or not checked."""
    if arg.type != dtype:
        return f"{arg.name} is {arg.type}, expected {dtype}"
    if arg.shape is None or len(arg.shape) != len(shape):
        return f"{arg.name} has shape {arg.shape}, expected rank {len(shape)}"
    for have, want in zip(arg.shape, shape):
        if want is not None and isinstance(have, int) and have != want:
            return f"{arg.name} has shape {arg.shape}, expected {['B' if w is None else w for w in shape]}"
    return None
