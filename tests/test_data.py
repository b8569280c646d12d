"""Tests for artrain.data: built-in datasets, user paths, mu-law and random windows."""
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from artrain import data
from artrain.data import Dataset, Split, load_dataset, random_windows
from arrun.contract.codecs import mulaw_decode, mulaw_encode
from arrun.contract.errors import ARError, UsageError


def _check_split(split: Split, levels: int) -> None:
    """Structural contract of a Split."""
    assert split.tokens.dtype == np.int64 and split.offsets.dtype == np.int64
    assert split.offsets[0] == 0 and split.offsets[-1] == split.n_dims
    assert np.all(np.diff(split.offsets) >= 0)
    if split.n_dims:
        assert 0 <= split.tokens.min() and split.tokens.max() < levels
    if split.labels is not None:
        assert split.labels.dtype == np.int64 and split.labels.shape == (len(split),)


def _check_dataset(ds: Dataset) -> None:
    for name in data.SPLITS:
        _check_split(ds.split(name), ds.levels)
        assert (ds.split(name).labels is None) == (ds.num_classes == 0)


# ---------------------------------------------------------------- digits

def test_digits_splits_and_values():
    from sklearn.datasets import load_digits
    ds = load_dataset("digits")
    _check_dataset(ds)
    assert (ds.kind, ds.levels, ds.image_shape) == ("image", 17, (8, 8))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (1000, 350, 447)
    assert ds.class_names == tuple("0123456789") and ds.num_classes == 10
    bunch = load_digits()
    np.testing.assert_array_equal(ds.train.sequence(0), bunch.images[0].reshape(-1))
    np.testing.assert_array_equal(ds.test.sequence(446), bunch.images[-1].reshape(-1))
    np.testing.assert_array_equal(ds.val.labels, bunch.target[1000:1350])
    assert ds.train.n_dims == 1000 * 64


def test_unknown_split_and_name():
    ds = load_dataset("digits")
    with pytest.raises(UsageError, match="train, val, test, all"):
        ds.split("dev")
    with pytest.raises(UsageError, match="digits, text, pystdlib, speech, voices, or a path"):
        load_dataset("no-such-dataset-or-file")


# ---------------------------------------------------------------- text

def test_builtin_text_split_and_round_trip():
    from pydoc_data.topics import topics
    text = "\n".join(topics[k] for k in sorted(topics))
    ds = load_dataset("text")
    _check_dataset(ds)
    assert ds.kind == "text" and ds.alphabet == "".join(sorted(set(text)))
    assert ds.levels == len(ds.alphabet) and ds.num_classes == 0
    assert len(ds.train) == len(ds.val) == len(ds.test) == 1
    assert ds.train.n_dims == len(text) * 9 // 10
    assert ds.train.n_dims + ds.val.n_dims == len(text)
    np.testing.assert_array_equal(ds.val.tokens, ds.test.tokens)
    decoded = "".join(ds.alphabet[t] for t in np.concatenate([ds.train.tokens, ds.val.tokens]))
    assert decoded == text
    again = load_dataset("text", alphabet=ds.alphabet)
    np.testing.assert_array_equal(again.train.tokens, ds.train.tokens)


