"""Real time on one core: the WaveNet's real-time factor before and after the vocoder work, side by side, and
where a sample's time goes.

    python benchmarks/bench_vocoder.py [--before REV] [--vocoder models/speech-vocoder] [--rounds 3] [--steps 4000]

Before: the tree at git revision REV (default 50bf64d: per-layer shifting queues, 2-tap layers, numpy
sampling every step), unpacked into a temporary folder, exports its standard WaveNet and runs its own
`arrun bench`. After: this tree's standard WaveNet (2 x 10 layers, dilations 1..512, 64 residual / 128 skip
channels, random weights) as a step graph and as a chunk graph, the shipped speech WaveNets of both trees, and
the shipped vocoder. Every figure is `arrun bench --json` of the sampling loop at batch 1 on one thread (what
`arrun sample` and `arrun vocode` run: stepping, sampling and feeding back included), the runs interleaved
round by round and the best round kept. RTF = seconds of compute per second of 16 kHz audio (< 1: faster
than real time).

Breakdown: the shipped vocoder's chunk graph under onnxruntime's profiler (time per operator type, nodes per
sample), and the share of a step-loop sample spent outside onnxruntime (sampling loop vs bare session.run).

Sampler agreement: the chunk graph's in-graph inverse-CDF draw (``arexport.chunk.sample_inverse_cdf``, exported
alone) against ``arrun.sampling.sample_categorical`` on the same 1,000,000 random logits rows and uniforms: how
often float rounding (onnxruntime's exp and cumsum against numpy's) picks another element.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
STANDARD = ("from pathlib import Path; import sys; sys.path.insert(0, 'benchmarks'); "
            "from bench_export import export_standard; export_standard('wavenet', Path(sys.argv[1]), False)")


def nodes_per_element(graph: onnx.GraphProto) -> float:
    """Nodes run per generated element: a chunk graph's first Loop body over the elements it draws (one CumSum
    each, the inverse-CDF draw: a block of elements, or one), else the graph's own nodes."""
    loops = [node for node in graph.node if node.op_type == "Loop"]
    if not loops:
        return len(graph.node)
    body = loops[0].attribute[0].g.node
    return len(body) / max(1, sum(node.op_type == "CumSum" for node in body))


def unpack(rev: str, into: Path) -> Path:
    """The files of git revision ``rev`` in ``into`` (no .git)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def python(tree: Path, *args: str) -> str:
    """Run ``python args`` with ``tree`` on the import path (its own arrun), in ``tree``; -> stdout."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=tree)
    if result.returncode:
        raise SystemExit(f"{' '.join(args)} failed in {tree}:\n{result.stderr[-2000:]}")
    return result.stdout


def bench(tree: Path, model: Path, steps: int) -> dict:
    return json.loads(python(tree, "-m", "arrun", "bench", str(model), "--steps", str(steps), "--json"))


