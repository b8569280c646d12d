"""The contract's dependency-free file formats: mu-law (against the textbook formula), PNG (every filter
type), WAV, resampling."""
import math
import struct
import wave
import zlib

import numpy as np
import pytest

from arrun.contract.codecs import (mulaw_decode, mulaw_encode, png_decode, png_encode, read_wav,
                                   resample_poly, to_pcm16)
from arrun.contract.errors import UsageError


def _mulaw_code(x: float, mu: int = 255) -> int:
    """The continuous mu-law compander F(x) = sgn(x) ln(1 + mu|x|) / ln(1 + mu), then rounded to mu + 1 codes."""
    x = max(-1.0, min(1.0, x))
    y = math.copysign(math.log(1 + mu * abs(x)) / math.log(1 + mu), x)
    return math.floor((y + 1) / 2 * mu + 0.5)


def test_mulaw_is_the_textbook_compander():
    x = np.linspace(-1.2, 1.2, 4001)
    assert mulaw_encode(x).tolist() == [_mulaw_code(v) for v in x]
    assert mulaw_encode(np.array([-1.0, 0.0, 1.0])).tolist() == [0, 128, 255]
    codes = np.arange(256)
    decoded = mulaw_decode(codes)
    assert (np.diff(decoded) > 0).all() and decoded[0] == -1 and decoded[-1] == 1  # monotone, full scale
    assert (mulaw_encode(decoded) == codes).all()  # decode is the inverse at every code


def _png_with_filters(gray: np.ndarray, filters: list[int]) -> bytes:
    """A reference PNG encoder applying filter type filters[i] to row i (bpp = 1)."""
    h, w = gray.shape
    img = gray.astype(np.int64)
    raw = bytearray()
    for i in range(h):
        prev = img[i - 1] if i else np.zeros(w, np.int64)
        left = np.concatenate([[0], img[i, :-1]])
        upper_left = np.concatenate([[0], prev[:-1]])
        f = filters[i]
        if f == 0:
            pred = np.zeros(w, np.int64)
        elif f == 1:
            pred = left
        elif f == 2:
            pred = prev
        elif f == 3:
            pred = (left + prev) // 2
        else:
            p = left + prev - upper_left
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upper_left)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upper_left))
        raw += bytes([f]) + bytes(((img[i] - pred) & 255).astype(np.uint8))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b""))


def test_png_round_trip_and_every_filter():
    gray = np.random.default_rng(0).integers(0, 256, (10, 7)).astype(np.uint8)
    assert np.array_equal(png_decode(png_encode(gray), "x"), gray)
    assert np.array_equal(png_decode(_png_with_filters(gray, [0, 1, 2, 3, 4, 4, 3, 2, 1, 0]), "x"), gray)


@pytest.mark.parametrize("data", [b"not a png", b"\x89PNG\r\n\x1a\n\x00\x00", b""])
def test_bad_png_is_a_usage_error(data):
    with pytest.raises(UsageError):
        png_decode(data, "x.png")


def test_rgb_png_is_refused():
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header + crc
    with pytest.raises(UsageError, match="grayscale"):
        png_decode(data, "x.png")


@pytest.mark.parametrize("width,channels", [(1, 1), (2, 2), (3, 1), (4, 2)])
def test_read_wav_widths_and_channels(tmp_path, width, channels):
    x = np.sin(np.linspace(0, 20, 500)) * 0.5
    full = np.round(x * (2 ** (8 * width - 1) - 1)).astype(np.int64)
    frames = np.repeat(full[:, None], channels, axis=1).reshape(-1)
    if width == 1:
        raw = (frames + 128).astype(np.uint8).tobytes()
    else:
        raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in frames)
    path = tmp_path / "x.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(8000)
        w.writeframes(raw)
    y, rate = read_wav(path)
    assert rate == 8000 and y.shape == (500,)
    assert np.abs(y - x).max() < 2.0 / 2 ** (8 * width - 1) + 1e-9


def test_read_wav_refuses_other_files(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"RIFF....")
    with pytest.raises(UsageError, match="WAV"):
        read_wav(tmp_path / "x.wav")


def test_pcm16():
    pcm = np.frombuffer(to_pcm16(np.array([-2.0, -1.0, 0.0, 0.5, 1.0])), "<i2")
    assert pcm.tolist() == [-32767, -32767, 0, 16384, 32767]


@pytest.mark.parametrize("rate,target", [(22050, 16000), (8000, 16000), (44100, 16000), (48000, 16000),
                                         (16000, 16000), (11025, 16000)])
@pytest.mark.parametrize("length", [0, 1, 7, 1000, 22050])
def test_resample_poly_matches_scipy(rate, target, length):
    signal = pytest.importorskip("scipy.signal")
    g = math.gcd(rate, target)
    noise = np.random.default_rng(length).uniform(-1.0, 1.0, length)
    sine = 0.8 * np.sin(2 * np.pi * 440.0 * np.arange(length) / rate)
    for x in (noise, sine):
        y = resample_poly(x, rate, target)
        expected = signal.resample_poly(x, target // g, rate // g)
        assert y.dtype == np.float64 and y.shape == expected.shape
        assert np.abs(y - expected).max(initial=0.0) < 1e-9


def test_resample_poly_refuses_bad_rates():
    with pytest.raises(UsageError, match="sample rates"):
        resample_poly(np.zeros(10), 0, 16000)
