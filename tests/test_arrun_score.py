"""`arrun score` agrees with `artrain eval`'s rule (artrain.evaluate on the same tokens) within 1e-3
bits/dim, through the full graph and through the step graph, for every data kind."""
import json
import wave

import numpy as np
import pytest
from typer.testing import CliRunner

from artrain.data import Split
from artrain.evaluate import evaluate
from arrun.cli import app
from arrun.contract.codecs import mulaw_encode, png_encode
from conftest import KIND, ALPHABET, SAMPLE_RATE, exported, tiny_model


def score(*args):
    result = CliRunner().invoke(app, ["score", *map(str, args), "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def reference(kind, sequences, classes=0, label=None):
    model, _ = tiny_model(KIND[kind], classes)
    tokens = np.concatenate(sequences).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sequences])]).astype(np.int64)
    labels = None if label is None else np.full(len(sequences), label, np.int64)
    return evaluate(model, Split(tokens, offsets, labels))


@pytest.mark.parametrize("graph", ["full", "step"])
def test_text_by_the_rollout_rule(tmp_path, graph):
    """The full graph in overlapping pieces of the receptive field (R = 2 x 5 + 1 = 11: 14 pieces), the step
    graph whole (the rollout itself); both equal artrain's evaluate."""
    text = "".join(np.random.default_rng(0).choice(list(ALPHABET), 150))
    (tmp_path / "t.txt").write_text(text)
    got = score(exported(KIND["text"], graph), tmp_path / "t.txt")
    want = reference("text", [np.array([ALPHABET.index(c) for c in text])])
    pieces = {"full": 14, "step": 1}[graph]
    assert got["n_dims"] == want.n_dims == 150 and got["n_chunks"] == pieces and got["graph"] == graph
    assert abs(got["bits_per_dim"] - want.bits_per_dim) < 1e-3
    assert abs(got["nats_per_dim"] * np.log2(np.e) - got["bits_per_dim"]) < 1e-9


def test_images_npy_and_png_under_a_condition(tmp_path):
    images = np.random.default_rng(1).integers(0, 4, (6, 5, 4))
    np.save(tmp_path / "x.npy", images)
    got = score(exported(KIND["image"], "step", 3), tmp_path / "x.npy", "--condition", 1)
    want = reference("image", list(images.reshape(6, -1)), classes=3, label=1)
    assert got["n_dims"] == 120 and abs(got["bits_per_dim"] - want.bits_per_dim) < 1e-3
    folder = tmp_path / "png"
    folder.mkdir()
    for i, image in enumerate(images):  # PNG pixel values are the levels themselves
        (folder / f"{i}.png").write_bytes(png_encode(image.astype(np.uint8)))
    from_png = score(exported(KIND["image"], "step", 3), folder, "--condition", 1)
    assert from_png["bits_per_dim"] == pytest.approx(got["bits_per_dim"], abs=1e-9)


def _write_wav(path, x, rate, channels=1):
    pcm = np.round(np.repeat(x[:, None], channels, axis=1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return np.round(x * 32767) / 32768  # what a reader gets back


def test_audio_wav_mu_law(tmp_path):
    x = 0.6 * np.sin(np.linspace(0, 80, 700)) * np.linspace(0, 1, 700)
    back = _write_wav(tmp_path / "a.wav", x, SAMPLE_RATE, channels=2)
    got = score(exported(KIND["audio"]), tmp_path / "a.wav")
    want = reference("audio", [mulaw_encode(back)])
    assert got["n_dims"] == 700 and abs(got["bits_per_dim"] - want.bits_per_dim) < 1e-3
    _write_wav(tmp_path / "b.wav", x, 2 * SAMPLE_RATE)  # resampled to the model's rate
    assert score(exported(KIND["audio"]), tmp_path / "b.wav")["n_dims"] == 350