def profile(chunk: Path, samples: int) -> tuple[list[tuple[str, float, float]], float]:
    """onnxruntime's profiler over ``samples`` elements of the chunk graph -> ([(op type, share of the chunk's
    time, nodes per sample)] with the Loop's own time apart from its body's kernels, µs per sample)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.enable_profiling = 1, True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "profile")
    session = ort.InferenceSession(str(chunk), options, providers=["CPUExecutionProvider"])
    meta = {p.key: p.value for p in onnx.load(str(chunk)).metadata_props}
    spec, state = json.loads(meta["ar.features"]), json.loads(meta["ar.state"])
    feeds = {"input_ids": np.array([256]), "position": np.array(0),
             "features": np.full((1, samples // spec["hop"] + 1, spec["n_mels"]), -5, np.float32),
             "uniforms": np.random.default_rng(0).random((1, samples))}
    feeds |= {s["input"]: np.zeros([1, *s["shape"][1:]], np.float32) for s in state}
    session.run(None, feeds)
    events = json.load(open(session.end_profiling()))
    time, count = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            time[e["args"]["op_name"]] += e["dur"]  # the Loop's time includes its body's kernels
            count[e["args"]["op_name"]] += 1
    total = sum(t for op, t in time.items() if op != "Loop") + time["Loop"] - sum(
        t for op, t in time.items() if op != "Loop" and count[op] >= samples)  # outer nodes + the Loop
    time["Loop bookkeeping (outside the body's kernels)"] = time.pop("Loop") - sum(
        t for op, t in time.items() if count[op] >= samples)
    return [(op, t / total, count[op] / samples) for op, t in time.most_common()], total / samples


def sampler_mismatches(draws: int, vocab: int = 256, block: int = 50_000) -> int:
    """Rows of ``draws`` where the exported in-graph sampler and numpy's pick different elements."""
    import torch

    from arexport.chunk import sample_inverse_cdf
    from arexport.tracing import trace
    from arrun.sampling import sample_categorical

    class Sampler(torch.nn.Module):
        def forward(self, logits, u):
            return sample_inverse_cdf(logits, u)

    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    proto = trace(Sampler(), (torch.zeros(2, vocab), torch.full((2,), 0.5, dtype=torch.float64)),
                  ({0: batch}, {0: batch}), ["logits", "u"], ["token"], 18, "the sampler")
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    rng, differ = np.random.default_rng(0), 0
    for start in range(0, draws, block):
        n = min(block, draws - start)
        logits = (rng.standard_normal((n, vocab)) * rng.uniform(0.5, 8, (n, 1))).astype(np.float32)  # flat to peaked
        u = rng.random(n)
        differ += int((session.run(None, {"logits": logits, "u": u})[0] != sample_categorical(logits, u)).sum())
    return differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="50bf64d", help="Git revision of the tree before the vocoder work.")
    parser.add_argument("--vocoder", type=Path, default=ROOT / "models" / "speech-vocoder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4000, help="Timed elements per `arrun bench` run.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-vocoder-"))
    old = unpack(args.before, work / "before")
    python(old, "-c", STANDARD, str(work / "standard-before"))
    python(ROOT, "-c", STANDARD, str(work / "standard-after"))
    python(ROOT, "-m", "arexport", "onnx", str(work / "standard-after" / "wavenet"), "--chunk-graph", "--no-verify")
    runs = {  # label -> (tree whose arrun runs it, model)
        "standard WaveNet, before (step graph)": (old, work / "standard-before" / "wavenet" / "step.onnx"),
        "standard WaveNet, after (step graph)": (ROOT, work / "standard-after" / "wavenet" / "step.onnx"),
        "standard WaveNet, after (chunk graph)": (ROOT, work / "standard-after" / "wavenet" / "chunk.onnx"),
        "speech-wavenet, before (step graph)": (old, old / "models" / "speech-wavenet" / "step.onnx"),
        "speech-wavenet, after (chunk graph)": (ROOT, ROOT / "models" / "speech-wavenet" / "chunk.onnx"),
        "speech-vocoder (step graph)": (ROOT, args.vocoder / "step.onnx"),
        "speech-vocoder (chunk graph)": (ROOT, args.vocoder / "chunk.onnx"),
    }
    runs = {label: run for label, run in runs.items() if run[1].exists()}
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for label, (tree, model) in runs.items():
            record = bench(tree, model, args.steps)
            if label not in best or record["tokens_per_s"] > best[label]["tokens_per_s"]:
                best[label] = record
    nodes = {label: nodes_per_element(onnx.load(str(model)).graph) for label, (_, model) in runs.items()}
    print(f"onnxruntime {ort.__version__}, batch 1, one thread, best of {args.rounds} interleaved rounds of "
          f"{args.steps} samples\n")
    print("| model | nodes per sample | samples/s | µs per sample | RTF | loop vs bare session.run |")
    print("|---|---|---|---|---|---|")
    for label, r in best.items():
        print(f"| {label} | {nodes[label]:.0f} | {r['tokens_per_s']:,.0f} | {1e6 / r['tokens_per_s']:.1f} | "
              f"{16000 / r['tokens_per_s']:.2f} | {100 * r['loop_vs_bare']:.0f} % |")
    draws = 1_000_000
    print(f"\nIn-graph sampler vs numpy sampler: {sampler_mismatches(draws)} of {draws:,} draws differ")
    chunk = args.vocoder / "chunk.onnx"
    if chunk.exists():
        shares, micros = profile(chunk, 4096)
        print(f"\nWhere a sample of the vocoder's chunk graph goes (onnxruntime profiler, {micros:.1f} µs per sample "
              "under profiling):\n")
        print("| operator | share of the chunk's time | nodes per sample |\n|---|---|---|")
        for op, share, count in shares[:14]:
            print(f"| {op} | {100 * share:.1f} % | {count:.2f} |")


if __name__ == "__main__":
    main()
