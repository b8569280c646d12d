"""onnxruntime compatibility matrix: every shipped graph run on several onnxruntime releases, compared with the newest.

    python benchmarks/ort_compat.py [--versions 1.14.1 1.17.3 1.20.1 newest] [--models models]
                                    [--work DIR] [--json OUT]

Driver (the default): for each version, a throwaway virtual environment in --work (default: a temporary
folder, deleted afterwards; one that already holds the version is reused) gets ``onnxruntime==V`` and numpy
(``numpy<2`` before 1.19). "newest" is the newest release ``pip index versions`` lists. The running interpreter
is tried first, then python3.10 and python3.11 from PATH (pyenv shims included); a version no interpreter can
install is a row of "not installable". In each environment this script runs again as a worker on every
``*.onnx`` under ``models/*/`` and the driver compares its arrays with those of the newest version tested:
max |difference| within TOLERANCE of the graph's precision (by file name: 1e-4 fp32, 0.25 int8, 1e-2 fp16);
a chunk graph's sampled tokens must be equal; and a step graph declaring state in place (format 6) must give,
on that release, the same outputs bit for bit with one buffer bound as both in.X and out.X for every such state
as with separate buffers (the aliasing check, "alias =" in a cell; a difference fails the cell). It prints one Markdown table (graph, IR version, opset, a cell per version: "ok 2e-07",
"fail: <reason>", "not installable") and, per precision group (fp32 / int8 / fp16 by file name), the oldest
version from which every tested version passes every graph of the group: the metadata's min onnxruntime.
Versions that could not be installed are left out of that figure. --json OUT writes the whole matrix.

Worker (``--worker OUTDIR GRAPH...``): imports numpy and onnxruntime only (no arrun, torch or onnx), so it runs
on any release; the loop is written here, independently of arrun's. Per graph: CPU provider, one thread,
batch 2, inputs built from the session's input list and the ``ar.*`` metadata (arrun/contract/schema.py):
- step: 48 teacher-forced steps (input_ids (B,) or (B, 1) when ar.step_tokens > 1), state fed back by name,
  row b at its own position (``position`` (B,)): it restarts from the initial state at step ROW_OFFSETS[b]
  -> logits (B, 48, V); then, where ``ar.state`` declares ``in_place`` states, the same rollout through IO
  binding with one OrtValue bound as both input and output of each of them, compared bit for bit (logits and
  the final state);
- full: one call on (B, T) tokens, T = H*W for images else 64 -> logits (B, T, V);
- chunk: two calls of 32 seeded uniforms, state and last token fed back -> tokens (B, 64) int64.
Tokens are seeded in [0, V) with the start token at position 0; condition [0, 1] mod the number of classes;
features (B, F, n_mels) = standard normal * 2 - 4, seeded. It writes OUTDIR/<safe name>.npy per graph and
OUTDIR/results.json: {"onnxruntime", "numpy", "graphs": {path: {"status": "ok" | one-line error, "array",
"aliasing": null (no state in place) | "equal" | "differs: ..." | one-line error}}}.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DEFAULT_VERSIONS = ("1.14.1", "1.17.3", "1.20.1", "newest")
FALLBACK_PYTHONS = ("python3.10", "python3.11")
BATCH, STEPS, FULL_LENGTH, CHUNK, SEED = 2, 48, 64, 32, 0
ROW_OFFSETS = (0, 3)  # the step at which row b starts its compared sequence (before it: a stream of its own)
# int8: activations are quantized at run time, and a value on a rounding boundary moves one step with the
# kernel; onnxruntime 1.32 itself differs by 0.18 in the Transformer's logits between its fused
# (DynamicQuantizeLinear + MatMulInteger as one kernel) and unfused runs of the same file.
TOLERANCE = {"fp32": 1e-4, "int8": 0.25, "fp16": 1e-2}
WORKER_TIMEOUT_S = 1800


class CompatError(Exception):
    """A version could not be set up or run; the message is one line."""


# ---------------------------------------------------------------- worker: numpy + onnxruntime only

def run_worker(outdir: Path, graphs: list[str]) -> None:
    import onnxruntime as ort
    outdir.mkdir(parents=True, exist_ok=True)
    record = {"onnxruntime": ort.__version__, "numpy": np.__version__, "graphs": {}}
    for graph in graphs:
        try:
            result, aliasing = run_graph(ort, graph)
            array = re.sub(r"[^\w.-]+", "_", graph).strip("_") + ".npy"
            np.save(outdir / array, result)
            record["graphs"][graph] = {"status": "ok", "array": array, "aliasing": aliasing}
        except Exception as e:  # any failure of this release on this graph is a result, not a crash
            record["graphs"][graph] = {"status": one_line(e)}
        # rewritten after every graph so a crash of the process keeps what ran before it
        (outdir / "results.json").write_text(json.dumps(record, indent=1))


def run_graph(ort, path: str) -> tuple[np.ndarray, str | None]:
    """-> (the graph's outputs, the aliasing check: None where no state is declared in place)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    probe = Probe(session)
    kind = probe.meta["ar.graph"]
    if kind != "step":
        return (probe.full() if kind == "full" else probe.chunks()), None
    logits = probe.steps()
    in_place = [s["input"] for s in json.loads(probe.meta["ar.state"]) if s.get("in_place")]
    if not in_place:
        return logits, None
    try:
        aliased = Probe(session, ort)
        same = aliased.steps(alias=in_place)  # the same seeded inputs
        diffs = [(name, a, b) for name, a, b in [("logits", logits, same)] + [
            (name, probe.feeds[name], aliased.feeds[name]) for name in in_place] if a.tobytes() != b.tobytes()]
        aliasing = "equal" if not diffs else "differs: " + ", ".join(
            f"{name} max Δ {np.abs(a.astype(np.float64) - b).max():.1e}" for name, a, b in diffs)
    except Exception as e:
        aliasing = one_line(e)
    return logits, aliasing


class Probe:
    """One graph's session and the seeded inputs its ``ar.*`` metadata asks for; state is fed back by name."""

    def __init__(self, session, ort=None) -> None:
        self.session, self.ort = session, ort  # ort: for IO binding (the aliased rollout)
        self.meta = meta = session.get_modelmeta().custom_metadata_map
        self.inputs = {i.name: i for i in session.get_inputs()}
        self.vocab = int(meta["ar.vocab_size"])
        self.output = session.get_outputs()[0].name  # 'logits', or 'mixture' for a mixture head
        self.start = np.full(BATCH, int(meta["ar.start_token"]), dtype=np.int64)  # (B,)
        self.rng = np.random.default_rng(SEED)
        features = json.loads(meta["ar.features"]) if meta["ar.features"] else None
        self.hop, self.n_mels = (features["hop"], features["n_mels"]) if features else (0, 0)
        specs = json.loads(meta["ar.state"])  # [{name, input, output, shape: ["batch", ...], dtype, init, in_place}]
        self.state = [(s["input"], s["output"]) for s in specs]
        self.init = {s["input"]: s["init"] for s in specs}
        self.bound = {}  # state input -> the one OrtValue bound as its input and output (the aliased rollout)
        self.feeds = {s["input"]: np.full((BATCH, *s["shape"][1:]), s["init"], dtype=s["dtype"]) for s in specs}
        if "condition" in self.inputs:
            self.feeds["condition"] = np.arange(BATCH, dtype=np.int64) % int(meta["ar.condition.num_classes"])

    def run(self, output: str, **feeds) -> np.ndarray:
        """One call: ``feeds`` update the standing ones; returns ``output`` and keeps the new state."""
        self.feeds.update({name: np.array(value, order="C") for name, value in feeds.items() if value is not None})
        unknown = sorted(set(self.inputs) - set(self.feeds))
        if unknown:
            raise ValueError(f"the graph takes inputs this loop does not know: {', '.join(unknown)}")
        feeds = {name: value for name, value in self.feeds.items() if name in self.inputs}
        if self.bound:
            return self.run_bound(output, feeds)
        first, *state = self.session.run([output] + [out for _, out in self.state], feeds)
        self.feeds.update(zip([name for name, _ in self.state], state))
        return first

    def run_bound(self, output: str, feeds: dict) -> np.ndarray:
        """One call through IO binding: each bound state's OrtValue (sharing its array in ``feeds``) is both
        input and output; the other states are fed and fetched."""
        io = self.session.io_binding()
        for name, value in feeds.items():
            if name in self.bound:
                io.bind_ortvalue_input(name, self.bound[name])
            else:
                io.bind_cpu_input(name, value)
        io.bind_output(output, "cpu")
        for name, out in self.state:
            if name in self.bound:
                io.bind_ortvalue_output(out, self.bound[name])
            else:
                io.bind_output(out, "cpu")
        self.session.run_with_iobinding(io)
        first, *state = io.copy_outputs_to_cpu()
        for (name, _), value in zip(self.state, state):
            if name not in self.bound:
                self.feeds[name] = value.copy()
        return first

    def restart_row(self, row: int) -> None:
        """Row ``row`` of every state back to its initial value (in the bound buffer itself where aliased)."""
        for name, _ in self.state:
            self.feeds[name][row] = self.init[name]

    def position(self, position) -> np.ndarray | None:
        """(B,) int64, a position per row (format 6), from one int or one per row."""
        return np.broadcast_to(np.asarray(position, np.int64), (BATCH,)).copy() if "position" in self.inputs else None

    def frames(self, length: int) -> np.ndarray | None:
        """(B, F, M) seeded log-mel-like frames covering ``length`` elements, or None without features."""
        if "features" not in self.inputs:
            return None
        shape = (BATCH, math.ceil(length / self.hop) + 1, self.n_mels)
        return (self.rng.standard_normal(shape) * 2 - 4).astype(np.float32)

    def tokens(self, length: int) -> np.ndarray:
        return self.rng.integers(0, self.vocab, (BATCH, length), dtype=np.int64)  # (B, length)

    def full(self) -> np.ndarray:
        """One call on (B, T) tokens: T = H*W for an image (a static length must agree), else FULL_LENGTH."""
        image = json.loads(self.meta["ar.data.image_shape"])
        length, declared = (math.prod(image) if image else FULL_LENGTH), self.inputs["input_ids"].shape[1]
        if isinstance(declared, int) and declared != length:
            raise ValueError(f"input_ids declares length {declared}, the metadata implies {length}")
        return self.run(self.output, input_ids=self.tokens(length), features=self.frames(length))  # (B, T, V)

    def steps(self, alias: list[str] = ()) -> np.ndarray:
        """STEPS teacher-forced calls (fewer if ar.max_length is shorter), row b restarting from the initial
        state at step ROW_OFFSETS[b] -> logits (B, steps, V). ``alias``: state inputs held in one buffer."""
        self.bound = {name: self.ort.OrtValue.ortvalue_from_numpy(self.feeds[name]) for name in alias}
        max_length = int(self.meta["ar.max_length"])
        steps = min(STEPS, max_length) if max_length else STEPS
        sequence = np.concatenate([self.start[:, None], self.tokens(steps - 1)], axis=1)  # (B, steps)
        frames, logits = self.frames(steps), []
        wide = int(self.meta["ar.step_tokens"]) > 1  # such a graph takes input_ids (B, s): here s = 1
        rows = np.arange(BATCH)
        for t in range(steps):
            for b in rows[np.array(ROW_OFFSETS[:BATCH]) == t]:
                self.restart_row(b)
            pos = np.where(t >= np.array(ROW_OFFSETS[:BATCH]), t - np.array(ROW_OFFSETS[:BATCH]), t)  # (B,)
            tokens = sequence[rows, pos]  # (B,) row b's element at pos[b] - 1
            step_logits = self.run(self.output, input_ids=tokens[:, None] if wide else tokens,
                                   position=self.position(pos),
                                   features=None if frames is None else frames[rows, pos // self.hop])  # (B, M)
            logits.append(step_logits.reshape(BATCH, -1))  # (B, W) from (B, W) or (B, 1, W)
        return np.stack(logits, axis=1)

    def chunks(self) -> np.ndarray:
        """Two calls of CHUNK seeded uniforms, the last token fed on -> sampled tokens (B, 2 * CHUNK) int64."""
        frames, previous, tokens = self.frames(2 * CHUNK), self.start, []
        for start in (0, CHUNK):
            chunk = self.run("tokens", input_ids=previous, position=self.position(start),
                             uniforms=self.rng.random((BATCH, CHUNK)),  # (B, N) float64
                             features=None if frames is None else  # the chunk's frames (B, F, M)
                             frames[:, start // self.hop:(start + CHUNK - 1) // self.hop + 1])
            tokens.append(chunk)  # (B, N)
            previous = chunk[:, -1]
        return np.concatenate(tokens, axis=1)


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)  # the status code repeats the type
    return f"{type(error).__name__}: {text}"[:300]


# ---------------------------------------------------------------- driver: environments

def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def newest_release() -> str:
    done = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "onnxruntime"],
                          capture_output=True, text=True, timeout=300)
    found = re.search(r"onnxruntime \(([^)]+)\)", done.stdout)
    if not found:
        raise CompatError(f"`pip index versions onnxruntime` found no release: {last_line(done.stderr)}")
    return found.group(1)


def interpreters() -> dict[str, str]:
    """{"3.11": path}: the running interpreter, then python3.10 / python3.11 from PATH as real paths (a pyenv
    shim is asked for the version its name says), each Python minor version once."""
    found = {"{}.{}".format(*sys.version_info[:2]): sys.executable}
    for name in FALLBACK_PYTHONS:
        minor = name.removeprefix("python")
        if minor in found or not shutil.which(name):
            continue
        probe = subprocess.run([name, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True,
                               env=dict(os.environ, PYENV_VERSION=minor))
        if probe.returncode == 0:
            found[minor] = probe.stdout.strip()
    return found


def environment(version: str, work: Path) -> dict:
    """A venv holding onnxruntime==version: reused when it already does, else built with the first interpreter
    pip can install it for. Returns {"python": its interpreter, "onnxruntime", "numpy", "python_version"[,
    "passed_over": why the interpreters tried before it failed]}; raises CompatError when none can."""
    venv = work / f"onnxruntime-{version}"
    if (installed := inspect(venv)) and installed["onnxruntime"] == version:
        return installed
    numpy = "numpy<2" if version_key(version) < (1, 19) else "numpy"
    reasons = []
    for minor, python in interpreters().items():
        shutil.rmtree(venv, ignore_errors=True)
        commands = [[python, "-m", "venv", str(venv)],
                    [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                     f"onnxruntime=={version}", numpy]]
        failed = None
        try:
            for command in commands:
                if (done := subprocess.run(command, capture_output=True, text=True, timeout=1200)).returncode:
                    failed = done
                    break
        except subprocess.TimeoutExpired as e:
            reasons.append(f"Python {minor}: {e}")
            continue
        if failed is None and (installed := inspect(venv)):
            return dict(installed, passed_over=reasons) if reasons else installed
        reasons.append(f"Python {minor}: {last_line(failed.stderr) if failed else 'onnxruntime does not import'}")
    shutil.rmtree(venv, ignore_errors=True)
    raise CompatError("; ".join(reasons))


def inspect(venv: Path) -> dict | None:
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    code = ("import json, platform, numpy, onnxruntime; print(json.dumps({'onnxruntime': onnxruntime.__version__, "
            "'numpy': numpy.__version__, 'python_version': platform.python_version()}))")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return dict(json.loads(done.stdout), python=str(python)) if done.returncode == 0 else None


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("WARNING")]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["no output"])[-1][:300]


def run_version(python: str, outdir: Path, graphs: list[Path]) -> dict:
    """Runs the worker on the graphs; when it dies (a release that segfaults on a graph), the graph it was on
    gets the cause and the worker starts again on the graphs after it."""
    merged, remaining = {}, [str(g) for g in graphs]
    while remaining:
        results = outdir / "results.json"
        results.unlink(missing_ok=True)
        try:
            done = subprocess.run([python, str(Path(__file__).resolve()), "--worker", str(outdir), *remaining],
                                  capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
            ending = exit_reason(done.returncode, done.stderr)
        except subprocess.TimeoutExpired:
            ending = f"the worker ran past {WORKER_TIMEOUT_S} s"
        record = json.loads(results.read_text()) if results.exists() else {"graphs": {}}
        merged = dict(record, graphs={**merged.get("graphs", {}), **record["graphs"]})
        remaining = [g for g in remaining if g not in merged["graphs"]]
        if remaining:  # graphs run in order, so the first one left is the one the worker died on
            merged["graphs"][remaining.pop(0)] = {"status": ending}
    return merged


def exit_reason(returncode: int, stderr: str) -> str:
    if returncode < 0:
        return f"the worker crashed ({signal.Signals(-returncode).name})"
    return f"the worker exited with code {returncode}: {last_line(stderr)}"


# ---------------------------------------------------------------- driver: comparison and report

def precision(graph: Path) -> str:
    return "fp16" if "fp16" in graph.name else "int8" if "int8" in graph.name else "fp32"


def graph_format(graph: Path) -> tuple[int | str, str]:
    """(IR version, opsets) read with the onnx package, which only the driver imports."""
    try:
        import onnx
        model = onnx.load(str(graph), load_external_data=False)
    except Exception as e:
        return "?", one_line(e)[:40]
    opsets = ", ".join(f"{o.domain} {o.version}" if o.domain else str(o.version) for o in model.opset_import)
    return model.ir_version, opsets


def compare(result: dict, reference: dict, outdirs: tuple[Path, Path], tolerance: float, *,
            is_reference: bool) -> dict:
    """One cell: {"passed": bool | None (no reference), "max_abs_diff", "reason"}."""
    if result["status"] != "ok":
        return {"passed": False, "reason": result["status"]}
    aliasing = result.get("aliasing")
    if aliasing not in (None, "equal"):
        return {"passed": False, "aliasing": aliasing, "reason": f"aliased rollout: {aliasing}"}
    cell = _compare_arrays(result, reference, outdirs, tolerance, is_reference=is_reference)
    return dict(cell, aliasing=aliasing)


def _compare_arrays(result: dict, reference: dict, outdirs: tuple[Path, Path], tolerance: float, *,
                    is_reference: bool) -> dict:
    if is_reference:
        return {"passed": True, "reason": "reference"}
    if reference["status"] != "ok":
        return {"passed": None, "reason": "no reference result"}
    mine, theirs = (np.load(d / r["array"]) for d, r in zip(outdirs, (result, reference)))
    if mine.shape != theirs.shape:
        return {"passed": False, "reason": f"shape {mine.shape} vs {theirs.shape} in the reference"}
    diff = float(np.max(np.abs(mine.astype(np.float64) - theirs.astype(np.float64)))) if mine.size else 0.0
    cell = {"max_abs_diff": diff}
    if mine.dtype.kind in "iu":  # sampled tokens of a chunk graph
        differing = int(np.sum(mine != theirs))
        return dict(cell, passed=not differing, reason=f"{differing}/{mine.size} tokens differ" if differing else "")
    passed = diff <= tolerance  # NaN fails
    return dict(cell, passed=passed, reason="" if passed else f"max Δ {diff:.1e} > {tolerance:.0e}")


def cell_text(cell: dict) -> str:
    if cell.get("not_installable"):
        return "not installable"
    if cell["passed"] is False:
        return "fail: " + cell["reason"][:100]
    alias = ", alias =" if cell.get("aliasing") == "equal" else ""
    if "max_abs_diff" not in cell:
        return "ok (" + cell["reason"] + ")" + alias
    return (f"ok {cell['max_abs_diff']:.0e}" if cell["max_abs_diff"] else "ok 0") + alias


def oldest_passing(matrix: dict, group: str) -> str | None:
    """The oldest installed version from which every installed version passes every graph of the group."""
    rows = [row for row in matrix["graphs"] if row["precision"] == group]
    oldest = None
    for version in sorted((v["version"] for v in matrix["versions"] if not v.get("error")), key=version_key,
                          reverse=True):
        if not all(row["cells"][version]["passed"] for row in rows):
            break
        oldest = version
    return oldest


def compatibility_matrix(*, versions: list[str], models: Path, work: Path) -> dict:
    graphs = sorted(models.glob("*/*.onnx"))
    if not graphs:
        raise CompatError(f"no graphs under {models}/*/; pass --models with the folder holding one folder per model")
    resolved, runs = resolve_versions(versions), {}
    for entry in resolved:
        if entry.get("error"):
            continue
        print(f"onnxruntime {entry['version']}: setting up and running", file=sys.stderr, flush=True)
        try:
            entry.update(environment(entry["version"], work))
        except CompatError as e:
            entry["error"] = str(e)
            continue
        outdir = work / f"results-{entry['version']}"
        shutil.rmtree(outdir, ignore_errors=True)
        runs[entry["version"]] = (outdir, run_version(entry["python"], outdir, [g.resolve() for g in graphs]))
    reference = max(runs, key=version_key, default=None)
    matrix = {"reference": reference, "versions": resolved,
              "graphs": [graph_row(graph, resolved, runs, reference) for graph in graphs]}
    groups = sorted({row["precision"] for row in matrix["graphs"]})
    matrix["min_onnxruntime"] = {group: oldest_passing(matrix, group) for group in groups}
    return matrix


def resolve_versions(versions: list[str]) -> list[dict]:
    """[{"requested", "version"[, "error"]}], "newest" looked up, each version once."""
    resolved = []
    for requested in dict.fromkeys(versions):
        try:
            version = newest_release() if requested == "newest" else requested
        except CompatError as e:
            resolved.append({"requested": requested, "version": requested, "error": str(e)})
            continue
        if version not in (v["version"] for v in resolved):
            resolved.append({"requested": requested, "version": version})
    return resolved


def graph_row(graph: Path, resolved: list[dict], runs: dict, reference: str | None) -> dict:
    ir_version, opsets = graph_format(graph)
    group, key = precision(graph), str(graph.resolve())
    row = {"graph": str(graph), "ir_version": ir_version, "opset": opsets, "precision": group,
           "tolerance": TOLERANCE[group], "cells": {}}
    for entry in resolved:
        version = entry["version"]
        if version not in runs:
            row["cells"][version] = {"passed": None, "not_installable": True, "reason": entry["error"]}
            continue
        (outdir, record), (ref_dir, ref_record) = runs[version], runs[reference]
        row["cells"][version] = compare(record["graphs"][key], ref_record["graphs"][key], (outdir, ref_dir),
                                        TOLERANCE[group], is_reference=version == reference)
    return row


def print_report(matrix: dict) -> None:
    versions = [v["version"] for v in matrix["versions"]]
    heads = [f"{v['version']} (newest)" if v["requested"] == "newest" else v["version"] for v in matrix["versions"]]
    print("| graph | IR | opset | " + " | ".join(heads) + " |")
    print("|---|---|---|" + "---|" * len(heads))
    for row in matrix["graphs"]:
        cells = [cell_text(row["cells"][v]) for v in versions]
        print(f"| {row['graph']} | {row['ir_version']} | {row['opset']} | " + " | ".join(cells) + " |")
    reference = f"onnxruntime {matrix['reference']}" if matrix["reference"] else "none (no version ran)"
    print(f"\nReference: {reference}; tolerance {', '.join(f'{v:g} ({k})' for k, v in TOLERANCE.items())}; "
          "chunk graphs: sampled tokens equal; 'alias =': the states declared in_place, each held in one buffer "
          "bound as input and output, give the separate-buffer outputs bit for bit on that release.")
    for v in matrix["versions"]:
        if v.get("error"):
            print(f"- {v['version']}: not installable ({v['error']})")
        else:
            passed_over = f" (not on {'; '.join(v['passed_over'])})" if v.get("passed_over") else ""
            print(f"- {v['version']}: Python {v['python_version']}, numpy {v['numpy']}{passed_over}")
    for group, version in matrix["min_onnxruntime"].items():
        print(f"Oldest onnxruntime passing every {group} graph: {version or 'none of the versions tested'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", nargs="+", default=list(DEFAULT_VERSIONS),
                        help="onnxruntime releases to test; 'newest' is the newest on the package index.")
    parser.add_argument("--models", type=Path, default=Path("models"), help="The folder holding one folder per model.")
    parser.add_argument("--work", type=Path, help="Keep the environments here (reused by later runs); "
                                                  "default: a temporary folder deleted afterwards.")
    parser.add_argument("--json", type=Path, help="Also write the whole matrix to this JSON file.")
    parser.add_argument("--worker", nargs="+", metavar="OUTDIR GRAPH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(Path(args.worker[0]), args.worker[1:])
        return
    try:
        with tempfile.TemporaryDirectory(prefix="ort-compat-") as temporary:
            work = args.work or Path(temporary)
            work.mkdir(parents=True, exist_ok=True)
            matrix = compatibility_matrix(versions=args.versions, models=args.models, work=work.resolve())
    except CompatError as e:
        sys.exit(f"ort_compat: {e}")
    print_report(matrix)
    if args.json:
        args.json.write_text(json.dumps(matrix, indent=1))


if __name__ == "__main__":
    main()
