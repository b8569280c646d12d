"""Quality table: held-out bits/dim of the shipped models beside peers computed in the same run on the
same bytes (one byte per element: pixel level, character id, mu-law code).

A 16-bit model's data (train.json "bits": 16) is its test split as 16-bit samples, two bytes per element for
the byte compressors and 16-bit PCM for FLAC; bits are per sample either way.
Peers, each given the training split where it can use it:
- uniform: log2(levels);
- marginal: a histogram of the training data (per pixel position for images), add-one smoothed;
- xz -9e and bz2 -9 with the training data as context: compressed(train + test) - compressed(train);
- FLAC (audio): `flac -8` on the test clips as 8-bit PCM of the mu-law codes (the `flac` binary).
Models are scored with arrun's own scorer on their exported full graph (per class for conditional models).
Checkpoints given with --checkpoints (the families on digits; the softmax and mixture heads on speech) are scored
on the test split of their own data by artrain's evaluate, with their head, bit depth and training steps.

A second table compares every shipped vocoder (a model whose full.onnx declares features) with Griffin-Lim
on the same log-mel frames of each held-out clip: the vocoder resynthesises them through arrun's own loop
(chunk.onnx, else step.onnx; seed = clip index, one thread), librosa's Griffin-Lim (64 iterations) inverts
them, and both are scored against the original at 8-bit mu-law: log-spectral distance (dB) on the model's
STFT, mean |log-mel difference| (nats), and the vocoder's real-time factor. --vocoder-clips N uses the first
N clips; --vocoded-wavs DIR also writes the first 4 as WAVs (original, vocoder, Griffin-Lim).

    python benchmarks/quality.py [--models models] [--checkpoints runs/d-pixelcnn runs/speech-wavenet-mol8 ...]
                                 [--vocoder-clips N] [--vocoded-wavs DIR]
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
import wave
from datetime import date
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from artrain.data import Dataset, Split, load_dataset
from arrun.contract.codecs import audio_bits, mulaw_decode, mulaw_encode, to_pcm16
from arrun.contract.features import FeatureSpec, analysis_window, mulaw_features
from arrun.generate import SampleOptions, generate, make_plan
from arrun.score import score
from arrun.session import Model, open_model

WAV_CLIPS = 4  # held-out clips --vocoded-wavs writes


def shipped(models: Path) -> dict[str, tuple[str, int]]:
    """Shipped model name -> (the built-in data it was trained on, its bit depth), from each models/NAME/train.json."""
    configs = {p.parent.name: json.loads(p.read_text()) for p in sorted(models.glob("*/train.json"))}
    return {name: (c["data"], c.get("bits", 8)) for name, c in configs.items()}


def as_bytes(split: Split, levels: int) -> bytes:
    """One byte per element, or a 16-bit model's samples as little-endian int16."""
    if levels > 256:
        return (split.tokens - 32768).astype("<i2").tobytes()
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


def flac_bits(test: Split, rate: int, levels: int) -> float | None:
    """flac -8 on the test split as raw signed PCM: 8-bit of the mu-law codes, or the 16-bit samples."""
    if shutil.which("flac") is None:
        return None
    wide = levels > 256
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "test.raw"
        raw.write_bytes(as_bytes(test, levels) if wide else (test.tokens.astype(np.int16) - 128).astype(np.int8).tobytes())
        subprocess.run(["flac", "-8", "-s", "-f", "--force-raw-format", "--endian=little", "--sign=signed",
                        "--channels=1", f"--bps={16 if wide else 8}", f"--sample-rate={rate}", str(raw), "-o", f"{tmp}/t.flac"], check=True)
        return (Path(tmp) / "t.flac").stat().st_size * 8 / len(test.tokens)


def model_bits(path: Path, test: Split) -> float:
    """arrun's scorer on the full graph; conditional models are scored class by class with their labels."""
    model = open_model(path, threads=0)
    sequences = [test.sequence(i).astype(np.int64) for i in range(len(test))]
    labels = test.labels.tolist() if model.info.num_classes else None
    return score(model, sequences, labels)["bits_per_dim"]


