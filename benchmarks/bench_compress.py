"""Lossless compression with the shipped models against general-purpose compressors, on each model's held-out data.

    python benchmarks/bench_compress.py [--model PATH ...] [--limit text=20000 --limit audio=10 --limit image=100]
                                        [--batch-size 64] [--json FILE]

For every model (the three shipped step graphs; ``--model`` adds more, e.g. a 16-bit audio model) the test split
of its built-in training data (``artrain.data.reload_dataset`` of the model's ``data_name``) is written to files the
way ``arrun compress`` takes them: text as one UTF-8 .txt; audio as one WAV per clip (mu-law, whose codes arrun
reads; the baselines get 8-bit PCM whose bytes are the codes, same size; 16-bit PCM for a 65536-level model), each coded under its clip's class; images as one uint8
.npy per class (one .npy for an unconditional model). ``--limit KIND=N`` caps the test split (characters, clips,
images; 0: all). Every file is compressed and decompressed by arrun (each round trip checked byte for byte) and
compressed by xz -9e and bzip2 -9 (Python's lzma and bz2), zstd -19 and, for audio, flac -8 --no-padding
--no-seektable (the binaries, skipped with a note where absent); text also gets "xz given the training text": size(xz(train + test)) -
size(xz(train)). Sizes are summed over a kind's files, each compressed alone, headers included. Prints markdown
tables, the limits used and the throughput (elements/s of the coding loop: CPU, one thread).
"""
from __future__ import annotations

import argparse
import bz2
import json
import lzma
import shutil
import struct
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from artrain.data import reload_dataset
from arrun.compress import compress, decompress
from arrun.contract.codecs import g711_levels
from arrun.session import open_model

MODELS = ["models/pydoc-transformer/step.onnx", "models/speech-wavenet/step.onnx", "models/digits-pixelcnn/step.onnx"]
LIMITS = {"text": 20_000, "audio": 10, "image": 100}  # of the test split: characters, clips, images (0: all)
UNITS = {"text": "characters", "audio": "clips", "image": "images"}


def write_test_files(model_path: Path, folder: Path, limit: int) -> tuple[list[tuple[Path, int | None]], str, bytes]:
    """The model's test split as input files -> ([(file, condition)], what was used, training text or b"")."""
    info = open_model(model_path).info
    data = reload_dataset(info.data_name, info.data_kind, info.vocab_size, info.alphabet)
    split, kind = data.test, info.data_kind
    if data.kind != kind or data.levels != info.vocab_size:
        raise SystemExit(f"{model_path}: its data {info.data_name!r} is {data.kind} of {data.levels} levels")
    label = (lambda i: int(split.labels[i])) if info.num_classes and split.labels is not None else (lambda i: None)
    if kind == "text":
        alphabet = np.array(list(info.alphabet))
        tokens = split.tokens[:limit or None]
        path = folder / "test.txt"
        path.write_text("".join(alphabet[tokens]), encoding="utf-8")
        return [(path, None)], f"{len(tokens):,} of {split.n_dims:,} characters", \
            "".join(alphabet[data.train.tokens]).encode("utf-8")
    n = min(limit or len(split), len(split))
    used = f"{n} of {len(split)} {UNITS[kind]}"
    if kind == "audio":
        files = []
        for i in range(n):
            files.append((folder / f"clip-{i:03d}.wav", label(i)))
            _write_wav(files[-1][0], split.sequence(i), info.sample_rate, info.vocab_size)
        return files, used, b""
    h, w = info.image_shape
    images = split.tokens[:split.offsets[n]].reshape(n, h, w).astype(np.uint8)  # (n, H, W)
    groups = {None: np.arange(n)} if label(0) is None else \
        {c: np.flatnonzero(split.labels[:n] == c) for c in range(info.num_classes)}
    files = []
    for c, index in groups.items():
        if len(index):
            files.append((folder / f"images-{c}.npy", c))
            np.save(files[-1][0], images[index])
    return files, used, b""


