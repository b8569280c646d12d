"""fp32 against its int8 and fp16 variants, per shipped model, on the CPU, in one run.

    python benchmarks/bench_precision.py [--models NAME ...] [--batches 1 64] [--steps 1000] [--rounds 3]
                                         [--json OUT] [--no-score] [--root models]

For each models/NAME/step.onnx and the variants beside it (step.int8.onnx, step.fp16.onnx, made by
`arexport quantize`):
- size: bytes of each file against the fp32 file;
- bits/dim on the built-in test split of the model's data (the split its card reports), scored by
  ``arrun.score`` through each step graph; the change against fp32;
- steps/s of the sampling loop (``arrun.bench.bench``: what `arrun sample` runs) at each batch size on one
  thread, the variants interleaved round by round, the best round kept; the ratio of step times to fp32's;
- where a batch-1 step's time goes: onnxruntime's profiler over 300 steps, the time per operator type, so
  the cost of quantizing activations at run time (DynamicQuantizeLinear) stands beside the integer products.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from artrain.data import load_dataset
from arrun.bench import bench
from arrun.runtime import Stepper
from arrun.score import score
from arrun.session import Model, open_model

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "int8", "fp16")
PROFILE_STEPS = 300


def variants(folder: Path) -> dict[str, Path]:
    files = {"fp32": folder / "step.onnx", "int8": folder / "step.int8.onnx", "fp16": folder / "step.fp16.onnx"}
    return {p: f for p, f in files.items() if f.exists()}


def test_bits(model: Model) -> float:
    info = model.info
    data = load_dataset(info.data_name, alphabet=info.alphabet or None)
    split = data.split("test")
    labels = split.labels.tolist() if info.num_classes else None
    return score(model, [split.sequence(i) for i in range(len(split))], labels)["bits_per_dim"]


def profile(path: Path) -> dict[str, float]:
    """Operator type -> share of node time over PROFILE_STEPS batch-1 steps (the shipped Stepper)."""
    reference = open_model(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.enable_profiling = 1, True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "profile")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    model = Model(path, reference.info, reference.kind, session, "cpu")
    info = model.info
    stepper = Stepper(model, 1)
    features = None
    if info.features:
        features = np.full((1, info.features.frames(PROFILE_STEPS), info.features.n_mels), -5.0, np.float32)
    stepper.reset(np.zeros(1, np.int64) if info.num_classes else None, features)
    token = np.full(1, info.start_token, np.int64)
    for t in range(min(PROFILE_STEPS, info.max_length or PROFILE_STEPS)):
        token = stepper.step(token, np.array([t])).argmax(-1)
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    total = sum(per_op.values())
    return {op: us / total for op, us in per_op.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT / "models",
                        help="The folder of NAME/step*.onnx (another than models/ to measure variants before shipping).")
    parser.add_argument("--models", nargs="*", help="Default: every NAME under --root with a step.int8.onnx.")
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 64])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-score", action="store_true", help="Skip the test-split bits/dim (the slow part).")
    args = parser.parse_args()
    results = {}
    for name in args.models or sorted(p.parent.name for p in args.root.glob("*/step.int8.onnx")):
        files = variants(args.root / name)
        models = {p: open_model(f) for p, f in files.items()}
        row = {p: {"bytes": f.stat().st_size} for p, f in files.items()}
        for batch in args.batches:
            best = {p: 0.0 for p in files}
            for _ in range(args.rounds):
                for p, model in models.items():
                    best[p] = max(best[p], bench(model, batch_size=batch, steps=args.steps)["steps_per_s"])
            for p in files:
                row[p][f"steps_per_s_b{batch}"] = best[p]
        if not args.no_score:
            for p, model in models.items():
                row[p]["test_bits"] = test_bits(open_model(files[p], threads=0))
        for p in files:
            row[p]["profile"] = profile(files[p])
        results[name] = row
        print(json.dumps({name: {p: {k: v for k, v in r.items() if k != "profile"} for p, r in row.items()}}), flush=True)
    print(table(results, args.batches))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def table(results: dict, batches: list[int]) -> str:
    head = ["model", "variant", "size", "of fp32", "test bits/dim", "change",
            *[f"step time vs fp32, batch {b}" for b in batches], "top operators at batch 1 (share of node time)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in results.items():
        base = row["fp32"]
        for p, r in row.items():
            bits = r.get("test_bits")
            change = "" if bits is None or p == "fp32" else f"{100 * (bits - base['test_bits']) / base['test_bits']:+.2f} %"
            speed = [f"{base[f'steps_per_s_b{b}'] / r[f'steps_per_s_b{b}']:.2f} ({r[f'steps_per_s_b{b}']:,.0f} steps/s)"
                     for b in batches]
            ops = ", ".join(f"{op} {100 * share:.0f} %" for op, share in list(r["profile"].items())[:4])
            lines.append(f"| {name} | {p} | {r['bytes'] / 1e6:.2f} MB | {100 * r['bytes'] / base['bytes']:.0f} % | "
                         f"{'' if bits is None else f'{bits:.4f}'} | {change} | {' | '.join(speed)} | {ops} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
