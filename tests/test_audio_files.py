"""Audio files as people have them, on the tiny mu-law WaveNet and vocoder: G.711 mu-law WAVs (format tag 7,
and inside WAVE_FORMAT_EXTENSIBLE) are compressed byte for byte and scored and vocoded as their codes; the
16-bit WAVs `arrun sample` writes come back losslessly; an 8-bit linear WAV is never read as mu-law codes; a
rate that does not fit says the sox command that converts it. The mu-law files are written here by the
textbook G.711 encoder (and by sox where it is installed), never by arrun's own codec."""
import json
import shutil
import struct
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

from arrun.cli import app
from arrun.contract.codecs import g711_mulaw_decode
from arrun.score import score
from arrun.session import open_model
from conftest import KIND, SAMPLE_RATE, exported, exported_vocoder

# WAVE_FORMAT_EXTENSIBLE's subformat GUID for tag 7: 00000007-0000-0010-8000-00aa00389b71
MULAW_GUID = struct.pack("<H", 7) + bytes.fromhex("000000001000800000aa00389b71")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def g711_encode(samples: np.ndarray) -> np.ndarray:
    """Signed 16-bit samples -> G.711 mu-law bytes, the textbook way (bias 132, clip 32635, the segment the
    biased magnitude's top bit falls in, four mantissa bits, every bit inverted)."""
    s = np.asarray(samples, np.int64)
    sign = np.where(s < 0, 0x80, 0)
    biased = np.minimum(np.abs(s), 32635) + 132
    exponent = np.floor(np.log2(biased)).astype(np.int64) - 7  # 132..32767 -> 0..7
    mantissa = (biased >> (exponent + 3)) & 0x0F
    return (~(sign | exponent << 4 | mantissa) & 0xFF).astype(np.uint8)


def levels_by_value() -> np.ndarray:
    """byte -> its rank among the 256 mu-law bytes by the value it stands for, found by encoding a ramp over
    every 16-bit sample: bytes appear in rising order of value (-0 just before +0)."""
    ramp = g711_encode(np.arange(-32768, 32768))
    first = np.unique(ramp, return_index=True)[1]  # (256,) where each byte first appears
    rank = np.empty(256, np.int64)
    rank[np.argsort(first)] = np.arange(256)
    return rank


def wav_file(data: bytes, *, tag=1, bits=8, rate=SAMPLE_RATE, extensible=False) -> bytes:
    """A mono WAV by hand: PCM (tag 1) or mu-law (tag 7), optionally as WAVE_FORMAT_EXTENSIBLE."""
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, 1, rate, rate * bits // 8, bits // 8, bits)
    if extensible:
        fmt += struct.pack("<HHI", 22, bits, 4) + (MULAW_GUID if tag == 7 else struct.pack("<H", tag) + MULAW_GUID[2:])
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    body += b"\0" * (len(data) % 2)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def speech_like(n: int, seed: int = 0) -> np.ndarray:
    """(n,) int64 16-bit samples: a decaying chirp and some noise, reaching near full scale."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    x = np.sin(2 * np.pi * (200 + 900 * t) * t) * np.exp(-3 * t) * 30000 + rng.normal(0, 300, n)
    return np.clip(np.round(x), -32768, 32767).astype(np.int64)


def round_trip(model, path, tmp_path) -> dict:
    """compress, then decompress beside it; asserts the file comes back byte for byte -> compress's record."""
    result = invoke("compress", model, path, "--out", tmp_path / "x.arz", "--json")
    assert result.exit_code == 0, result.stderr
    back = tmp_path / "back.wav"
    result = invoke("decompress", model, tmp_path / "x.arz", "--out", back)
    assert result.exit_code == 0, result.stderr
    assert back.read_bytes() == path.read_bytes()
    return json.loads(invoke("compress", model, path, "--out", tmp_path / "y.arz", "--json").stdout)