def _write_wav(path: Path, tokens: np.ndarray, rate: int, levels: int) -> None:
    """For arrun: a mu-law WAV (format tag 7) of the codes (256 levels; bytes ``g711_levels`` of them, the file
    arrun reads back as those codes), or 16-bit PCM of token - 32768 (65536 levels). For the baselines, a 256-level
    clip also gets ``baseline_file(path)``: 8-bit PCM whose bytes are the codes, as they were always measured
    (same size; flac reads no mu-law)."""
    if levels == 256:
        data = g711_levels(tokens).astype(np.uint8).tobytes()
        fmt = struct.pack("<HHIIHH", 7, 1, rate, rate, 1, 8)
        body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
        path.write_bytes(b"RIFF" + struct.pack("<I", len(body) + len(data) % 2) + body + b"\0" * (len(data) % 2))
    with wave.open(str(path.with_suffix(".pcm8.wav") if levels == 256 else path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(1 if levels == 256 else 2)
        f.setframerate(rate)
        f.writeframes(tokens.astype(np.uint8).tobytes() if levels == 256 else (tokens - 32768).astype("<i2").tobytes())


def baseline_file(path: Path) -> Path:
    """The file the general-purpose compressors get for ``path``: its 8-bit PCM sibling where one was written."""
    sibling = path.with_suffix(".pcm8.wav")
    return sibling if sibling.exists() else path


def baselines(files: list[Path], kind: str, train: bytes, scratch: Path) -> tuple[dict[str, int | None], list[str]]:
    """Summed compressed sizes per method (None: tool absent) and notes on what was skipped."""
    raw = [p.read_bytes() for p in files]
    sizes: dict[str, int | None] = {
        "xz -9e": sum(len(lzma.compress(b, preset=9 | lzma.PRESET_EXTREME)) for b in raw),
        "bzip2 -9": sum(len(bz2.compress(b, 9)) for b in raw)}
    notes = []
    tools = {"zstd -19": ["zstd", "-19", "-q", "-f", "-o"]} | ({"flac -8": ["flac", "-8", "--no-padding", "--no-seektable", "--force", "--silent", "-o"]}
                                                                if kind == "audio" else {})
    for name, command in tools.items():
        if shutil.which(command[0]) is None:
            sizes[name] = None
            notes.append(f"{name}: `{command[0]}` not found, skipped")
            continue
        sizes[name] = sum(_tool_size(command, p, scratch / "baseline.out") for p in files)
    if kind == "text":
        xz = lambda b: len(lzma.compress(b, preset=9 | lzma.PRESET_EXTREME))  # noqa: E731
        sizes["xz given train"] = xz(train + raw[0]) - xz(train)
    return sizes, notes


def _tool_size(command: list[str], path: Path, out: Path) -> int:
    """Bytes of ``path`` compressed by ``command`` (which ends in its output option) into ``out``."""
    subprocess.run([*command, str(out), str(path)], check=True)
    return out.stat().st_size


def bench_model(model_path: Path, limits: dict[str, int], batch_size: int) -> dict:
    info = open_model(model_path).info
    with tempfile.TemporaryDirectory(prefix="bench-compress-") as tmp:
        folder = Path(tmp)
        files, used, train = write_test_files(model_path, folder, limits[info.data_kind])
        elements = original = arz = payload = 0
        seconds = {"compress": 0.0, "decompress": 0.0}
        exact = 0
        for path, condition in files:
            packed = compress(model_path, path, out=folder / "x.arz", condition=condition, batch_size=batch_size)
            unpacked = decompress(model_path, folder / "x.arz", out=folder / "back")
            exact += (folder / "back").read_bytes() == path.read_bytes()
            elements += packed["elements"]
            original += packed["input_bytes"]
            arz += packed["output_bytes"]
            payload += packed["payload_bytes"]
            seconds["compress"] += packed["seconds"]
            seconds["decompress"] += unpacked["seconds"]
        (folder / "x.arz").unlink()
        (folder / "back").unlink()
        sizes, notes = baselines([baseline_file(p) for p, _ in files], info.data_kind, train, folder)
    return {"model": str(model_path), "data_kind": info.data_kind, "data": info.data_name, "used": used,
            "files": len(files), "elements": elements, "original_bytes": original, "arrun_bytes": arz,
            "arrun_payload_bits_per_element": 8 * payload / elements,
            "arrun_overhead_bytes_per_file": (arz - payload) / len(files), "model_test_bits_per_dim": info.bits_per_dim,
            "baselines": sizes, "notes": notes,
            "compress_elements_per_s": elements / seconds["compress"],
            "decompress_elements_per_s": elements / seconds["decompress"], "round_trips_exact": f"{exact}/{len(files)}"}


def table(records: list[dict]) -> str:
    methods = ["xz -9e", "bzip2 -9", "zstd -19", "flac -8", "xz given train"]

    def cell(size: int | None, r: dict) -> str:
        return "-" if size is None else f"{size:,} ({8 * size / r['elements']:.2f})"

    lines = ["Compressed bytes (bits per element), summed over each kind's files:", "",
             "| data (model) | test split used | files | original | arrun | " + " | ".join(methods) + " |",
             "|---" * (5 + len(methods)) + "|"]
    for r in records:
        lines.append(f"| {r['data_kind']} ({Path(r['model']).parent.name}) | {r['used']} | {r['files']} | "
                     f"{cell(r['original_bytes'], r)} | {cell(r['arrun_bytes'], r)} | "
                     + " | ".join(cell(r["baselines"].get(m), r) for m in methods) + " |")
    lines += ["", "| data | arrun payload bits/element | model's test bits/dim (at training) | .arz header bytes/file "
              "| compress elements/s | decompress elements/s | exact round trips |", "|---" * 7 + "|"]
    for r in records:
        lines.append(f"| {r['data_kind']} | {r['arrun_payload_bits_per_element']:.3f} | "
                     f"{r['model_test_bits_per_dim']:.3f} | {r['arrun_overhead_bytes_per_file']:,.0f} | "
                     f"{r['compress_elements_per_s']:,.0f} | {r['decompress_elements_per_s']:,.0f} | "
                     f"{r['round_trips_exact']} |")
    notes = sorted({n for r in records for n in r["notes"]})
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", type=Path, default=[], help="another step graph (repeatable)")
    parser.add_argument("--limit", action="append", default=[], metavar="KIND=N",
                        help=f"cap the test split: text characters, audio clips, images (0: all; default {LIMITS})")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path, help="write the records here")
    args = parser.parse_args()
    limits = dict(LIMITS)
    for item in args.limit:
        kind, _, n = item.partition("=")
        if kind not in limits or not n.isdigit():
            parser.error(f"--limit {item}: give KIND=N with KIND one of {', '.join(limits)}")
        limits[kind] = int(n)
    records = [bench_model(Path(m), limits, args.batch_size) for m in [*MODELS, *args.model]]
    print(table(records))
    if args.json:
        args.json.write_text(json.dumps(records, indent=2))


if __name__ == "__main__":
    main()
