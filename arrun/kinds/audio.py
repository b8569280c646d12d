"""Audio: 8-bit mu-law or 16-bit linear PCM samples at the model's rate; samples as growing 16-bit WAVs;
scoring data as WAVs (any rate, resampled); compression of a PCM WAV's samples, every other byte kept."""
from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np

from ..contract.codecs import audio_bits, audio_encode, audio_pcm16, read_wav, resample_poly
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
    expected = "a PCM WAV file or a folder of WAV files"
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
        x, rate = read_wav(path)
        return [audio_encode(resample_poly(x, rate, info.sample_rate, str(path)), info.vocab_size)]

    def frame(self, raw, path, info):
        """A RIFF/WAVE file: the samples of its first data chunk are the elements; every other byte stays as it is."""
        width = audio_bits(info.vocab_size) // 8  # the contract's rule: 65,536 levels are 16-bit, else mu-law
        if info.vocab_size not in CODED_LEVELS:
            raise UsageError(f"this audio model has {info.vocab_size} levels; arrun compress codes 256-level mu-law "
                             "models (8-bit WAVs) and 65536-level ones (16-bit WAVs)")
        if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
            raise UsageError(f"{path} is not a RIFF/WAVE file; give a PCM WAV")
        pos, fmt = 12, None
        while pos + 8 <= len(raw):
            kind, size = struct.unpack_from("<4sI", raw, pos)
            body = pos + 8
            if kind == b"fmt ":
                fmt = raw[body:body + size]
            elif kind == b"data":
                _check_fmt(fmt, path, info, width)
                end = body + (min(body + size, len(raw)) - body) // width * width  # whole samples; the rest is kept
                samples = np.frombuffer(raw[body:end], "<u1" if width == 1 else "<i2").astype(np.int64)  # (n,)
                tokens = samples + (0 if width == 1 else 32768)  # (n,)
                return Framed(tokens, raw[:body], raw[end:], {"format": "wav", "width": width})
            pos = body + size + (size & 1)  # chunks are padded to even sizes
        raise UsageError(f"{path} has no {'data' if fmt else 'fmt'} chunk; give a PCM WAV")

    def unframe(self, elements, layout, info):
        return (elements.astype("<u1") if layout["width"] == 1 else (elements - 32768).astype("<i2")).tobytes()


def _check_fmt(fmt: bytes | None, path: Path, info: ModelInfo, width: int) -> None:
    """The fmt chunk describes what the model codes: mono PCM of ``width`` bytes at the model's rate."""
    if fmt is None or len(fmt) < 16:
        raise UsageError(f"{path} has no complete fmt chunk before its data; give a PCM WAV")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the subformat's first two bytes
        tag = struct.unpack_from("<H", fmt, 24)[0]
    wanted = ("8-bit mu-law WAVs (each byte one mu-law code)" if width == 1 else
              "16-bit PCM WAVs (token = sample + 32768)")
    if tag != 1:
        raise UsageError(f"{path} is not PCM (format tag {tag}); this model codes {wanted}")
    if bits != 8 * width:
        raise UsageError(f"{path} is {bits}-bit PCM; this model codes {wanted}")
    if channels != 1:
        raise UsageError(f"{path} has {channels} channels; this model codes mono {wanted}")
    if rate != info.sample_rate:
        raise UsageError(f"{path} is at {rate} Hz and the model at {info.sample_rate} Hz; lossless compression "
                         "cannot resample: give audio at the model's rate")


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
