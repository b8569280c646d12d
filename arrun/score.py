"""Negative log-likelihood of the user's data, in bits per dimension, by the rule ``artrain eval`` uses:
every sequence is scored from the initial state in consecutive chunks of ``max_length`` elements (the
whole sequence when the model is unbounded); bits/dim = sum of -ln p(x_t | x_<t in its chunk) / n_dims / ln 2.

DATA by the model's data kind:
- image: a .npy (N, H, W) of integer levels, one 8-bit grayscale PNG, or a folder of them (levels are the
  pixel values, which must lie in [0, V));
- audio: a PCM WAV or a folder of them (mono or mixed down, linearly resampled to the model's rate,
  mu-law encoded);
- text: a UTF-8 file mapped through the model's alphabet.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .codecs import encode_text, mulaw_encode, png_decode, read_wav, resample_linear
from .errors import RunError, UsageError, first_line
from .generate import Stepper
from .schema import CONDITION_INPUT, LOGITS_OUTPUT, TOKEN_INPUT, ModelInfo
from .session import ORT_ERRORS, Model

_SUFFIX_KIND = {".npy": "image", ".png": "image", ".wav": "audio"}
_EXPECTED = {"image": "a .npy (N, H, W) of integer levels, an 8-bit grayscale PNG or a folder of PNGs",
             "audio": "a PCM WAV file or a folder of WAV files", "text": "a UTF-8 text file"}
MAX_LOGITS = 1 << 24  # floats of logits per full-graph run (64 MB)
MAX_STEP_BATCH = 256


def load_sequences(path: Path, info: ModelInfo) -> list[np.ndarray]:
    """DATA -> int64 token sequences in [0, V) for ``info``'s data kind; UsageError when it does not fit."""
    path, kind = Path(path), info.data_kind
    if not path.exists():
        raise UsageError(f"{path} does not exist: give {_EXPECTED[kind]}")
    if path.is_dir():
        if kind == "text":
            raise UsageError(f"{path} is a folder: give {_EXPECTED[kind]}")
        suffix = ".png" if kind == "image" else ".wav"
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == suffix and p.is_file())
        if not files:
            raise UsageError(f"{path} holds no {suffix} files: give {_EXPECTED[kind]}")
    else:
        found = _SUFFIX_KIND.get(path.suffix.lower(), "text")
        if found != kind:
            raise UsageError(f"{path} is {found} data but the model takes {kind} data: give {_EXPECTED[kind]}")
        files = [path]
    try:
        if kind == "image":
            return [s for p in files for s in _image_sequences(p, info)]
        if kind == "audio":
            return [_audio_sequence(p, info) for p in files]
        return [_text_sequence(files[0], info)]
    except OSError as e:
        raise UsageError(f"cannot read {e.filename or path} ({e.strerror}): "
                         "check the path and its permissions") from None


def _image_sequences(path: Path, info: ModelInfo) -> list[np.ndarray]:
    if path.suffix.lower() == ".npy":
        try:
            images = np.load(path, allow_pickle=False)
        except (ValueError, EOFError):
            raise UsageError(f"{path} is not a readable .npy array: save the images with numpy.save") from None
        if images.ndim != 3 or not np.issubdtype(images.dtype, np.integer) or not len(images):
            raise UsageError(f"{path} holds a {images.dtype} array of shape {images.shape}: "
                             "images must be a non-empty integer array (N, H, W)")
    else:
        images = png_decode(path.read_bytes(), str(path))[None]
    if images.shape[1:] != tuple(info.image_shape):
        raise UsageError(f"{path} has images of {images.shape[1]}x{images.shape[2]}, the model "
                         f"{info.image_shape[0]}x{info.image_shape[1]}: resize them")
    low, high = int(images.min()), int(images.max())
    if low < 0 or high >= info.vocab_size:
        raise UsageError(f"{path} has levels {low}..{high} but the model has {info.vocab_size} levels "
                         f"(0..{info.vocab_size - 1}): quantise the images to those levels")
    return list(images.reshape(len(images), -1).astype(np.int64))


def _audio_sequence(path: Path, info: ModelInfo) -> np.ndarray:
    x, rate = read_wav(path)
    return mulaw_encode(resample_linear(x, rate, info.sample_rate), info.vocab_size)


def _text_sequence(path: Path, info: ModelInfo) -> np.ndarray:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not valid UTF-8 (byte {e.start}): convert it to UTF-8") from None
    if not text:
        raise UsageError(f"{path} is empty: give a text file with some content")
    return encode_text(text, info.alphabet, str(path))


def chunks(sequences: list[np.ndarray], max_length: int) -> list[np.ndarray]:
    """Each sequence cut into consecutive chunks of ``max_length`` (0: whole), the artrain eval rule."""
    return [s[i:i + (max_length or len(s))] for s in sequences for i in range(0, len(s), max_length or len(s))]


def score(model: Model, sequences: list[np.ndarray], condition: int | None = None) -> dict:
    """-> {bits_per_dim, nats_per_dim, n_dims, n_sequences, n_chunks, graph}; ``condition`` is a class id
    checked by ``check_condition`` (None for an unconditional model)."""
    info = model.info
    pieces = chunks(sequences, info.max_length)
    by_length: dict[int, list[np.ndarray]] = {}
    for piece in pieces:
        by_length.setdefault(len(piece), []).append(piece)
    nats = 0.0
    try:
        for T, group in sorted(by_length.items()):
            x = np.stack(group)  # (N, T)
            size = max(1, MAX_LOGITS // (T * info.vocab_size)) if info.graph == "full" else MAX_STEP_BATCH
            for i in range(0, len(x), size):
                batch = x[i:i + size]
                cond = None if condition is None else np.full(len(batch), condition, np.int64)
                nats += (_nll_full if info.graph == "full" else _nll_step)(model, batch, cond)
    except ORT_ERRORS as e:
        raise RunError(f"onnxruntime failed while scoring ({first_line(e)})") from None
    n_dims = sum(len(p) for p in pieces)
    return {"bits_per_dim": nats / n_dims / math.log(2), "nats_per_dim": nats / n_dims, "n_dims": n_dims,
            "n_sequences": len(sequences), "n_chunks": len(pieces), "graph": info.graph}


def _nll(logits: np.ndarray, targets: np.ndarray) -> float:
    """Sum of -log softmax(logits)[target]; logits (..., V), targets (...) in float64."""
    x = logits.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]
    return float((lse - np.take_along_axis(x, targets[..., None], axis=-1)[..., 0]).sum())


def _nll_full(model: Model, x: np.ndarray, cond: np.ndarray | None) -> float:
    """x (B, T) through the full graph: logits (B, T, V) in one run."""
    feeds = {TOKEN_INPUT: x} if cond is None else {TOKEN_INPUT: x, CONDITION_INPUT: cond}
    (logits,) = model.session.run([LOGITS_OUTPUT], feeds)
    return _nll(logits, x)


def _nll_step(model: Model, x: np.ndarray, cond: np.ndarray | None) -> float:
    """x (B, T) through the step graph by teacher forcing: position t is fed x_{t-1}."""
    stepper = Stepper(model, len(x))
    stepper.reset(cond)
    feed = np.full(len(x), model.info.start_token, np.int64)
    total = 0.0
    for t in range(x.shape[1]):
        total += _nll(stepper.step(feed, t), x[:, t])
        feed[:] = x[:, t]
    return total