def test_text_file_with_given_alphabet(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("héllo wörld\n" * 10, encoding="utf-8")
    own = load_dataset(str(f), text_as="characters")
    assert own.name == str(f) and own.alphabet == "".join(sorted(set("héllo wörld\n")))
    alphabet = "zyxwvutsrqponmlkjihgfedcba öé\n"
    ds = load_dataset(str(f), alphabet=alphabet)
    assert ds.levels == len(alphabet)
    text = "".join(alphabet[t] for t in np.concatenate([ds.train.tokens, ds.val.tokens]))
    assert text == "héllo wörld\n" * 10
    with pytest.raises(UsageError, match="outside the model's alphabet"):
        load_dataset(str(f), alphabet="abc")
    with pytest.raises(UsageError, match="alphabet"):
        load_dataset("digits", alphabet="abc")


def test_text_file_errors(tmp_path):
    """As characters a file must be UTF-8; as bytes (the default) any file is taken, but not an empty one."""
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café".encode("latin-1"))
    with pytest.raises(UsageError, match=r"latin1\.txt is not valid UTF-8.*convert it to UTF-8"):
        load_dataset(str(bad), text_as="characters")
    assert load_dataset(str(bad)).whole.tokens.tolist() == list("café".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    for text_as in ("bytes", "characters"):
        with pytest.raises(UsageError, match="empty"):
            load_dataset(str(empty), text_as=text_as)


# ---------------------------------------------------------------- WAV folders

def _write_wav(path: Path, x: np.ndarray, rate: int, width: int = 2) -> None:
    """x (frames, channels) floats in [-1, 1] -> PCM WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = 2 ** (8 * width - 1) - 1
    if width == 1:
        raw = (np.round(x * 127) + 128).astype(np.uint8).tobytes()
    elif width == 3:
        v = np.round(x * scale).astype("<i4").reshape(-1, 1).view(np.uint8)  # (n, 4) little-endian
        raw = v[:, :3].tobytes()
    else:
        raw = np.round(x * scale).astype(f"<i{width}").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def _tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.repeat(0.5 * np.sin(2 * np.pi * 440 * t)[:, None], channels, axis=1)


def test_wav_folder_labels_rates_and_splits(tmp_path):
    specs = [(8000, 1, 2), (16000, 2, 2), (22050, 1, 1), (44100, 2, 3), (16000, 1, 4)]
    for i in range(12):
        rate, channels, width = specs[i % len(specs)]
        _write_wav(tmp_path / ("cat" if i % 2 else "dog") / f"{i:02d}.wav",
                   _tone(0.1, rate, channels), rate, width)
    ds = load_dataset(str(tmp_path))
    _check_dataset(ds)
    assert (ds.kind, ds.levels, ds.sample_rate) == ("audio", 256, 16000)
    assert ds.class_names == ("cat", "dog")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (10, 1, 1)
    lengths = np.diff(np.concatenate([ds.train.offsets, ds.val.offsets[1:] + ds.train.n_dims]))
    assert np.all(np.abs(lengths - 1600) <= 2)        # 0.1 s at 16 kHz whatever the source rate
    # sorted order is cat/01, 03, ..., 11, dog/00, ...; index 8 (dog/04) val, index 9 (dog/06) test
    assert ds.val.labels.tolist() == [1] and ds.test.labels.tolist() == [1]
    x = mulaw_decode(ds.test.sequence(0))
    assert 0.4 < np.abs(x[100:-100]).max() < 0.6         # every format decodes to the same tone


def test_wav_folder_unlabeled_and_small(tmp_path):
    for i in range(3):
        _write_wav(tmp_path / f"{i}.wav", _tone(0.05, 16000), 16000)
    ds = load_dataset(str(tmp_path))
    assert ds.class_names == () and ds.train.labels is None
    assert (len(ds.train), len(ds.val), len(ds.test)) == (1, 1, 1)
    (tmp_path / "2.wav").unlink()
    with pytest.raises(UsageError, match="at least 3"):
        load_dataset(str(tmp_path))


@pytest.mark.parametrize("content", [None, b"RIFF\x00\x00garbage"], ids=["empty", "corrupt"])
def test_wav_folder_bad_file(tmp_path, content):
    for i in range(3):
        _write_wav(tmp_path / f"{i}.wav", _tone(0.05, 16000), 16000)
    bad = tmp_path / "bad.wav"
    if content is None:
        _write_wav(bad, np.zeros((0, 1)), 16000)
    else:
        bad.write_bytes(content)
    with pytest.raises(UsageError, match=r"bad\.wav"):
        load_dataset(str(tmp_path))


# ---------------------------------------------------------------- .npy images

def test_npy_images(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 5, size=(30, 4, 6))
    np.save(tmp_path / "im.npy", images)
    ds = load_dataset(str(tmp_path / "im.npy"))
    _check_dataset(ds)
    assert (ds.kind, ds.levels, ds.image_shape) == ("image", int(images.max()) + 1, (4, 6))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (24, 3, 3)
    np.testing.assert_array_equal(ds.test.sequence(2), images[-1].reshape(-1))
    np.save(tmp_path / "u8.npy", images.astype(np.uint8))
    assert load_dataset(str(tmp_path / "u8.npy")).levels == 256


@pytest.mark.parametrize("bad", [np.full((5, 2, 2), -1), np.zeros((5, 2, 2), np.float32),
                                 np.zeros((5, 4), np.int64)], ids=["negative", "float", "2d"])
def test_npy_rejects(tmp_path, bad):
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(UsageError):
        load_dataset(str(tmp_path / "bad.npy"))


# ---------------------------------------------------------------- mu-law and windows

def test_mulaw_round_trip():
    x = np.linspace(-1, 1, 10001)
    codes = mulaw_encode(x)
    assert codes.dtype == np.int64 and codes.min() == 0 and codes.max() == 255
    y = mulaw_decode(codes)
    assert y.dtype == np.float32
    # the code step in the companded domain is 2/255; dx/dy <= ln(256) * 256 / 255 at |x| = 1
    assert np.abs(y - x).max() <= np.log(256) * 256 / 255 / 255 + 1e-6
    small = np.abs(x) < 0.01
    assert np.abs(y - x)[small].max() < 1e-3              # fine resolution near zero
    assert mulaw_encode(np.array([0.0])).item() == 128
    np.testing.assert_array_equal(mulaw_encode(mulaw_decode(np.arange(256))), np.arange(256))
    assert mulaw_encode(np.array([-3.0, 3.0])).tolist() == [0, 255]


def test_random_windows():
    seqs = [np.arange(10), np.arange(100, 103), np.arange(200, 220)]
    split = data._split(seqs, [0, 1, 2])
    windows, labels = random_windows(split, 500, 5, np.random.default_rng(1))
    assert windows.shape == (500, 5) and windows.dtype == np.int64 and labels.shape == (500,)
    assert np.all(np.diff(windows, axis=1) == 1)          # contiguous, never across sequences
    assert set(labels.tolist()) == {0, 2}                 # the 3-token sequence is never chosen
    np.testing.assert_array_equal(windows[:, 0] // 100, labels // 2 * 2)
    assert 0.15 < np.mean(labels == 0) < 0.35             # 6 of 22 valid starts
    again, _ = random_windows(split, 500, 5, np.random.default_rng(1))
    np.testing.assert_array_equal(again, windows)
    whole, none = random_windows(data._split(seqs, None), 3, 20, np.random.default_rng(0))
    assert none is None and np.all(whole == np.arange(200, 220))
    with pytest.raises(UsageError, match="too short"):
        random_windows(split, 2, 21, np.random.default_rng(0))


# ---------------------------------------------------------------- speech

@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """The speech dataset, built once into a fresh cache dir for this module."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    cache = tmp_path_factory.mktemp("speech-cache")
    return load_dataset("speech", cache_dir=cache), cache


def test_speech_dataset(speech):
    ds, cache = speech
    _check_dataset(ds)
    assert (ds.kind, ds.levels, ds.sample_rate) == ("audio", 256, 16000)
    assert ds.class_names == data.SPEECH_WORDS
    assert len(ds.train) and len(ds.val) and len(ds.test)
    for split in (ds.train, ds.val, ds.test):
        assert set(split.labels.tolist()) == set(range(ds.num_classes))  # every word in every split
    assert np.diff(ds.train.offsets).min() > 1600                       # > 0.1 s per clip
    assert len(list(cache.glob("speech-v*.npz"))) == 1 and not list(cache.glob("*.tmp"))


def test_speech_second_load_hits_cache(speech, monkeypatch):
    ds, cache = speech
    monkeypatch.setattr(data, "_build_speech", lambda: pytest.fail("rebuilt instead of using the cache"))
    again = load_dataset("speech", cache_dir=cache)
    for name in data.SPLITS:
        np.testing.assert_array_equal(again.split(name).tokens, ds.split(name).tokens)
        np.testing.assert_array_equal(again.split(name).offsets, ds.split(name).offsets)
        np.testing.assert_array_equal(again.split(name).labels, ds.split(name).labels)


def test_speech_is_deterministic(speech, tmp_path):
    ds, _ = speech
    assert data._speech_split_of(0, 0) == 0                 # clip (word 0, variant 0) is train 0
    clips = [data._synthesise(data.SPEECH_WORDS[0], *data._SPEECH_VARIANTS[0], tmp_path / f"{i}.wav")
             for i in range(2)]
    np.testing.assert_array_equal(clips[0], clips[1])
    np.testing.assert_array_equal(data.mulaw_encode(clips[0]), ds.train.sequence(0))


def test_speech_at_16_bits_is_the_same_clips_linear(speech):
    """bits=16: the same clips as 16-bit samples + 32768, whose mu-law codes are the 8-bit dataset's but for
    the samples 16-bit rounding moved across a code boundary."""
    ds, cache = speech
    wide = load_dataset("speech", cache_dir=cache, bits=16)
    assert (wide.levels, wide.kind, wide.sample_rate) == (65536, "audio", ds.sample_rate)
    np.testing.assert_array_equal(wide.test.offsets, ds.test.offsets)
    x = wide.test.tokens - 32768  # (T,) 16-bit samples
    assert x.min() >= -32768 and x.max() <= 32767 and len(np.unique(x)) > 4096  # linear, not 256 levels
    same = data.mulaw_encode(x / 32768.0) == ds.test.tokens
    assert same.mean() > 0.99


def test_speech_without_espeak(tmp_path, monkeypatch):
    monkeypatch.setattr(data.shutil, "which", lambda name: None)
    with pytest.raises(ARError, match="apt-get install espeak-ng"):
        load_dataset("speech", cache_dir=tmp_path)
