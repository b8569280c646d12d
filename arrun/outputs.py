"""Where samples go, by data kind (``kinds`` picks the sink). Nothing appears at an output path until it
is complete: every file is a ``contract.files.PendingFile`` (a unique temporary name in the same folder,
renamed at the end; devices and FIFOs written straight through); on any error they are removed (``discard``).

- image: one PNG grid (levels scaled to 0..255; one row per class when every class was sampled) and the
  raw levels as .npy (N, H, W) int64;
- audio: one 16-bit PCM WAV per sample (mu-law decoded), written as it is generated to its pending file
  (its header already announces the planned length, so it plays while it grows) and renamed when done;
- text: characters streamed to a text stream as they are generated, and written to ``--out`` if given.
With more than one sample, audio and text files are numbered: out-000.wav, out-001.wav, ...
``--out -`` writes to stdout instead (the PNG alone; the WAV as it is generated, so it plays while it
grows; text as it comes); a device or FIFO (/dev/null, a named pipe) is written straight through.
"""
from __future__ import annotations

import io
import sys
import tempfile
import wave
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from .contract.codecs import audio_pcm16, png_encode
from .contract.errors import ARError, UsageError
from .contract.files import PendingFile, is_special
from .contract.schema import ModelInfo

if TYPE_CHECKING:
    from .generate import Plan

TILE = 32  # small images are scaled up by an integer factor to about this many pixels
STDOUT = Path("-")
MAX_FILES = 10_000  # output files one run writes


def check_output(path: Path, suffixes: tuple[str, ...] = ()) -> None:
    """``path`` can be created or replaced: its folder exists and is writable, it is no folder, and it has
    one of ``suffixes`` (any when empty) unless it is a device or FIFO."""
    try:
        _check_output(path, suffixes)
    except OSError as e:
        raise UsageError(f"cannot use --out {str(path)[:200]} ({e.strerror}); choose another --out") from None


def _check_output(path: Path, suffixes: tuple[str, ...]) -> None:
    if is_special(path):
        return
    if suffixes and path.suffix.lower() not in suffixes:
        raise UsageError(f"--out {path}: this model writes {' or '.join(suffixes)} files; give a name ending in "
                         f"{suffixes[0]} (or - for stdout)")
    if path.is_dir():
        raise UsageError(f"output path {path} is a directory; give a file name with --out")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"output directory {folder} does not exist; create it or choose another --out")
    try:  # the only sure test that a file can be created there (/proc, read-only mounts, permissions)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UsageError(f"cannot write to the output directory {folder} ({e.strerror}); choose another --out") from None


def numbered(path: Path, i: int, n: int) -> Path:
    """out.wav -> out-003.wav when there are several samples, else out.wav."""
    return path if n == 1 else path.with_name(f"{path.stem}-{i:0{max(3, len(str(n - 1)))}d}{path.suffix}")


def output_paths(out: Path, n: int, suffixes: tuple[str, ...] = (), labels: list[str] | None = None) -> list[Path]:
    """One checked path per sample (numbered when n > 1, within each label when the samples have labels:
    out-seven-000.wav); stdout and devices take one sample only."""
    if n > 1 and (out == STDOUT or is_special(out)):
        raise UsageError(f"--out {out} takes one sample and {n} were asked for; give -n 1 or a file name "
                         "(samples are then numbered NAME-000, NAME-001, ...)")
    if n > MAX_FILES:
        raise UsageError(f"{n:,} samples would write {n:,} files, more than the {MAX_FILES:,} one run writes; "
                         "give a smaller -n")
    if labels is None or n == 1:
        paths = [numbered(out, i, n) for i in range(n)]
    else:
        seen: dict[str, int] = {}
        paths = []
        for label in labels:
            seen[label] = seen.get(label, -1) + 1
            paths.append(out.with_name(f"{out.stem}-{label}-{seen[label]:03d}{out.suffix}"))
    for path in paths:
        if path != STDOUT:
            check_output(path, suffixes)
    return paths


class StdoutFile:
    """stdout as an output file: written straight through, so nothing to commit or discard."""
    path = STDOUT

    def __init__(self):
        self.file = sys.stdout.buffer

    def commit(self) -> Path:
        self.file.flush()
        return STDOUT

    def discard(self) -> None:
        pass


def open_output(path: Path) -> PendingFile | StdoutFile:
    return StdoutFile() if path == STDOUT else PendingFile(path)