def row(name: str, data: Dataset, model: float | None) -> str:
    train, test, levels = data.train, data.test, data.levels
    positions = data.image_shape[0] * data.image_shape[1] if data.image_shape else 1
    per_element = 2 if levels > 256 else 1  # compressor_bits counts bits per byte of test
    cells = [model, math.log2(levels), marginal_bits(train, test, levels, positions),
             per_element * compressor_bits(lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME),
                                           as_bytes(train, levels), as_bytes(test, levels)),
             per_element * compressor_bits(lambda b: bz2.compress(b, 9), as_bytes(train, levels), as_bytes(test, levels)),
             flac_bits(test, data.sample_rate, levels) if data.sample_rate else None]  # FLAC: audio only
    text = " | ".join("—" if c is None else f"{c:.3f}" for c in cells)
    depth = f", {audio_bits(levels)}-bit" if data.sample_rate else ""
    return f"| {name} | {data.name}{depth} ({test.n_dims:,} held-out dims) | {text} |"


class Keep:
    """A ``generate`` sink for one sample that keeps its ``tokens`` (T,) int64."""
    def begin(self, indices: range) -> None: ...
    def update(self, tokens: np.ndarray, done: int) -> None: ...
    def end(self, tokens: np.ndarray) -> None:
        self.tokens = tokens[0].copy()


def resynthesise(model: Model, frames: np.ndarray, length: int, seed: int) -> tuple[np.ndarray, float]:
    """Frames (F, M) through arrun's own sampling loop, as ``arrun vocode`` -> ((length,) codes, seconds)."""
    plan = make_plan(SampleOptions(seed=seed, length=length, features=frames), model.info)
    keep = Keep()
    stats = generate(model, plan, SampleOptions().sampling, seed, keep)
    return keep.tokens, stats.seconds


def griffin_lim(frames: np.ndarray, spec: FeatureSpec, length: int, seed: int, levels: int) -> np.ndarray:
    """Frames (F, M) inverted by Griffin-Lim -> (length,) mu-law codes. librosa's ``mel_to_audio`` split in
    its two calls, so that the random initial phases come from ``seed``."""
    import librosa

    stft = librosa.feature.inverse.mel_to_stft(np.exp(frames).T, sr=spec.sample_rate, n_fft=spec.n_fft,
                                               power=spec.power, htk=False, norm="slaney", fmin=spec.fmin,
                                               fmax=spec.fmax)  # (n_fft // 2 + 1, F)
    audio = librosa.griffinlim(stft, n_iter=64, hop_length=spec.hop, win_length=spec.win_length,
                               n_fft=spec.n_fft, window="hann", center=True, pad_mode="constant",
                               length=length, random_state=seed)  # (length,)
    return mulaw_encode(np.clip(audio, -1, 1), levels)


