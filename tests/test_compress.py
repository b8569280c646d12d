"""Lossless compression on tiny exported models, through the CLI: byte-exact round trips of text, WAV and .npy
files (empty, one element, odd RIFF chunks, other dtypes and orders), the payload against the model's own
likelihood, the two-digit (16-bit) coding on a mixture head, and one-line errors that leave no file behind."""
import json
import math
import struct
import sys

import constriction  # the 'compress' extra, part of 'dev': a missing one fails here rather than skipping
import numpy as np
import pytest
from typer.testing import CliRunner

from arrun.cli import app
from arrun.compress import EXTRA, MAGIC, decode_elements, encode_elements
from arrun.contract.heads import LogisticMixture
from arrun.sampling import SamplingOptions, sample_rngs
from arrun.score import score
from arrun.session import open_model
from conftest import ALPHABET, KIND, SAMPLE_RATE, TINY, exported, exported_vocoder, make_checkpoint

TEXT = "".join(np.random.default_rng(0).choice(list(ALPHABET), 150))
IMAGES = np.random.default_rng(1).integers(0, 4, (7, 5, 4))


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def round_trip(model, path, *options) -> dict:
    """compress PATH, decompress it beside it; the file comes back byte for byte -> compress's record."""
    result = invoke("compress", model, path, *options, "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    back = path.with_name("back-" + path.name)
    result = invoke("decompress", model, record["output"], "--out", back)
    assert result.exit_code == 0, result.stderr
    assert back.read_bytes() == path.read_bytes()
    assert record["elements"] == json.loads(invoke("decompress", model, record["output"], "--out", back,
                                                   "--json").stdout)["elements"]
    return record


def chunk(kind: bytes, data: bytes) -> bytes:
    """A RIFF chunk, padded to an even size."""
    return kind + struct.pack("<I", len(data)) + data + b"\0" * (len(data) % 2)


def wav(samples: bytes, *, rate=SAMPLE_RATE, bits=8, before=b"", after=b"", tag=1) -> bytes:
    """A mono WAV: PCM (format tag 1) or, with tag 7, mu-law bytes."""
    fmt = chunk(b"fmt ", struct.pack("<HHIIHH", tag, 1, rate, rate * bits // 8, bits // 8, bits))
    body = b"WAVE" + fmt + before + chunk(b"data", samples) + after
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("text,options", [("", []), ("a", []), (TEXT, []), (TEXT, ["--chunk", 40, "--batch-size", 3])])
def test_text_round_trips(tmp_path, text, options):
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode("utf-8"))
    record = round_trip(exported(KIND["text"]), path, *options)
    assert record["elements"] == len(text) and record["digits"] == 1
    assert record["bits_per_element"] is None if not text else record["bits_per_element"] > 0


@pytest.mark.parametrize("samples,before,after", [
    (b"", b"", b""),
    (bytes([200]), b"", b""),  # one sample: an odd data chunk and its pad byte
    (bytes(np.random.default_rng(2).integers(0, 256, 301, dtype=np.uint8)),
     chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00arrun"), chunk(b"junk", b"odd")),  # odd chunks around the data
])
def test_wav_round_trips(tmp_path, samples, before, after):
    path = tmp_path / "a.wav"
    path.write_bytes(wav(samples, before=before, after=after, tag=7) + b"trailing")  # mu-law bytes
    assert round_trip(exported(KIND["audio"]), path)["elements"] == len(samples)


@pytest.fixture(scope="module")
def wavenet16(tmp_path_factory):
    """The tiny WaveNet over 65536 levels (softmax head): the 16-bit WAV path end to end."""
    from arexport.export import export_onnx

    folder = tmp_path_factory.mktemp("wavenet16")
    make_checkpoint(folder / "ckpt", "wavenet", data=dict(TINY["wavenet"][1], levels=65536), vocab_size=65536)
    export_onnx(folder / "ckpt", folder / "step.onnx", graph="step", verify=False)
    return folder / "step.onnx"


def test_16_bit_wav_round_trips(tmp_path, wavenet16):
    samples = np.random.default_rng(5).integers(-32768, 32768, 120).astype("<i2").tobytes()
    path = tmp_path / "a.wav"
    path.write_bytes(wav(samples + b"\x07", bits=16, after=chunk(b"junk", b"odd")))  # a stray byte past the last sample
    record = round_trip(wavenet16, path)
    assert (record["elements"], record["digits"]) == (120, 2)
    path.write_bytes(wav(bytes(30)))
    refused = invoke("compress", wavenet16, path, "--out", tmp_path / "b.arz")
    assert refused.exit_code == 2 and "is 8-bit linear PCM, not mu-law; this model codes 16-bit PCM WAVs" in refused.stderr


@pytest.mark.parametrize("array", [IMAGES[:0].astype(np.uint8), IMAGES[:1].astype(np.uint8), IMAGES.astype(np.uint8),
                                   IMAGES[0].astype(np.uint8), np.asfortranarray(IMAGES.astype(">i2"))],
                         ids=["empty", "one", "seven", "2d", "big-endian-fortran"])
def test_npy_round_trips(tmp_path, array):
    path = tmp_path / "x.npy"
    np.save(path, array)
    record = round_trip(exported(KIND["image"], "step", 3), path, "--condition", "two")
    assert record["elements"] == array.size and record["chunk"] == 20 and record["condition"] == 2


def test_payload_costs_the_models_likelihood(tmp_path):
    """The coder spends what the density says: payload bits within 64 of the summed -log2 p that `arrun.score`
    gives the same chunks (32-bit words and the coder's 24-bit probabilities cost little more)."""
    (tmp_path / "t.txt").write_text(TEXT)
    np.save(tmp_path / "x.npy", IMAGES.astype(np.uint8))
    text_chunks = [np.array([ALPHABET.index(c) for c in TEXT[i:i + 40]]) for i in range(0, 150, 40)]
    cases = [(exported(KIND["text"]), tmp_path / "t.txt", ["--chunk", 40], text_chunks, None),
             (exported(KIND["image"], "step", 3), tmp_path / "x.npy", ["--condition", 1], list(IMAGES.reshape(7, -1)),
              1)]
    for model, path, options, pieces, condition in cases:
        record = round_trip(model, path, *options)
        ideal = score(open_model(model), pieces, condition)
        ideal_bits = ideal["bits_per_dim"] * ideal["n_dims"]
        assert ideal_bits - 1 <= 8 * record["payload_bytes"] <= ideal_bits + 64, (record, ideal)


def test_stdout_and_default_names(tmp_path):
    model, path = exported(KIND["text"]), tmp_path / "t.txt"
    path.write_text(TEXT)
    piped = CliRunner().invoke(app, ["compress", str(model), str(path), "--out", "-"])
    assert piped.exit_code == 0 and piped.stdout_bytes.startswith(MAGIC)
    assert invoke("compress", model, path).exit_code == 0
    assert (tmp_path / "t.txt.arz").read_bytes() == piped.stdout_bytes  # the same bytes, file or pipe
    again = invoke("compress", model, path)
    assert again.exit_code == 2 and "exists" in again.stderr
    path.rename(tmp_path / "original.txt")
    assert invoke("decompress", model, tmp_path / "t.txt.arz").exit_code == 0
    assert path.read_text() == TEXT


def test_two_digits_code_a_16_bit_mixture():
    """The 16-bit path without a model: levels drawn from random mixtures of 3 logistics over 65536 levels, and
    uniform ones (the far tails included), come back; the payload is the mixture's own -log2 p."""
    head, family = LogisticMixture(65536, 3), constriction.stream.model.Categorical(perfect=False)
    rng = np.random.default_rng(3)
    n = 400
    outputs = np.concatenate([rng.normal(size=(n, 3)), rng.uniform(-1, 1, (n, 3)), rng.uniform(-7, -3, (n, 3))],
                             axis=1).astype(np.float32)  # (n, 9): logits, means, log-scales
    drawn = head.sample(outputs, SamplingOptions(), sample_rngs(4, range(n)))  # (n,)
    uniform = np.concatenate([[0, 65535], rng.integers(0, 65536, n - 2)])  # (n,)
    for levels in (drawn, uniform):
        encoder = constriction.stream.queue.RangeEncoder()
        encode_elements(encoder, family, head, outputs, levels)
        words = encoder.get_compressed()
        decoded = decode_elements(constriction.stream.queue.RangeDecoder(words), family, head, outputs)
        assert np.array_equal(decoded, levels)
    encoder = constriction.stream.queue.RangeEncoder()
    encode_elements(encoder, family, head, outputs, drawn)
    ideal = -head.level_log_probs(outputs, drawn).sum() / math.log(2)
    assert ideal - 1 <= 32 * len(encoder.get_compressed()) <= ideal + 64


def _archive(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT)
    assert invoke("compress", exported(KIND["text"]), tmp_path / "t.txt", "--out", tmp_path / "t.arz").exit_code == 0
    return (tmp_path / "t.arz").read_bytes()


def _flipped(raw: bytes) -> bytes:
    start = 20 + struct.unpack_from("<I", raw, 8)[0]  # the first payload byte
    return raw[:start] + bytes([raw[start] ^ 0xFF]) + raw[start + 1:]


@pytest.mark.parametrize("case", ["truncated", "flipped", "wrong-model", "16-bit-wav", "outside-alphabet",
                                  "sample-rate", "vocoder"])
def test_errors_are_one_line_and_leave_no_file(tmp_path, case):
    text_model = exported(KIND["text"])
    if case in ("truncated", "flipped", "wrong-model"):
        raw = _archive(tmp_path)
        damaged = {"truncated": raw[:-3], "flipped": _flipped(raw)}.get(case, raw)
        (tmp_path / "t.arz").write_bytes(damaged)
        model = exported(KIND["text"], "step", 3) if case == "wrong-model" else text_model
        args, code, words = ["decompress", model, tmp_path / "t.arz"], 2 if case == "wrong-model" else 1, \
            {"truncated": "corrupted", "flipped": "corrupted", "wrong-model": "sha256"}[case]
    elif case == "outside-alphabet":
        (tmp_path / "in").write_text("abc\nhz")
        args, code, words = ["compress", text_model, tmp_path / "in"], 2, "'z' at position 5 (line 2)"
    else:
        rate, bits = (2 * SAMPLE_RATE, 8) if case == "sample-rate" else (SAMPLE_RATE, 16)
        (tmp_path / "in").write_bytes(wav(bytes(40), rate=rate, bits=bits, tag=7 if case == "sample-rate" else 1))
        model = exported_vocoder() if case == "vocoder" else exported(KIND["audio"])
        args, code = ["compress", model, tmp_path / "in"], 2
        words = {"16-bit-wav": "samples that are not this mu-law model's levels", "sample-rate": "-r 8000",
                 "vocoder": "vocoder"}[case]
    before = sorted(tmp_path.iterdir())
    result = invoke(*args, "--out", tmp_path / "out.arz")
    assert result.exit_code == code, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and words in result.stderr
    assert sorted(tmp_path.iterdir()) == before  # no output, no temporary file


def test_missing_extra_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "constriction", None)  # `import constriction` raises ImportError
    (tmp_path / "t.txt").write_text(TEXT)
    result = invoke("compress", exported(KIND["text"]), tmp_path / "t.txt")
    assert result.exit_code == 1 and result.stderr == f"error: {EXTRA}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]
