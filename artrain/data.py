"""Built-in datasets as token sequences; nothing is downloaded at run time.

Every dataset is three `Split`s of int64 token sequences in [0, levels):
  digits  scikit-learn's 8x8 digit images, 17 gray levels, labelled 0..9
  text    CPython's bundled `pydoc_data.topics`, one character per token
  pystdlib the standard library's sources beside pydoc's topics, one UTF-8 byte per token (``textdata``)
  speech  spoken English words synthesised locally with espeak-ng, 8-bit mu-law at 16 kHz
          (``bits=16``: 16-bit linear PCM, 65,536 levels, token = sample + 32768)
  voices  words and sentences from recorded-speech Festival voices and espeak-ng, as `speech`;
          one voice held out as the test split (``artrain.voices``)
or a user's path: a text file (as UTF-8 bytes, or characters with ``text_as="characters"``), a folder of
WAV files, or a .npy of images.
This module is numpy/scipy/scikit-learn only (no torch) so it can be imported anywhere.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arrun.contract.codecs import (PCM16_LEVELS, audio_encode, encode_text, mulaw_encode, read_npy_images,
                                   read_npz_images, read_text, read_wav, resample_poly)
from arrun.contract.errors import ARError, UsageError
from arrun.contract.files import write_atomic

from . import textdata

SAMPLE_RATE = 16000  # Hz, for every audio dataset
SPLITS = ("train", "val", "test", "all")  # all: every sequence, in the data's own order
_TRAIN, _VAL, _TEST = 0, 1, 2
_BUILTINS = "digits, text, pystdlib, speech, voices, or a path (text file, folder of WAV files, .npy of images, .npz of labelled images)"


@dataclass(frozen=True)
class Split:
    """Sequences of one split, concatenated end to end."""
    tokens: np.ndarray          # (total,) int64, every value in [0, levels)
    offsets: np.ndarray         # (n + 1,) int64; sequence i is tokens[offsets[i]:offsets[i + 1]]
    labels: np.ndarray | None   # (n,) int64 class ids, or None when the data has no labels

    def __len__(self) -> int:
        """Number of sequences n."""
        return len(self.offsets) - 1

    def sequence(self, i: int) -> np.ndarray:
        """Sequence i as a (length_i,) int64 view into `tokens`."""
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]

    @property
    def n_dims(self) -> int:
        """Total number of tokens over all sequences."""
        return int(self.tokens.shape[0])


@dataclass(frozen=True)
class Dataset:
    """A tokenised dataset; `kind` says which of the optional fields are set."""
    name: str                    # 'digits', 'text', 'speech', or the user's path
    kind: str                    # 'image' | 'text' | 'audio'
    levels: int                  # vocabulary size: tokens are in [0, levels)
    train: Split
    val: Split
    test: Split
    image_shape: tuple[int, int] | None = None   # (H, W); one image per sequence, H*W tokens raster order
    alphabet: str | None = None                  # kind 'text': token i is character alphabet[i]
    sample_rate: int | None = None               # kind 'audio': Hz; tokens are 8-bit mu-law codes 0..255
    class_names: tuple[str, ...] = ()            # label i's name; () when unlabeled
    whole: Split | None = None                   # the data as one piece where splits cut one sequence (text)
    unconditioned: int = -1                      # the class id meaning "no condition" (condition dropout); -1: none

    @property
    def num_classes(self) -> int:
        """Number of label classes; 0 when unlabeled."""
        return len(self.class_names)

    def split(self, name: str) -> Split:
        """The split called `name` ('train' | 'val' | 'test' | 'all'); anything else -> UsageError."""
        if name not in SPLITS:
            raise UsageError(f"unknown split '{name}'; use {', '.join(SPLITS)}")
        if name == "all":
            return self.whole or _join([self.train, self.val, self.test])
        return getattr(self, name)


def load_dataset(name: str, *, alphabet: str | None = None, cache_dir: Path | None = None, bits: int = 8,
                 text_as: str = "") -> Dataset:
    """Load a built-in dataset or the user's data.

    name: 'digits' | 'text' | 'speech' (these win over same-named files), or a path: a UTF-8 text
    file, a folder of WAV files, or a .npy of images (N, H, W) integer levels.
    alphabet: for text, map characters with this alphabet (the one stored with a trained model)
    instead of building one; a character outside it -> UsageError. Given for non-text data -> UsageError.
    cache_dir: where `speech` and `voices` are cached (default: $ARTRAIN_CACHE or ~/.cache/artrain).
    bits: audio as 8-bit mu-law (256 levels) or 16 (16-bit linear PCM, 65,536 levels); 16 for other data -> UsageError.
    text_as: a text file as "bytes" (kind utf8, the default for files) or "characters" (kind text, the
    default for the built-in 'text'); an alphabet implies characters.
    Raises UsageError for bad input, ARError when espeak-ng is missing or fails.
    """
    if bits not in (8, 16) or (bits == 16 and data_kind(name) != "audio"):
        raise UsageError(f"bits {bits} was asked for {data_kind(name)} data; 16 is for audio (16-bit linear PCM), "
                         "8 (the default) for everything")
    if name == "digits":
        data = _load_digits()
    elif name == "text" and text_as != "bytes":
        data = _text_dataset("text", _pydoc_text(), alphabet)
    elif name == "text":
        data = textdata.bytes_dataset("text", _pydoc_text().encode("utf-8"))
    elif name == "pystdlib":
        data = textdata.pystdlib_dataset()
    elif name == "speech":
        data = _load_speech(cache_dir, bits)
    elif name == "voices":
        from .voices import load_voices  # voices imports this module
        data = load_voices(cache_dir, bits)
    else:
        data = _load_path(name, alphabet, bits, text_as)
    if alphabet is not None and data.alphabet is None:  # only text data has an alphabet
        raise UsageError(f"an alphabet was given but '{name}' is {data.kind} data; drop the alphabet")
    return data


def reload_dataset(name: str, kind: str, levels: int, alphabet: str | None = None) -> Dataset:
    """The dataset a model of data ``kind`` and ``levels`` levels was trained on, loaded as it was: text
    through the model's ``alphabet``, audio at the model's bit depth (16-bit for 65,536 levels)."""
    return load_dataset(name, alphabet=alphabet if kind == "text" else None, text_as=_text_as_of(kind),
                        bits=16 if kind == "audio" and levels == PCM16_LEVELS else 8)


def data_kind(name: str, text_as: str = "") -> str:
    """The kind of data ``load_dataset(name, text_as=text_as)`` gives ('image' | 'text' | 'utf8' | 'audio'),
    without loading it."""
    builtin = {"digits": "image", "text": "utf8" if text_as == "bytes" else "text", "pystdlib": "utf8",
               "speech": "audio", "voices": "audio"}
    if name in builtin:
        return builtin[name]
    path = Path(name).expanduser()
    return ("audio" if path.is_dir() else "image" if path.suffix.lower() in (".npy", ".npz")
            else "text" if text_as == "characters" else "utf8")


def _text_as_of(kind: str) -> str:
    """How a model of data ``kind`` reads text: 'bytes' for utf8, 'characters' for text."""
    return {"utf8": "bytes", "text": "characters"}.get(kind, "")


def is_builtin(name: str) -> bool:
    return name in ("digits", "text", "pystdlib", "speech", "voices")


# ---------------------------------------------------------------- splits and windows

def _split(seqs: list[np.ndarray], labels: list[int] | None) -> Split:
    """Concatenate 1-D int sequences (and their labels, if any) into one Split."""
    lengths = [len(s) for s in seqs]
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths, dtype=np.int64)
    tokens = np.concatenate(seqs).astype(np.int64) if seqs else np.zeros(0, np.int64)
    lab = None if labels is None else np.asarray(labels, dtype=np.int64).reshape(len(seqs))
    return Split(tokens, offsets, lab)


def _join(splits: list[Split]) -> Split:
    """The sequences (and labels) of several splits as one Split."""
    seqs = [s.sequence(i) for s in splits for i in range(len(s))]
    labels = None if splits[0].labels is None else [int(label) for s in splits for label in s.labels]
    return _split(seqs, labels)


def _splits(seqs: list[np.ndarray], labels: list[int] | None, which: np.ndarray) -> list[Split]:
    """[train, val, test]: split c holds the sequences i with which[i] == c, in their original order."""
    picks = [np.flatnonzero(which == code) for code in (_TRAIN, _VAL, _TEST)]
    return [_split([seqs[i] for i in idx], None if labels is None else [labels[i] for i in idx])
            for idx in picks]


def random_windows(split: Split, batch_size: int, length: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw `batch_size` random training windows of `length` tokens (``window_starts``).
    Returns (windows (batch_size, length) int64, labels (batch_size,) int64 or None)."""
    seq, start = window_starts(split, batch_size, length, rng)
    return windows_at(split, seq, start, length), None if split.labels is None else split.labels[seq]


