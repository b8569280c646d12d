"""Quality table: held-out bits/dim of the shipped models beside peers computed in the same run on the
same bytes (one byte per element: pixel level, character id, mu-law code).

Peers, each given the training split where it can use it:
- uniform: log2(levels);
- marginal: a histogram of the training data (per pixel position for images), add-one smoothed;
- xz -9e and bz2 -9 with the training data as context: compressed(train + test) - compressed(train);
- FLAC (audio): `flac -8` on the test clips as 8-bit PCM of the mu-law codes (the `flac` binary).
Models are scored with arrun's own scorer on their exported full graph (per class for conditional models).
The three families on digits come from checkpoints given with --digits (scored with artrain's evaluate).

    python benchmarks/quality.py [--models models] [--digits runs/d-pixelcnn runs/d-transformer runs/d-wavenet]
"""
from __future__ import annotations

import argparse
import bz2
import json
import lzma
import math
import platform
import shutil
import subprocess
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

from artrain.data import Split, load_dataset
from arrun.score import score
from arrun.session import open_model



def shipped(models: Path) -> dict[str, str]:
    """Shipped model name -> the built-in data it was trained on, from each models/NAME/train.json."""
    return {p.parent.name: json.loads(p.read_text())["data"] for p in sorted(models.glob("*/train.json"))}


def as_bytes(split: Split) -> bytes:
    return split.tokens.astype(np.uint8).tobytes()


def compressor_bits(compress, train: bytes, test: bytes) -> float:
    return (len(compress(train + test)) - len(compress(train))) * 8 / len(test)


def marginal_bits(train: Split, test: Split, levels: int, positions: int) -> float:
    """Add-one smoothed histogram per position (images: positions = H*W) or over all elements (positions = 1)."""
    def by_position(split: Split) -> np.ndarray:
        return split.tokens.reshape(-1, positions) if positions > 1 else split.tokens[:, None]

    train_x, test_x = by_position(train), by_position(test)
    counts = np.ones((positions, levels))
    for p in range(positions):
        counts[p] += np.bincount(train_x[:, p], minlength=levels)
    probs = counts / counts.sum(axis=1, keepdims=True)  # (P, V)
    return float(-np.log2(probs[np.arange(positions)[None, :], test_x]).mean())


def flac_bits(test: Split, rate: int) -> float | None:
    if shutil.which("flac") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "test.raw"
        raw.write_bytes((test.tokens.astype(np.int16) - 128).astype(np.int8).tobytes())
        subprocess.run(["flac", "-8", "-s", "-f", "--force-raw-format", "--endian=little", "--sign=signed",
                        "--channels=1", "--bps=8", f"--sample-rate={rate}", str(raw), "-o", f"{tmp}/t.flac"], check=True)
        return (Path(tmp) / "t.flac").stat().st_size * 8 / len(test.tokens)


def model_bits(path: Path, test: Split) -> float:
    """arrun's scorer on the full graph; conditional models are scored class by class with their labels."""
    model = open_model(path, threads=0)
    sequences = [test.sequence(i).astype(np.int64) for i in range(len(test))]
    labels = test.labels.tolist() if model.info.num_classes else None
    return score(model, sequences, labels)["bits_per_dim"]


def row(name: str, data_name: str, model: float | None) -> str:
    data = load_dataset(data_name)
    train, test = data.train, data.test
    positions = data.image_shape[0] * data.image_shape[1] if data.image_shape else 1
    cells = [model, math.log2(data.levels), marginal_bits(train, test, data.levels, positions),
             compressor_bits(lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), as_bytes(train), as_bytes(test)),
             compressor_bits(lambda b: bz2.compress(b, 9), as_bytes(train), as_bytes(test)),
             flac_bits(test, data.sample_rate) if data.sample_rate else None]  # FLAC: audio only
    text = " | ".join("—" if c is None else f"{c:.3f}" for c in cells)
    return f"| {name} | {data_name} ({test.n_dims:,} held-out dims) | {text} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--digits", type=Path, nargs="*", default=[], help="checkpoints trained on digits")
    args = parser.parse_args()
    print(f"Held-out bits/dim, {date.today()}, {platform.processor() or platform.machine()}; lower is better.\n")
    print("| model | data | model bits/dim | uniform | marginal | xz -9e | bz2 -9 | FLAC -8 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, data_name in shipped(args.models).items():
        path = args.models / name / "full.onnx"
        print(row(name, data_name, model_bits(path, load_dataset(data_name).test) if path.exists() else None))
    if args.digits:
        from artrain.checkpoint import load_checkpoint
        from artrain.evaluate import evaluate

        test = load_dataset("digits").test
        print("\n| family on digits (test split) | parameters | bits/dim |\n|---|---|---|")
        for ckpt in args.digits:
            model, config = load_checkpoint(ckpt)
            params = sum(p.numel() for p in model.parameters())
            print(f"| {config['family']} ({ckpt}) | {params:,} | {evaluate(model, test).bits_per_dim:.3f} |")


if __name__ == "__main__":
    main()
