"""Fingerprint of the shipped models' behaviour: test bits/dim of every full graph (arrun's scorer, as
benchmarks/quality.py computes it) and the sha256 of `arrun sample` outputs for fixed seeds from every step,
chunk and precision-variant graph. Two runs print the same lines exactly when nothing a user sees changed;
a change that must not alter behaviour is checked by diffing this output before and after it.

    python benchmarks/fingerprint.py [--models models] [--skip-bits] [--only NAME ...] [--exclude GLOB ...] > before.txt
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

from quality import model_bits, shipped

from artrain.data import load_dataset

# per data kind: the sample call's options (short enough to run every graph in a minute or two)
SAMPLE_ARGS = {"image": ["-n", "2", "--condition", "3"], "text": ["--prompt", "The ", "--length", "200"],
               "audio": ["--condition", "3", "--length", "4000"]}
KIND_OF_DATA = {"digits": "image", "text": "text", "speech": "audio", "voices": "audio"}


def sample_sha(graph: Path, kind: str, seed: int) -> str:
    """sha256 of what `arrun sample GRAPH ... --seed SEED --out FILE` writes (`arrun vocode GRAPH CLIP` for a
    vocoder, CLIP the first held-out clip its folder ships)."""
    suffix = {"image": ".png", "text": ".txt", "audio": ".wav"}[kind]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"out{suffix}"
        clips = sorted(graph.parent.glob("clip-*-original.wav"))
        command = ["vocode", str(graph), str(clips[0])] if clips else ["sample", str(graph), *SAMPLE_ARGS[kind]]
        cmd = [sys.executable, "-m", "arrun", *command, "--seed", str(seed), "--out", str(out)]
        subprocess.run(cmd, check=True, capture_output=True)
        if kind == "image":  # the PNG grid's .npy twin holds the levels
            out = out.with_suffix(".npy")
        return hashlib.sha256(out.read_bytes()).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--skip-bits", action="store_true", help="only the sample hashes")
    parser.add_argument("--only", nargs="*", help="these shipped models (default: all)")
    parser.add_argument("--exclude", nargs="*", default=[], help="graph files to leave out (glob patterns)")
    args = parser.parse_args()
    args.only = args.only or list(shipped(args.models))
    for name, (data_name, bits) in shipped(args.models).items():
        folder = args.models / name
        if not args.skip_bits and name in args.only:
            test = load_dataset(data_name, bits=bits).test
            print(f"{name} full.onnx test bits/dim {model_bits(folder / 'full.onnx', test):.9f}", flush=True)
        for graph in sorted(folder.glob("*.onnx")):
            if graph.name == "full.onnx" or name not in args.only or any(graph.match(p) for p in args.exclude):
                continue
            for seed in (0, 1):
                print(f"{name} {graph.name} seed {seed} sample sha256 {sample_sha(graph, KIND_OF_DATA[data_name], seed)}",
                      flush=True)


if __name__ == "__main__":
    main()
