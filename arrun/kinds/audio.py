"""Audio: 8-bit mu-law or 16-bit linear PCM samples at the model's rate; samples as growing 16-bit WAVs;
scoring data as PCM or mu-law WAVs (any rate, resampled; a mu-law WAV at the model's rate read as its codes);
compression of a WAV's samples (mu-law bytes, or 16-bit samples), every other byte kept."""
from __future__ import annotations

import shlex
import wave
from pathlib import Path

import numpy as np

from ..contract.codecs import (PCM16_LEVELS, WavLayout, audio_bits, audio_pcm16, g711_levels, parse_wav,
                               read_wav_tokens)
from ..contract.errors import UsageError
from ..contract.files import PendingFile, commit_together
from ..contract.schema import ModelInfo
from ..outputs import Sink, StdoutFile, open_output, output_paths
from .base import DataKind, Framed

MAX_SAMPLE_RATE = 1_000_000  # Hz
MAX_WAV_FRAMES = (2**32 - 1 - 44) // 2  # 16-bit mono frames a WAV header can count
CODED_LEVELS = (256, 65536)  # what arrun compress codes: one byte of mu-law, or one 16-bit sample in two digits


class AudioKind(DataKind):
    name, unit, suffixes = "audio", "sample", (".wav",)
    expected = "a PCM or mu-law WAV file or a folder of WAV files"
    default_out = Path("samples.wav")
    layout_format = "wav"
    compress_chunk = 16384  # 1 s at 16 kHz, 16 receptive fields of the shipped WaveNet

    def problems(self, info):
        if not 0 < info.sample_rate <= MAX_SAMPLE_RATE:
            return [f"an audio model needs a sample rate of 1..{MAX_SAMPLE_RATE} Hz, not {info.sample_rate}"]
        return []

    def describe(self, info):
        coding = "16-bit linear PCM" if audio_bits(info.vocab_size) == 16 else f"{info.vocab_size}-level mu-law"
        return f"{coding} at {info.sample_rate} Hz"

    def fields(self, info):
        return {"sample_rate": info.sample_rate}

    def default_length_of(self, info):
        return info.sample_rate  # one second

    def length(self, requested, prompt, info):
        if requested is not None and requested > MAX_WAV_FRAMES:
            raise UsageError(f"--length {requested:,} does not fit in a WAV file (at most {MAX_WAV_FRAMES:,} "
                             f"16-bit samples, {MAX_WAV_FRAMES / info.sample_rate / 3600:,.1f} hours); give a smaller --length")
        return super().length(requested, prompt, info)

    def sink(self, out, info, plan, stream):
        return AudioSink(out or self.default_out, info, plan)

    def real_time_rate(self, info):
        return info.sample_rate

    def read(self, path, info):
        return [read_wav_tokens(path, info.vocab_size, info.sample_rate)]

    def frame(self, raw, path, info):
        """A RIFF/WAVE file: the samples of its first data chunk are the elements; every other byte stays as it
        is. A 256-level mu-law model codes a mu-law WAV's bytes (as ``g711_levels``) or a 16-bit WAV whose
        every sample is one of its codes as ``arrun sample`` writes them (``audio_pcm16``); a 16-bit model
        codes a 16-bit PCM WAV's samples (token = sample + 32768). Anything else is refused naming the
        conversion that fits."""
        if info.vocab_size not in CODED_LEVELS:
            raise UsageError(f"this audio model has {info.vocab_size} levels; arrun compress codes 256-level mu-law "
                             "models and 65536-level (16-bit) ones")
        layout = parse_wav(raw, str(path))
        _check_layout(layout, path, info)
        data = raw[layout.start:layout.end]
        if layout.coding == "mulaw":  # only for a mu-law model (_check_layout)
            tokens, coding = g711_levels(np.frombuffer(data, np.uint8)), "mulaw"  # (n,)
        else:
            samples = np.frombuffer(data, "<i2").astype(np.int64)  # (n,)
            tokens, coding = (samples + 32768, "pcm") if info.vocab_size == PCM16_LEVELS else \
                (_grid_codes(samples, path, info), "grid")
        return Framed(tokens, raw[:layout.start], raw[layout.end:],
                      {"format": "wav", "width": layout.bits // 8, "coding": coding})

    def unframe(self, elements, layout, info):
        coding = layout.get("coding", "pcm" if layout["width"] == 2 else "bytes")  # archives before "coding"
        if coding == "mulaw":
            return g711_levels(elements).astype("<u1").tobytes()
        if coding == "grid":
            return audio_pcm16(elements, info.vocab_size)
        if coding == "bytes":  # old archives: an 8-bit WAV's bytes taken as the codes themselves
            return elements.astype("<u1").tobytes()
        return (elements - 32768).astype("<i2").tobytes()


def _mulaw_grid(levels: int) -> np.ndarray:
    """The 16-bit sample ``arrun sample`` writes for each code of a mu-law model, (levels,) int64, rising."""
    return np.frombuffer(audio_pcm16(np.arange(levels), levels), "<i2").astype(np.int64)


def _grid_codes(samples: np.ndarray, path: Path, info: ModelInfo) -> np.ndarray:
    """16-bit samples (n,) that all lie on the model's mu-law grid -> their codes (n,); UsageError otherwise."""
    grid = _mulaw_grid(info.vocab_size)  # (V,)
    codes = np.minimum(np.searchsorted(grid, samples), len(grid) - 1)  # (n,)
    off = np.flatnonzero(grid[codes] != samples)
    if off.size:
        i = int(off[0])
        raise UsageError(f"{path} holds 16-bit samples that are not this mu-law model's levels (sample {i:,} is "
                         f"{int(samples[i])}); lossless compression needs mu-law audio: convert it with "
                         f"`sox {_quoted(path)} -e mu-law OUT.wav` (lossy), or compress it with a 16-bit model "
                         "(65536 levels, e.g. models/speech16-wavenet/step.onnx)")
    return codes


def _quoted(path: Path) -> str:
    return shlex.quote(str(path))


def _check_layout(layout: WavLayout, path: Path, info: ModelInfo) -> None:
    """The WAV holds what the model codes losslessly: mono, at the model's rate, mu-law or 16-bit PCM for a
    mu-law model, 16-bit PCM for a 16-bit one; otherwise one line naming the sox command that converts it."""
    mulaw_model = info.vocab_size != PCM16_LEVELS
    if layout.coding == "pcm" and layout.bits != 16:
        kind = "8-bit linear PCM, not mu-law" if layout.bits == 8 else f"{layout.bits}-bit PCM"
        if mulaw_model:
            raise UsageError(f"{path} is {kind}; this mu-law model codes mu-law WAVs and the 16-bit WAVs arrun sample "
                             f"writes: convert it with `sox {_quoted(path)} -e mu-law OUT.wav` (lossy), or compress "
                             f"it with a 16-bit model after `sox {_quoted(path)} -b 16 OUT.wav`")
        raise UsageError(f"{path} is {kind}; this model codes 16-bit PCM WAVs: convert it with "
                         f"`sox {_quoted(path)} -b 16 OUT.wav`")
    if layout.coding == "mulaw" and not mulaw_model:
        raise UsageError(f"{path} is mu-law; this model codes 16-bit PCM WAVs: convert it with "
                         f"`sox {_quoted(path)} -e signed-integer -b 16 OUT.wav` (exact), or compress it with a "
                         "256-level mu-law model")
    if layout.channels != 1:
        raise UsageError(f"{path} has {layout.channels} channels and the model codes mono audio: mix it down with "
                         f"`sox {_quoted(path)} -c 1 OUT.wav`")
    if layout.rate != info.sample_rate:
        raise UsageError(f"{path} is at {layout.rate} Hz and the model at {info.sample_rate} Hz; lossless "
                         f"compression cannot resample: convert it with `sox {_quoted(path)} -r {info.sample_rate} "
                         "OUT.wav` (arrun score resamples by itself)")


class AudioSink(Sink):
    """One growing WAV per sample: decoded and appended every ``chunk`` steps."""

    def __init__(self, out: Path, info: ModelInfo, plan):
        labels = None
        if plan.conditions is not None:
            names = info.class_names or tuple(str(c) for c in range(info.num_classes))
            labels = [names[c] for c in plan.conditions]
        self.paths = output_paths(out, plan.n, (".wav",), labels)
        self.info, self.plan = info, plan
        self.chunk = max(1, info.sample_rate // 10)  # 0.1 s of audio
        self._open: list[tuple[PendingFile | StdoutFile, wave.Wave_write]] = []
        self._written = 0
        self._pending: list[PendingFile | StdoutFile] = []

    def begin(self, indices: range) -> None:
        self._written, self._open = 0, []
        for i in indices:
            try:
                pending = open_output(self.paths[i])
            except OSError as e:
                raise UsageError(f"cannot write {self.paths[i]} ({e.strerror}); choose another --out") from None
            self._pending.append(pending)
            w = wave.open(pending.file, "wb")
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.info.sample_rate)
            w.setnframes(self.plan.total_length)  # the header tells players the planned length
            self._open.append((pending, w))

    def update(self, tokens: np.ndarray, done: int) -> None:
        if done - self._written >= self.chunk or done == tokens.shape[1]:
            new = tokens[:, self._written:done]  # (B, chunk)
            for row, (pending, w) in zip(new, self._open):
                w.writeframesraw(audio_pcm16(row, self.info.vocab_size))
                pending.file.flush()
            self._written = done

    def end(self, tokens: np.ndarray) -> None:
        for _, w in self._open:
            w.close()  # patches the header if the length differs from the plan; leaves the file open
        self._open = []

    def commit(self) -> list[Path]:
        """Every WAV of the run into place together, or none (``commit_together``)."""
        pending, self._pending = self._pending, []
        commit_together(pending)
        return list(self.paths)

    def discard(self) -> None:
        for _, w in self._open:
            try:
                w.close()  # now, not in its __del__ (a failed write would print from there)
            except OSError:
                pass  # the file goes anyway
        self._open = []
        for pending in self._pending:
            pending.discard()
        self._pending = []
