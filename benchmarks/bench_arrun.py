"""arrun's sampling loop against bare session.run on the standard sizes, and cold start to the first sample.

    python benchmarks/bench_arrun.py [--steps N] [--workdir DIR]

Builds the standard WaveNet (2 stacks x 10 layers, 64 residual / 128 skip channels, 256 classes) and
Transformer (4 layers, d_model 256, 4 heads, window 256) with random weights, exports their step graphs
with arexport, and prints a markdown table:
- ``arrun bench`` (in process): the sampling loop (generate: IO binding + numpy sampling + feedback) vs
  the bare session.run loop (state fed back, no sampling), alternating rounds; target >= 85 %;
- ``arrun sample --json`` in a subprocess: end-to-end steps/s of a real sampling run;
- cold start: a fresh ``python -m arrun sample`` process until its first sampled character reaches
  stdout (the text-kind transformer), and until a 1-sample WAV is written and the process has exited
  (WaveNet); target <= 0.5 s. Each is the median of 5 runs.
CPU provider, batch 1, one intra-op thread: arrun's defaults.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from arexport.export import export_onnx
from artrain.checkpoint import DataInfo, save_checkpoint
from artrain.models import build_model
from arrun.commands import bench

# family -> (the output file and the length `arrun sample` writes in the end-to-end run)
SAMPLE_RUN = {"wavenet": ("sample.wav", 8000), "transformer": ("sample.txt", 256)}
ALPHABET = "".join(chr(c) for c in range(0x21, 0x21 + 256))  # 256 printable characters
STANDARD = {
    "wavenet": (dict(vocab_size=256, stacks=2, layers_per_stack=10, residual_channels=64, skip_channels=128),
                DataInfo("random", "audio", 256, sample_rate=16000)),
    "transformer": (dict(vocab_size=256, window=256, layers=4, d_model=256, heads=4),
                    DataInfo("random", "text", 256, alphabet=ALPHABET)),
}


def export_standard(family: str, workdir: Path) -> Path:
    out = workdir / f"{family}-step.onnx"
    if out.exists():
        return out
    config, data = STANDARD[family]
    torch.manual_seed(0)
    model = build_model(family, config).eval()
    ckpt = workdir / f"{family}-ckpt"
    save_checkpoint(ckpt, model, {"format_version": 1, "family": family, "model": asdict(model.config),
                                  "data": asdict(data), "train": {}, "step": 0, "eval": None})
    export_onnx(ckpt, out, graph="step", verify=False)
    return out


def arrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "arrun", *args]


def end_to_end_steps_per_s(model: Path, family: str, workdir: Path) -> float:
    name, length = SAMPLE_RUN[family]
    out = workdir / name
    result = subprocess.run(arrun("sample", str(model), "--length", str(length), "--out", str(out), "--json"),
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)["steps_per_s"]


def cold_start_first_char(model: Path) -> float:
    """Seconds from spawning the process to the first sampled character on its stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(arrun("sample", str(model), "--length", "20"), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    proc.stdout.read(1)
    first = time.perf_counter() - start
    proc.communicate()
    return first


def cold_start_process(model: Path, workdir: Path) -> float:
    """Seconds for a whole process that samples one element and writes it."""
    start = time.perf_counter()
    subprocess.run(arrun("sample", str(model), "--length", "1", "--out", str(workdir / "one.wav")),
                   check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="timed steps of each loop")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the exported models here")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-arrun-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for family in STANDARD:
        model = export_standard(family, workdir)
        r = bench(model, steps=args.steps)
        e2e = end_to_end_steps_per_s(model, family, workdir)
        rows.append((family, r, e2e))
    cold_text = statistics.median(cold_start_first_char(workdir / "transformer-step.onnx") for _ in range(5))
    cold_wav = statistics.median(cold_start_process(workdir / "wavenet-step.onnx", workdir) for _ in range(5))

    print("| model | bare session.run steps/s | arrun loop steps/s | loop / bare | p50 ms | p90 ms | p99 ms "
          "| `arrun sample` steps/s (subprocess) |")
    print("|---|---|---|---|---|---|---|---|")
    for family, r, e2e in rows:
        print(f"| {family} | {r['bare_steps_per_s']:,.0f} | {r['steps_per_s']:,.0f} | {100 * r['loop_vs_bare']:.1f} % "
              f"| {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {e2e:,.0f} |")
    print()
    print("| cold start (median of 5) | seconds |")
    print("|---|---|")
    print(f"| spawn -> first sampled character on stdout (transformer) | {cold_text:.3f} |")
    print(f"| whole process sampling 1 element to a WAV (wavenet) | {cold_wav:.3f} |")


if __name__ == "__main__":
    main()
