"""A user's own data, end to end with tiny data and models: fit -> export -> sample -> score, for a text file,
a labelled WAV folder (class subfolders) and a labelled .npz of images; `arrun score` of the file equals
`artrain eval --data` of it (the whole file, by the same chunk rule) to 1e-3 bits/dim."""
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from arexport.cli import app as arexport
from arrun.cli import app as arrun
from artrain.cli import app as artrain
from conftest import TINY, write_wav


def ok(app, *args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def fit_export(tmp_path: Path, family: str, data: Path, **options) -> Path:
    """`artrain fit` a few steps of the tiny family on ``data``, export both graphs -> the run folder."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"family": family, "data": str(data), "steps": 3, "batch_size": 4, "warmup": 1,
                                  "eval_every": 3, "model": TINY[family][0], **options}))
    run = tmp_path / "run"
    ok(artrain, "fit", "--config", config, "--out", run)
    for graph in ("step", "full"):
        ok(arexport, "onnx", run, f"--{graph}-graph", "--no-verify")
    return run


def agree(run: Path, data: Path, *score_args) -> dict:
    """arrun score of DATA (full graph) against artrain eval --data DATA: equal to 1e-3 bits/dim."""
    scored = json.loads(ok(arrun, "score", run / "full.onnx", data, *score_args, "--json"))
    evaluated = json.loads(ok(artrain, "eval", run, "--data", data, "--json"))
    assert evaluated["split"] == "all" and scored["n_dims"] == evaluated["n_dims"]
    assert abs(scored["bits_per_dim"] - evaluated["bits_per_dim"]) < 1e-3
    return scored


def test_text_file(tmp_path, monkeypatch):
    text = tmp_path / "book.txt"
    rng = np.random.default_rng(0)
    text.write_text("".join(rng.choice(list("abcdefgh .\n"), 3000)))
    run = fit_export(tmp_path, "transformer", text, seq_len=24, text_as="characters")  # skip/replace: characters
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["name"] == str(text.resolve())  # stored resolved: eval works from anywhere
    monkeypatch.chdir(tmp_path / "run")
    ok(artrain, "eval", run)  # from another folder, on the data it was trained on
    sample = json.loads(ok(arrun, "sample", run / "step.onnx", "--prompt", "ab", "--length", 10, "--json"))
    assert sample["text"][0].startswith("ab") and len(sample["text"][0]) == 12
    assert agree(run, text)["n_dims"] == 3000
    (tmp_path / "odd.txt").write_text("abc XYZ abc")
    skipped = json.loads(ok(arrun, "score", run / "full.onnx", tmp_path / "odd.txt", "--unknown", "skip", "--json"))
    replaced = json.loads(ok(arrun, "score", run / "full.onnx", tmp_path / "odd.txt", "--unknown", "replace", "--json"))
    assert (skipped["n_dims"], replaced["n_dims"]) == (8, 11)


def test_labelled_wav_folder(tmp_path):
    words = tmp_path / "words"
    t = np.arange(1600) / 16000
    for c, (name, hz) in enumerate((("high", 880.0), ("low", 220.0))):
        for k in range(5):
            write_wav(words / name / f"{k}.wav", 0.5 * np.sin(2 * np.pi * hz * (1 + 0.02 * k) * t))
    run = fit_export(tmp_path, "wavenet", words, seq_len=256)
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["class_names"] == ["high", "low"] and config["model"]["num_classes"] == 2
    out = tmp_path / "out" / "s.wav"
    out.parent.mkdir()
    ok(arrun, "sample", run / "step.onnx", "--condition", "low", "-n", 2, "--length", 100, "--out", out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["s-low-000.wav", "s-low-001.wav"]
    scored = agree(run, words)  # every file under the class its subfolder names
    assert scored["n_sequences"] == 10


def test_labelled_npz(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 4, (20, 5, 4))
    labels = np.arange(20) % 3
    np.savez(tmp_path / "shapes.npz", images=images, labels=labels, class_names=np.array(["ring", "bar", "dot"]))
    run = fit_export(tmp_path, "pixelcnn", tmp_path / "shapes.npz")
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["class_names"] == ["ring", "bar", "dot"] and config["model"]["num_classes"] == 3
    out = tmp_path / "grid.png"
    record = json.loads(ok(arrun, "sample", run / "step.onnx", "--condition", "bar", "-n", 2, "--out", out, "--json"))
    assert record["conditions"] == [1, 1] and np.load(tmp_path / "grid.npy").shape == (2, 5, 4)
    assert agree(run, tmp_path / "shapes.npz")["n_sequences"] == 20


@pytest.mark.parametrize("bad", ["no labels", "labels of the wrong length", "too few names"])
def test_bad_npz_is_one_line(tmp_path, bad):
    images = np.zeros((6, 5, 4), np.int64)
    arrays = {"no labels": dict(images=images), "labels of the wrong length": dict(images=images, labels=np.zeros(5, int)),
              "too few names": dict(images=images, labels=np.arange(6) % 3, class_names=np.array(["a"]))}[bad]
    np.savez(tmp_path / "x.npz", **arrays)
    result = CliRunner().invoke(artrain, ["fit", "--model", "pixelcnn", "--data", str(tmp_path / "x.npz"),
                                          "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "run").exists()