def score_json(model, path) -> dict:
    result = invoke("score", model, path, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_g711_decoder_inverts_the_textbook_encoder():
    """arrun's decoding of every byte lies within the byte's own quantisation step of what was encoded."""
    x = np.arange(-32635, 32636)
    decoded = g711_mulaw_decode(g711_encode(x))
    step = 8 << (np.floor(np.log2(np.abs(x) + 132)).astype(np.int64) - 7)  # the segment's step
    assert (np.abs(decoded - x) <= step // 2 + 1).all()
    by_rank = g711_mulaw_decode(np.argsort(levels_by_value()))  # (256,) the bytes' values, lowest rank first
    assert (np.diff(by_rank) >= 0).all() and (np.diff(by_rank) > 0).sum() == 254  # only -0 and +0 tie


@pytest.mark.parametrize("extensible", [False, True], ids=["tag-7", "extensible"])
def test_mulaw_wav_compresses_losslessly_and_scores_as_its_codes(tmp_path, extensible):
    model = exported(KIND["audio"])
    codes = g711_encode(speech_like(1500))
    path = tmp_path / "in.wav"
    path.write_bytes(wav_file(codes.tobytes(), tag=7, extensible=extensible))
    record = round_trip(model, path, tmp_path)
    assert record["elements"] == 1500 and record["digits"] == 1
    expected = score(open_model(model), [levels_by_value()[codes]])  # the codes as levels, by value
    assert score_json(model, path)["bits_per_dim"] == pytest.approx(expected["bits_per_dim"], rel=1e-9)


def test_sampled_16_bit_wav_comes_back_losslessly(tmp_path):
    """What `arrun sample` writes for a mu-law model is coded as its codes: one digit per sample, and the same
    16-bit file back; a 16-bit WAV off the model's levels is refused with the sox conversion."""
    model = exported(KIND["audio"])
    sampled = tmp_path / "s.wav"
    assert invoke("sample", model, "--length", 1200, "--out", sampled).exit_code == 0
    record = round_trip(model, sampled, tmp_path)
    assert record["elements"] == 1200 and record["digits"] == 1
    assert record["output_bytes"] < 0.75 * record["input_bytes"]  # about a byte a sample, not two
    off = tmp_path / "off.wav"
    off.write_bytes(wav_file(speech_like(300).astype("<i2").tobytes(), bits=16))
    result = invoke("compress", model, off, "--out", tmp_path / "off.arz")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "not this mu-law model's levels" in result.stderr and "-e mu-law OUT.wav" in result.stderr
    assert not (tmp_path / "off.arz").exists()


def test_8_bit_linear_wav_is_never_read_as_codes(tmp_path):
    """Scored as the linear audio it is (the same bits/dim as that audio in 16 bits), never as mu-law codes;
    compress refuses it, saying which conversion or model fits."""
    model = exported(KIND["audio"])
    raw = (np.clip(speech_like(800) // 256, -128, 127) + 128).astype(np.uint8)
    linear8, linear16 = tmp_path / "l8.wav", tmp_path / "l16.wav"
    linear8.write_bytes(wav_file(raw.tobytes()))
    linear16.write_bytes(wav_file(((raw.astype(np.int64) - 128) * 256).astype("<i2").tobytes(), bits=16))
    bits = score_json(model, linear8)["bits_per_dim"]
    assert bits == pytest.approx(score_json(model, linear16)["bits_per_dim"], rel=1e-12)
    as_codes = score(open_model(model), [raw.astype(np.int64)])["bits_per_dim"]
    assert abs(bits - as_codes) > 1e-3
    result = invoke("compress", model, linear8, "--out", tmp_path / "l8.arz")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "is 8-bit linear PCM, not mu-law" in result.stderr and "-e mu-law OUT.wav" in result.stderr
    assert "is not PCM" not in result.stderr and not (tmp_path / "l8.arz").exists()


def test_rate_mismatch_says_the_sox_command(tmp_path):
    path = tmp_path / "hi-fi.wav"
    path.write_bytes(wav_file(g711_encode(speech_like(480)).tobytes(), tag=7, rate=48000))
    result = invoke("compress", exported(KIND["audio"]), path, "--out", tmp_path / "x.arz")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert f"is at 48000 Hz and the model at {SAMPLE_RATE} Hz" in result.stderr
    assert f"`sox {path} -r {SAMPLE_RATE} OUT.wav`" in result.stderr


def test_vocoder_takes_a_mulaw_wav_as_its_codes(tmp_path):
    """A mu-law WAV at the vocoder's rate is vocoded from its codes: the same output, seed for seed, as the
    16-bit WAV of those codes (decoded by the contract's mu-law formula, written as arrun sample does)."""
    chunk = exported_vocoder("chunk")
    codes = g711_encode(speech_like(600))
    levels = levels_by_value()[codes]
    y = 2.0 * levels / 255 - 1.0
    pcm = np.round(np.sign(y) * np.expm1(np.abs(y) * np.log1p(255)) / 255 * 32767).astype("<i2")
    mulaw, linear = tmp_path / "m.wav", tmp_path / "p.wav"
    mulaw.write_bytes(wav_file(codes.tobytes(), tag=7, rate=16000))
    linear.write_bytes(wav_file(pcm.tobytes(), bits=16, rate=16000))
    for path in (mulaw, linear):
        result = invoke("vocode", chunk, path, "--out", path.with_suffix(".out.wav"))
        assert result.exit_code == 0, result.stderr
    assert mulaw.with_suffix(".out.wav").read_bytes() == linear.with_suffix(".out.wav").read_bytes()


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed (apt-get install sox)")
def test_sox_mulaw_wav_round_trips(tmp_path):
    """A µ-law WAV as sox writes it, from a 16-bit one."""
    source, converted = tmp_path / "in16.wav", tmp_path / "mu.wav"
    source.write_bytes(wav_file(speech_like(900).astype("<i2").tobytes(), bits=16))
    subprocess.run(["sox", source, "-e", "mu-law", converted], check=True)
    model = exported(KIND["audio"])
    assert round_trip(model, converted, tmp_path)["elements"] == 900
    assert score_json(model, converted)["n_dims"] == 900


def test_archives_from_before_the_coding_field_still_decompress(tmp_path, monkeypatch):
    """An .arz written when an 8-bit WAV's bytes were taken as the codes (layout without 'coding') comes back."""
    from arrun.compress import compress, decompress
    from arrun.kinds.audio import AudioKind
    from arrun.kinds.base import Framed

    def old_frame(self, raw, path, info):  # the framing of those versions: 44-byte header, bytes as levels
        return Framed(np.frombuffer(raw[44:], np.uint8).astype(np.int64), raw[:44], b"", {"format": "wav", "width": 1})

    model, path = exported(KIND["audio"]), tmp_path / "old.wav"
    path.write_bytes(wav_file(bytes(np.random.default_rng(4).integers(0, 256, 200, dtype=np.uint8))))
    with monkeypatch.context() as patched:
        patched.setattr(AudioKind, "frame", old_frame)
        compress(model, path, out=tmp_path / "old.arz")
    decompress(model, tmp_path / "old.arz", out=tmp_path / "back.wav")
    assert (tmp_path / "back.wav").read_bytes() == path.read_bytes()