def windows_at(split: Split, seq: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
    """The windows of `length` tokens at (sequence (B,), start in it (B,)) -> (B, length) int64."""
    return split.tokens[(split.offsets[seq] + start)[:, None] + np.arange(length)]


def window_starts(split: Split, batch_size: int, length: int, rng: np.random.Generator,
                  align: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Draw `batch_size` random windows of `length` tokens -> (sequence (B,), start in it (B,)) int64.

    Each window lies inside one sequence; its start is uniform over all valid start positions of the
    split, so a sequence is chosen with probability proportional to its number of valid windows and
    sequences shorter than `length` are never chosen (if all are -> UsageError). ``align`` > 1 rounds
    each start down to a multiple of it (a vocoder's windows start on a feature frame).
    """
    if batch_size < 1 or length < 1:
        raise UsageError(f"batch size and window length must be >= 1, got {batch_size} and {length}")
    n_valid = np.maximum(np.diff(split.offsets) - length + 1, 0)  # (n,) valid starts per sequence
    cum = np.cumsum(n_valid)                                        # (n,)
    if len(cum) == 0 or cum[-1] == 0:
        longest = int(np.diff(split.offsets).max(initial=0))
        raise UsageError(f"the data is too short for length {length} (longest sequence has {longest} "
                         "tokens); use a shorter length or more data")
    r = rng.integers(0, cum[-1], size=batch_size)                   # (B,) global window index
    seq = np.searchsorted(cum, r, side="right")                     # (B,) sequence of each window
    start = r - (cum[seq] - n_valid[seq])                           # (B,) first token, in the sequence
    return seq, start - start % align


# ---------------------------------------------------------------- images

def _image_dataset(name: str, images: np.ndarray, levels: int, which: np.ndarray,
                   labels: np.ndarray | None = None, class_names: tuple[str, ...] = ()) -> Dataset:
    """Images (N, H, W) ints in [0, levels) -> Dataset; which (N,) is the split code of each image."""
    n, h, w = images.shape
    seqs = list(images.reshape(n, h * w).astype(np.int64))  # N x (H*W,) raster order
    lab = None if labels is None else labels.tolist()
    return Dataset(name, "image", levels, *_splits(seqs, lab, which), image_shape=(h, w),
                   class_names=class_names)


def _load_digits() -> Dataset:
    """load_digits() in its own order: first 1000 train, next 350 val, last 447 test."""
    from sklearn.datasets import load_digits
    bunch = load_digits()
    which = np.full(len(bunch.images), _TEST)
    which[:1000], which[1000:1350] = _TRAIN, _VAL
    names = tuple(str(c) for c in range(10))
    return _image_dataset("digits", bunch.images.astype(np.int64), 17, which, bunch.target, names)


def _holdout_tail(n: int) -> np.ndarray:
    """Split codes (n,): last 10 % (at least 1) test, the 10 % before it val, the rest train."""
    k = max(1, n // 10)
    which = np.full(n, _TRAIN)
    which[n - 2 * k:n - k], which[n - k:] = _VAL, _TEST
    return which


def _load_npz(path: Path, name: str) -> Dataset:
    """A .npz of labelled images (see ``read_npz_images``): a class-conditional image dataset."""
    images, labels, names = read_npz_images(path)
    if images.shape[0] < 3:
        raise UsageError(f"{path} holds {images.shape[0]} images; give at least 3 to split them")
    levels = 256 if images.dtype == np.uint8 else int(images.max()) + 1
    return _image_dataset(name, images.astype(np.int64), levels, _holdout_tail(len(images)), labels, names)


def _load_npy(path: Path, name: str) -> Dataset:
    """A .npy of images (N, H, W) non-negative ints; levels 256 for uint8, else max + 1."""
    images = read_npy_images(path)
    if images.shape[0] < 3:
        raise UsageError(f"{path} holds {images.shape[0]} images; give at least 3 to split them")
    levels = 256 if images.dtype == np.uint8 else int(images.max()) + 1
    return _image_dataset(name, images, levels, _holdout_tail(len(images)))


# ---------------------------------------------------------------- text

def _pydoc_text() -> str:
    """The values of pydoc_data.topics.topics, in sorted key order, joined with "\\n"."""
    from pydoc_data.topics import topics
    return "\n".join(topics[k] for k in sorted(topics))


def _text_dataset(name: str, text: str, alphabet: str | None) -> Dataset:
    """One-sequence splits: train = first 90 % of characters; val and test are both the last 10 %."""
    if alphabet is None:
        alphabet = "".join(sorted(set(text)))
    elif not alphabet or len(set(alphabet)) != len(alphabet):
        raise UsageError("the alphabet is empty or repeats a character: "
                         "pass the one stored with the model")
    tokens = encode_text(text, alphabet, f"the text of {name}")   # (T,)
    cut = len(tokens) * 9 // 10
    held = _split([tokens[cut:]], None)
    return Dataset(name, "text", len(alphabet), _split([tokens[:cut]], None), held, held,
                   alphabet=alphabet, whole=_split([tokens], None))


def _load_text_file(path: Path, name: str, alphabet: str | None, text_as: str = "") -> Dataset:
    if path.suffix.lower() == ".wav":
        raise UsageError(f"{path} is one WAV file; give the folder that holds the WAV files")
    if alphabet is None and text_as != "characters":
        return textdata.read_bytes_file(path, name)
    return _text_dataset(name, read_text(path), alphabet)


# ---------------------------------------------------------------- audio

def _resample(x: np.ndarray, rate: int, source: str) -> np.ndarray:
    """(T,) float at `rate` Hz -> float at SAMPLE_RATE Hz, clipped to [-1, 1] (as `arrun` resamples a WAV)."""
    return np.clip(resample_poly(x, rate, SAMPLE_RATE, source), -1.0, 1.0)


def _read_wav(path: Path) -> np.ndarray:
    """A PCM WAV (8/16/24/32-bit, any channels, any rate) -> (T,) float64 mono at 16 kHz."""
    return _resample(*read_wav(path), str(path))


def _folder_splits(n: int) -> np.ndarray:
    """Split codes (n,) by sorted index: i % 10 == 9 test, i % 10 == 8 val, rest train.

    With fewer than 10 files that leaves val/test empty, so then the last file is test and the one
    before it val.
    """
    which = np.full(n, _TRAIN)
    which[8::10], which[9::10] = _VAL, _TEST
    if n < 10:
        which[-2], which[-1] = _VAL, _TEST
    return which


def _load_wav_folder(root: Path, name: str, bits: int) -> Dataset:
    """All *.wav under `root` (recursive, sorted by relative path), as 16 kHz 8-bit mu-law (or 16-bit linear).

    Labelled by the immediate parent folder's name when every WAV sits in a subfolder.
    Audio is neither trimmed nor normalised.
    """
    files = sorted((p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file()),
                   key=lambda p: p.relative_to(root).as_posix())
    if len(files) < 3:
        raise UsageError(f"{root} holds {len(files)} WAV files; give a folder with at least 3")
    levels = PCM16_LEVELS if bits == 16 else 256
    seqs = [audio_encode(_read_wav(p), levels) for p in files]
    class_names: tuple[str, ...] = ()
    labels = None
    if all(len(p.relative_to(root).parts) > 1 for p in files):
        class_names = tuple(sorted({p.parent.name for p in files}))
        labels = [class_names.index(p.parent.name) for p in files]
    return Dataset(name, "audio", levels, *_splits(seqs, labels, _folder_splits(len(files))),
                   sample_rate=SAMPLE_RATE, class_names=class_names)


def check_data_path(name: str) -> None:
    """UsageError unless ``name`` is a folder or a regular file, the paths ``load_dataset`` reads; cheap, so
    ``artrain fit`` says it before loading anything."""
    path = Path(name).expanduser()
    try:
        if not (path.is_dir() or path.is_file()):
            raise UsageError(f"'{name}' is neither a built-in dataset nor an existing path; use {_BUILTINS}")
    except OSError as e:  # permission denied on a folder above it, ...
        raise UsageError(f"cannot read {e.filename or path} ({e.strerror}); check the path and its permissions") from None


def _load_path(name: str, alphabet: str | None, bits: int = 8, text_as: str = "") -> Dataset:
    """Dispatch a user path: folder -> WAVs, *.npy -> images, any other file -> UTF-8 text."""
    check_data_path(name)
    path = Path(name).expanduser()
    try:
        if path.is_dir():
            return _load_wav_folder(path, name, bits)
        if path.suffix.lower() == ".npy":
            return _load_npy(path, name)
        if path.suffix.lower() == ".npz":
            return _load_npz(path, name)
        return _load_text_file(path, name, alphabet, text_as)
    except OSError as e:  # permission denied, unreadable folder entries, ...
        raise UsageError(f"cannot read {e.filename or path} ({e.strerror}); "
                         "check the path and its permissions") from None


# ---------------------------------------------------------------- speech (espeak-ng)

SPEECH_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "yes", "no", "up", "down", "left", "right", "go", "stop", "on", "off",
                "hello", "world", "cat", "dog", "bird", "red", "blue", "green", "house", "tree")
SPEECH_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us+f3")
SPEECH_SPEEDS = (140, 180)        # words per minute
SPEECH_PITCHES = (35, 50, 70)     # espeak-ng pitch 0..99
_SPEECH_VARIANTS = [(v, s, p) for v in SPEECH_VOICES for s in SPEECH_SPEEDS for p in SPEECH_PITCHES]
_SILENCE = 0.02                   # trim threshold, fraction of the clip's peak
_SPEECH_VERSION = 2               # bump when the recipe below changes in a way the hash cannot see


def _speech_cache_file(cache_dir: Path | None) -> Path:
    """<cache_dir>/speech-v<version>-<recipe hash>.npz."""
    if cache_dir is None:
        cache_dir = Path(os.environ.get("ARTRAIN_CACHE") or Path.home() / ".cache" / "artrain")
    recipe = repr((SPEECH_WORDS, _SPEECH_VARIANTS, SAMPLE_RATE, _SILENCE)).encode()
    return Path(cache_dir) / f"speech-v{_SPEECH_VERSION}-{hashlib.sha1(recipe).hexdigest()[:8]}.npz"


def _speech_split_of(word: int, variant: int) -> int:
    """Held-out rule: r = (variant + word) % 12; r == 11 -> test, r == 10 -> val, else train.

    Over the 36 variants that is 3 test, 3 val and 30 train clips per word; the shift by word id
    makes different (voice, speed, pitch) variants held out for different words.
    """
    r = (variant + word) % 12
    return _TEST if r == 11 else _VAL if r == 10 else _TRAIN


def _synthesise(word: str, voice: str, speed: int, pitch: int, wav: Path) -> np.ndarray:
    """One espeak-ng clip -> (T,) float64 samples at 16 kHz, silence-trimmed and peak-normalised."""
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), word]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        raise ARError(f"espeak-ng failed on '{word}' with voice {voice} ({e}); "
                           "check the espeak-ng install (apt-get install espeak-ng)") from None
    x = _read_wav(wav)                             # (T,) at 16 kHz
    peak = np.abs(x).max(initial=0.0)
    if peak == 0:
        raise ARError(f"espeak-ng produced silence for '{word}' with voice {voice}; "
                           "check the espeak-ng install")
    x = x / peak
    loud = np.flatnonzero(np.abs(x) > _SILENCE)
    return x[loud[0]:loud[-1] + 1]


def _build_speech() -> dict[str, np.ndarray]:
    """Synthesise every (word, variant) clip, word-major; returns the arrays stored in the cache."""
    if shutil.which("espeak-ng") is None:
        raise ARError("espeak-ng is needed to build the 'speech' dataset and was not found; "
                           "install it: apt-get install espeak-ng")
    jobs = [(w, v) for w in range(len(SPEECH_WORDS)) for v in range(len(_SPEECH_VARIANTS))]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=2) as pool:
        def clip(job: tuple[int, int]) -> np.ndarray:
            word, variant = job
            return _synthesise(SPEECH_WORDS[word], *_SPEECH_VARIANTS[variant],
                               Path(tmp) / f"{word}-{variant}.wav")
        clips = list(pool.map(clip, jobs))
    joined = _split([mulaw_encode(x) for x in clips], [w for w, _ in jobs])
    pcm = np.concatenate([audio_encode(x, PCM16_LEVELS) - 32768 for x in clips]).astype(np.int16)
    return {"tokens": joined.tokens.astype(np.uint8), "pcm16": pcm, "offsets": joined.offsets,
            "labels": joined.labels, "split": np.array([_speech_split_of(w, v) for w, v in jobs])}


def _save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez written atomically: no reader sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        def savez(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        write_atomic(path, savez)
    except OSError as e:
        raise ARError(f"cannot write the speech cache {path} ({e.strerror}); "
                      "set ARTRAIN_CACHE to a writable folder") from None


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the file is missing or unreadable (it is then rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in ("tokens", "pcm16", "offsets", "labels", "split")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _load_speech(cache_dir: Path | None, bits: int = 8) -> Dataset:
    """The espeak-ng words dataset, built on first use and cached as one .npz (mu-law codes and 16-bit samples).

    30 words x 6 voices x 2 speeds x 3 pitches = 1080 clips; held out per `_speech_split_of`.
    Deterministic for a given espeak-ng version.
    """
    path = _speech_cache_file(cache_dir)
    arrays = _read_cache(path)
    if arrays is None:
        arrays = _build_speech()
        _save_atomic(path, arrays)
    offsets = arrays["offsets"]
    tokens = arrays["pcm16"].astype(np.int64) + 32768 if bits == 16 else arrays["tokens"].astype(np.int64)
    seqs = np.split(tokens, offsets[1:-1])  # n x (T_i,)
    splits = _splits(seqs, arrays["labels"].tolist(), arrays["split"])
    return Dataset("speech", "audio", PCM16_LEVELS if bits == 16 else 256, *splits, sample_rate=SAMPLE_RATE,
                   class_names=SPEECH_WORDS)