def log_power(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """(T,) waveform -> (spec.frames(T), n_fft // 2 + 1) 10 log10 max(|STFT|^2, 1e-10), on ``log_mel``'s
    frames: centred with n_fft // 2 zeros each side, its window."""
    padded = np.pad(np.asarray(audio, np.float64), spec.n_fft // 2)                   # (T + n_fft,)
    frames = sliding_window_view(padded, spec.n_fft)[::spec.hop]                       # (F, n_fft)
    power = np.abs(np.fft.rfft(frames * analysis_window(spec), axis=-1)) ** 2          # (F, K)
    return 10 * np.log10(np.maximum(power, 1e-10))


def distances(original: np.ndarray, rebuilt: np.ndarray, spec: FeatureSpec, levels: int) -> np.ndarray:
    """Mu-law codes (T,) each -> [LSD in dB summed over frames, |log-mel difference| in nats summed over
    frames and bands]."""
    a, b = (log_power(mulaw_decode(codes, levels), spec) for codes in (original, rebuilt))  # (F, K) each
    lsd = np.sqrt(((a - b) ** 2).mean(axis=1)).sum()  # RMS over bins per frame
    mel = np.abs(mulaw_features(original, spec, levels) - mulaw_features(rebuilt, spec, levels)).sum()
    return np.array([lsd, mel])


def write_wav(path: Path, codes: np.ndarray, rate: int, levels: int) -> None:
    """Mu-law codes (T,) -> a 16-bit PCM mono WAV at ``rate`` Hz."""
    with wave.open(str(path), "wb") as w:
        w.setparams((1, 2, rate, 0, "NONE", "not compressed"))
        w.writeframes(to_pcm16(mulaw_decode(codes, levels)))


def vocoder_row(name: str, folder: Path, data_name: str, clips: int | None, wavs: Path | None) -> str:
    """The vocoder in ``folder`` (chunk.onnx, else step.onnx) against Griffin-Lim on the first ``clips``
    held-out clips (None: all): LSD and mel distance, frame-weighted over clips, and its real-time factor."""
    chunk = folder / "chunk.onnx"
    model = open_model(chunk if chunk.exists() else folder / "step.onnx", threads=1)
    spec, levels = model.info.features, model.info.vocab_size
    data = load_dataset(data_name)
    test = data.test
    n = len(test) if clips is None else min(clips, len(test))
    sums, frames_seen, samples, compute = np.zeros((2, 2)), 0, 0, 0.0  # sums: (vocoder, Griffin-Lim) x (LSD, mel)
    for i in range(n):
        codes = test.sequence(i)                                                       # (T,)
        frames = mulaw_features(codes, spec, levels)                                   # (F, M)
        vocoded, seconds = resynthesise(model, frames, len(codes), seed=i)
        inverted = griffin_lim(frames, spec, len(codes), i, levels)
        sums += [distances(codes, vocoded, spec, levels), distances(codes, inverted, spec, levels)]
        frames_seen, samples, compute = frames_seen + len(frames), samples + len(codes), compute + seconds
        if wavs is not None and i < WAV_CLIPS:
            wavs.mkdir(parents=True, exist_ok=True)
            word = data.class_names[test.labels[i]]
            for method, x in (("original", codes), ("vocoder", vocoded), ("griffinlim", inverted)):
                write_wav(wavs / f"clip-{i}-{word}-{method}.wav", x, spec.sample_rate, levels)
    lsd, mel = sums[:, 0] / frames_seen, sums[:, 1] / (frames_seen * spec.n_mels)     # (2,) vocoder, Griffin-Lim
    cells = [f"{x:.2f}" for x in lsd] + [f"{x:.3f}" for x in (*mel, compute * spec.sample_rate / samples)]
    return f"| {name} | {n} | {' | '.join(cells)} |"


def print_vocoders(models: Path, clips: int | None, wavs: Path | None) -> None:
    """The vocoder table: a row for every shipped model whose full.onnx declares features, then the note."""
    vocoders = {name: data_name for name, (data_name, _) in shipped(models).items()
                if (full := models / name / "full.onnx").exists() and open_model(full).info.features}
    if not vocoders:
        return
    print("\n| model | clips | vocoder LSD dB | Griffin-Lim LSD dB | vocoder mel distance | Griffin-Lim mel distance "
          "| vocoder RTF |\n|---|---|---|---|---|---|---|")
    for name, data_name in vocoders.items():
        print(vocoder_row(name, models / name, data_name, clips, wavs))
    print("\nLSD: per-frame RMS over STFT bins (the model's n_fft, hop, window) of the difference in 10 log10 power "
          "to the original, frame-weighted over clips; mel distance: mean |difference| of the log-mel features, in "
          "nats; both at 8-bit mu-law. RTF: seconds of compute per second of audio, one thread. Lower is better.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--checkpoints", type=Path, nargs="*", default=[], help="checkpoints scored on their own data")
    parser.add_argument("--vocoder-clips", type=int, default=None, help="held-out clips per vocoder (default all)")
    parser.add_argument("--vocoded-wavs", type=Path, default=None, help="write the first 4 clips' WAVs here")
    args = parser.parse_args()
    if args.vocoder_clips is not None and args.vocoder_clips < 1:
        parser.error(f"--vocoder-clips must be >= 1, got {args.vocoder_clips}")
    print(f"Held-out bits/dim, {date.today()}, {platform.processor() or platform.machine()}; lower is better.\n")
    print("| model | data | model bits/dim | uniform | marginal | xz -9e | bz2 -9 | FLAC -8 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (data_name, bits) in shipped(args.models).items():
        path, data = args.models / name / "full.onnx", load_dataset(data_name, bits=bits)
        print(row(name, data, model_bits(path, data.test) if path.exists() else None))
    if args.checkpoints:
        from artrain.checkpoint import load_checkpoint
        from artrain.evaluate import evaluate

        print("\n| checkpoint | family | head | data | steps | parameters | test bits/dim |\n|---|---|---|---|---|---|---|")
        for ckpt in args.checkpoints:
            model, config = load_checkpoint(ckpt)
            data = config["data"]
            bits = audio_bits(data["levels"]) if data["kind"] == "audio" else 8
            test = load_dataset(data["name"], bits=bits).test
            head = model.output_head.description
            depth = f", {bits}-bit" if data["kind"] == "audio" else ""
            params = sum(p.numel() for p in model.parameters())
            print(f"| {ckpt} | {config['family']} | {head} | {data['name']}{depth} | {config['step']} | {params:,} "
                  f"| {evaluate(model, test).bits_per_dim:.3f} |")
    print_vocoders(args.models, args.vocoder_clips, args.vocoded_wavs)


if __name__ == "__main__":
    main()