def write_files(contents: dict[Path, bytes]) -> None:
    """Write every file to its pending file (stdout for ``-``), then commit them all: no file ever appears
    half-written, and a failed write leaves no temporary file behind."""
    pending: list[PendingFile | StdoutFile] = []
    try:
        for path, data in contents.items():
            pending.append(open_output(path))
            pending[-1].file.write(data)
        for file in pending:
            file.commit()
    except OSError as e:
        raise ARError(f"cannot write {e.filename or 'the output'} ({e.strerror}); check the disk space and --out") from None
    finally:
        for file in pending:
            file.discard()


class ImageSink:
    """Collects (N, H*W) levels; ``commit`` writes the PNG grid and, beside a regular file, the .npy."""

    def __init__(self, out: Path, info: ModelInfo, plan: Plan):
        self.png = out
        self.npy = None if out == STDOUT or is_special(out) else out.with_suffix(".npy")
        if self.npy is not None:
            check_output(self.png, (".png",))
            check_output(self.npy)
        self.info, self.plan = info, plan
        self.images = np.zeros((plan.n, *info.image_shape), np.int64)  # (N, H, W)
        self._indices = range(0)

    def begin(self, indices: range) -> None:
        self._indices = indices

    def update(self, tokens: np.ndarray, done: int) -> None:
        pass

    def end(self, tokens: np.ndarray) -> None:
        self.images[self._indices.start:self._indices.stop] = tokens.reshape(-1, *self.info.image_shape)

    def record(self) -> dict:
        return {}

    def commit(self) -> list[Path]:
        cols = len(self.images) // self.info.num_classes if self.plan.per_class else None
        png = png_encode(image_grid(self.images, self.info.vocab_size, cols))
        files = {self.png: png} if self.npy is None else {self.png: png, self.npy: npy_bytes(self.images)}
        write_files(files)
        return list(files)

    def discard(self) -> None:
        pass


def image_grid(images: np.ndarray, levels: int, cols: int | None = None) -> np.ndarray:
    """(N, H, W) levels -> (rows * (h + 1) + 1, cols * (w + 1) + 1) uint8 grid with 1-pixel white lines;
    levels are scaled to 0..255 and small images magnified. cols None: about square."""
    n, h, w = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    scale = max(1, TILE // max(h, w))
    tiles = np.round(images * (255.0 / max(levels - 1, 1))).astype(np.uint8)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)  # (N, h*s, w*s)
    th, tw = h * scale, w * scale
    grid = np.full((rows * (th + 1) + 1, cols * (tw + 1) + 1), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[1 + r * (th + 1):1 + r * (th + 1) + th, 1 + c * (tw + 1):1 + c * (tw + 1) + tw] = tile
    return grid


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


class AudioSink:
    """One growing WAV per sample: decoded and appended every ``chunk`` steps."""

    def __init__(self, out: Path, info: ModelInfo, plan: Plan):
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

    def record(self) -> dict:
        return {}

    def commit(self) -> list[Path]:
        for pending in self._pending:
            pending.commit()
        self._pending = []
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


class TextSink:
    """Decodes tokens through the alphabet; streams characters as they come when one sample runs at a
    time (otherwise each sample as its batch ends): flushed per character to a terminal, per line to a
    file or pipe."""

    def __init__(self, out: Path | None, info: ModelInfo, plan: Plan, stream: TextIO | None):
        if out == STDOUT and stream is None:
            raise UsageError("--out - writes the text to stdout, where --json writes the record; drop one of them")
        self.paths = output_paths(out, plan.n) if out and out != STDOUT else []
        self.alphabet, self.stream, self.plan = info.alphabet, stream, plan
        self.texts: list[str] = []
        self.tokens: list[list[int]] = []
        self._live = False
        self._shown = 0
        self._per_character = stream is not None and stream.isatty()

    def begin(self, indices: range) -> None:
        self._live, self._shown = self.stream is not None and len(indices) == 1, 0
        if self.stream is not None and indices.start > 0:
            self.stream.write("\n")  # a blank line between samples

    def update(self, tokens: np.ndarray, done: int) -> None:
        if self._live:
            text = "".join(self.alphabet[t] for t in tokens[0, self._shown:done])
            self.stream.write(text)
            if self._per_character or "\n" in text:
                self.stream.flush()
            self._shown = done

    def end(self, tokens: np.ndarray) -> None:
        texts = ["".join(self.alphabet[t] for t in row) for row in tokens]
        if self.stream is not None:
            self.stream.write("\n" if self._live else "\n\n".join(texts) + "\n")
            self.stream.flush()
        self.texts.extend(texts)
        self.tokens.extend(tokens.tolist())

    def record(self) -> dict:
        return {"text": self.texts, "tokens": self.tokens}

    def commit(self) -> list[Path]:
        write_files({path: text.encode("utf-8") for path, text in zip(self.paths, self.texts)})
        return list(self.paths)

    def discard(self) -> None:
        pass
