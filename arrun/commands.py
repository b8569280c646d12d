"""The workers behind the CLI: keyword-only, return the --json record as a dict, raise UsageError or ARError.

Each opens and checks the model first, then checks every option against it, and only then writes or
runs anything, so a bad input costs no time and leaves no file.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from .bench import bench as run_bench
from .contract.codecs import read_wav_tokens
from .contract.errors import ARError, Interrupted, UsageError, first_line
from .contract.features import mulaw_features, read_features
from .generate import SampleOptions, check_condition, check_memory, class_id, generate, make_plan
from .kinds import load_sequences
from .progress import Progress
from .score import score as run_score
from .session import ORT_ERRORS, Model, open_model

MAX_BENCH_BATCH = 65_536
MAX_BENCH_STEPS = 10_000_000

# the graph kinds each command takes (its ``open_model`` call; compress's in arrun.compress.workers);
# vocode takes vocoders only, compress and decompress models that need no features, of a kind they code
COMMAND_GRAPHS = {"sample": ("step", "chunk"), "score": ("full", "step"), "bench": ("step", "chunk"),
                  "vocode": ("chunk", "step"), "compress": ("step",), "decompress": ("step",)}


def sample(model_path: Path, *, options: SampleOptions, provider: str = "cpu", threads: int = 1,
           out: Path | None = None, stream: TextIO | None = None, progress: bool = False,
           features: Path | None = None, prompts: Path | None = None) -> dict:
    """Generate samples into files (and text into ``stream`` as it comes) -> the summary record. A vocoder
    turns the frames of ``features`` (a .npy) into audio; ``prompts`` is a UTF-8 file of prompts, one per line,
    in place of ``options.prompt``."""
    model = open_model(model_path, provider=provider, threads=threads, graph=COMMAND_GRAPHS["sample"],
                       command="arrun sample")
    if prompts is not None:
        if options.prompt:
            raise UsageError("--prompt and --prompts both give prompts; use one of them")
        options = replace(options, prompt=read_prompts(prompts))
    if features is not None:
        if not model.info.features:
            raise UsageError(f"{model_path} is not a vocoder and takes no features; drop --features")
        options = replace(options, features=read_features(features, model.info.features))
    return _generate(model, options, out, stream, progress)


MAX_PROMPTS_BYTES = 64 << 20


def read_prompts(path: Path) -> tuple[str, ...]:
    """A UTF-8 text file -> its lines, one prompt each (an empty line is an empty prompt; the newline ending
    the last line ends it). UsageError for a file that cannot be read or is not UTF-8."""
    path = Path(path)
    try:
        if path.is_dir():
            raise UsageError(f"--prompts {path} is a folder; give a UTF-8 text file with one prompt per line")
        if path.stat().st_size > MAX_PROMPTS_BYTES:
            raise UsageError(f"--prompts {path} is larger than {MAX_PROMPTS_BYTES >> 20} MiB; give fewer prompts")
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise UsageError(f"cannot read --prompts {path} ({e.strerror}); check the path") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"--prompts {path} is not UTF-8 text (byte {e.start}); give a UTF-8 text file") from None
    lines = text.split("\n")
    if lines[-1] == "":  # the newline ending the last line
        lines.pop()
    return tuple(line.removesuffix("\r") for line in lines)


def vocode(model_path: Path, wav: Path, *, seed: int = 0, provider: str = "cpu", threads: int = 1,
           out: Path | None = None, progress: bool = False) -> dict:
    """Analyse ``wav`` (PCM or mu-law, any rate and channels: coded as ``read_wav_tokens`` says) into the vocoder's
    features and synthesise them -> the summary record; the output has the input's length at the model's rate.
    Its real-time factor is end to end: reading, resampling, analysis, synthesis and writing, per second of
    audio."""
    model = open_model(model_path, provider=provider, threads=threads, graph=COMMAND_GRAPHS["vocode"],
                       command="arrun vocode")
    info = model.info
    if not info.features:
        raise UsageError(f"{model_path} is not a vocoder (it takes no features); give one exported from a checkpoint "
                         "trained with mel_bins > 0, e.g. models/speech-vocoder/chunk.onnx")
    start = time.perf_counter()
    codes = read_wav_tokens(Path(wav), info.vocab_size, info.sample_rate)  # (T,); an empty WAV is refused here
    frames = mulaw_features(codes, info.features, info.vocab_size)  # (F, M)
    analysis = time.perf_counter() - start
    options = SampleOptions(seed=seed, length=len(codes), features=frames)
    record = _generate(model, options, out or Path("vocoded.wav"), None, progress)
    seconds = time.perf_counter() - start
    return {**record, "input": str(wav), "frames": len(frames), "analysis_seconds": analysis,
            "seconds": seconds, "real_time_factor": seconds * info.sample_rate / len(codes)}


def _generate(model: Model, options: SampleOptions, out: Path | None, stream: TextIO | None, progress: bool) -> dict:
    info = model.info
    plan = make_plan(options, info)
    sink = model.kind.sink(out, info, plan, stream)
    showing = progress and not model.kind.shows_progress(stream)
    bar = Progress(len(plan.batches()) * plan.total_length, "sampling") if showing else None
    try:
        stats = generate(model, plan, options.sampling, options.seed, sink, bar)
        files = sink.commit()
    except BaseException as e:
        sink.discard()  # no partial output file, whatever stopped the run
        if isinstance(e, ORT_ERRORS):
            raise ARError(f"onnxruntime failed while sampling ({first_line(e)}); "
                          "rerun with AR_DEBUG=1 for details") from None
        if isinstance(e, KeyboardInterrupt):
            raise Interrupted("interrupted; no output was written") from None
        if isinstance(e, OSError):
            raise ARError(f"cannot write the output ({e.strerror}); check the disk space and --out") from None
        raise
    finally:
        if bar is not None:
            bar.close()
    record = {"model": str(model.path), "family": info.family, "graph": info.graph, "data_kind": info.data_kind,
              "provider": model.provider, "files": [str(p) for p in files], "num_samples": plan.n,
              "batch_size": plan.batch_size, "length": plan.length, "prompt_length": plan.prompt_length,
              "prompt_lengths": [len(p) for p in plan.prompts],
              "seed": options.seed, "temperature": options.sampling.temperature, "top_k": options.sampling.top_k,
              "top_p": options.sampling.top_p,
              "conditions": None if plan.conditions is None else plan.conditions.tolist(),
              "steps": stats.steps, "seconds": stats.seconds,
              "steps_per_s": stats.steps / stats.seconds if stats.seconds else None,
              "tokens_per_s": stats.tokens / stats.seconds if stats.seconds else None}
    rate = model.kind.real_time_rate(info)
    if rate and stats.tokens:  # audio: seconds of compute per second of sound, over the batch
        record["real_time_factor"] = stats.seconds * rate / stats.tokens
    record.update(sink.record())
    return record


MODEL_SUFFIXES = (".onnx", ".ort")


def folder_info(folder: Path) -> dict:
    """The model files in ``folder`` (``MODEL_SUFFIXES``, not recursive) -> {"folder", "graphs": one record per
    file: file, graph, precision, and the commands that take it (or the one-line error that refuses it)}."""
    try:
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in MODEL_SUFFIXES and p.is_file())
    except OSError as e:
        raise UsageError(f"cannot list {folder} ({e.strerror}); check its permissions") from None
    if not files:
        raise UsageError(f"{folder} holds no .onnx or .ort files; give a folder of exported models, e.g. "
                         "models/pydoc-transformer")
    graphs = []
    for path in files:
        try:
            model = open_model(path)
        except UsageError as e:
            graphs.append({"file": path.name, "graph": None, "precision": None, "commands": [], "error": str(e)})
            continue
        i, kind = model.info, model.kind
        takes = [c for c, kinds in COMMAND_GRAPHS.items() if i.graph in kinds
                 and (c != "vocode" or i.features)
                 and (c not in ("compress", "decompress") or (not i.features and kind.layout_format))]
        graphs.append({"file": path.name, "graph": i.graph, "precision": i.precision, "commands": takes})
    return {"folder": str(folder), "graphs": graphs}


def info(model_path: Path) -> dict:
    """Everything the file says about itself, checked against its graph; kind-specific fields only
    for its kind. A folder: ``folder_info``."""
    try:
        folder = Path(model_path).is_dir()
    except OSError:  # a name too long, say: open_model says what is wrong with it
        folder = False
    if folder:
        return folder_info(Path(model_path))
    model = open_model(model_path)
    i = model.info
    return {
        "path": str(model_path), "family": i.family, "graph": i.graph, "precision": i.precision,
        "data_kind": i.data_kind,
        "decoding": model.kind.describe(i), **model.kind.fields(i), "vocab_size": i.vocab_size,
        "output": i.head.description,
        "start_token": i.start_token, "max_length": i.max_length, "window": i.window,
        "receptive_field": i.receptive_field, "step_tokens": i.step_tokens, "data_name": i.data_name,
        "features": None if i.features is None else json.loads(i.features.to_json()),
        "num_classes": i.num_classes,
        "class_names": list(i.class_names), "unconditioned": i.unconditioned, "uses_position": i.uses_position,
        "state": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype, "input": s.input, "output": s.output,
                   "init": s.init, "in_place": s.in_place} for s in i.state],
        "inputs": [a.name for a in model.session.get_inputs()],
        "outputs": [a.name for a in model.session.get_outputs()],
        "opset": i.opset, "format_version": i.format_version, "min_onnxruntime": i.min_onnxruntime,
        "producer": i.producer, "bits_per_dim": None if math.isnan(i.bits_per_dim) else i.bits_per_dim,
        "bits_unit": model.kind.unit, "bits_split": i.bits_split,
        "source_sha256": i.source_sha256 or None, "precision_gate": i.gate or None,
    }


def score(model_path: Path, data: Path, *, condition: int | str | None = None, unknown: str = "error",
          threads: int = 0) -> dict:
    """Bits/dim of DATA under the model (full graph, or step graph by teacher forcing). Files in subfolders
    of a DATA folder are scored under the class their subfolder names; anything else under ``condition``."""
    model = open_model(model_path, threads=threads, graph=COMMAND_GRAPHS["score"], command="arrun score")
    labelled = model.kind.labels_classes(Path(data))
    if not labelled:  # the condition is checked before any reading
        condition = _required_condition(condition, model.info)
    items = load_sequences(data, model.info, unknown)
    names = {name for _, name in items}
    if names == {None}:  # a folder without class subfolders, or a file
        conditions = _required_condition(condition, model.info) if labelled else condition
    else:
        if None in names:
            raise UsageError(f"{data} mixes files in class subfolders with loose files; put every file in the "
                             "subfolder of its class, or none")
        if condition is not None:
            raise UsageError(f"the subfolders of {data} name the classes; drop --condition")
        conditions = [class_id(name, model.info, f"the subfolder {name!r}") for _, name in items]
    sequences = [seq for seq, _ in items]
    return {"model": str(model_path), "data": str(data), **run_score(model, sequences, conditions)}


def _required_condition(condition: int | str | None, info) -> int | None:
    """--condition by id or name, given exactly when the model is conditional -> the class id."""
    condition = class_id(condition, info)
    check_condition(condition, info, required=True)
    return condition


def bench(model_path: Path, *, provider: str = "cpu", batch_size: int = 1, steps: int = 600,
          threads: int = 1) -> dict:
    """Sampling-loop throughput and latency against the bare session.run loop."""
    if not (1 <= batch_size <= MAX_BENCH_BATCH and 1 <= steps <= MAX_BENCH_STEPS):
        raise UsageError(f"--batch-size may be at most {MAX_BENCH_BATCH:,} and --steps at most {MAX_BENCH_STEPS:,} "
                         f"(both >= 1), got {batch_size} and {steps}")
    model = open_model(model_path, provider=provider, threads=threads, graph=COMMAND_GRAPHS["bench"],
                       command="arrun bench")
    check_memory(model.kind, model.info, 0, batch_size, model.info.max_length or steps)
    try:
        return {"model": str(model_path), "family": model.info.family,
                **run_bench(model, batch_size=batch_size, steps=steps)}
    except ORT_ERRORS as e:
        raise ARError(f"onnxruntime failed while benchmarking ({first_line(e)}); rerun with AR_DEBUG=1 for details") from None
