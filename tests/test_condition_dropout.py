"""Condition dropout end to end: a tiny WaveNet trained a few steps on a labelled WAV folder with
``condition_dropout`` gains the class "none" (one more embedding row), the export declares it as
``ar.condition.unconditioned``, and `arrun sample`, `score` and `compress` (and ``Streams.join``) take no
condition on it. A model without the field still refuses a missing condition with the usual message."""
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from arexport.cli import app as arexport
from arrun.cli import app as arrun
from arrun.contract.schema import Key, ModelInfo
from arrun.session import open_model
from arrun.streams import Streams
from artrain.cli import app as artrain
from artrain.conditions import drop_conditions
from conftest import TINY, exported, write_wav


def invoke(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(app, *args) -> str:
    result = invoke(app, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """artrain fit 3 steps with condition_dropout 0.5 on two classes of tones; step and full graphs exported."""
    tmp = tmp_path_factory.mktemp("dropout")
    t = np.arange(1600) / 16000
    for name, hz in (("high", 880.0), ("low", 220.0)):
        for k in range(4):
            write_wav(tmp / "words" / name / f"{k}.wav", 0.5 * np.sin(2 * np.pi * hz * (1 + 0.02 * k) * t))
    config = tmp / "config.json"
    config.write_text(json.dumps({"family": "wavenet", "data": str(tmp / "words"), "steps": 3, "batch_size": 4,
                                  "warmup": 1, "eval_every": 3, "seq_len": 256, "condition_dropout": 0.5,
                                  "model": TINY["wavenet"][0]}))
    ok(artrain, "fit", "--config", config, "--out", tmp / "run")
    for graph in ("step", "full"):
        ok(arexport, "onnx", tmp / "run", f"--{graph}-graph", "--no-verify")
    write_wav(tmp / "chirp.wav", 0.4 * np.sin(2 * np.pi * 300 * t * (1 + 2 * t)))  # neither class
    return tmp / "run"


def test_the_checkpoint_and_metadata_declare_the_extra_class(run):
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["num_classes"] == 3 and config["data"]["class_names"] == ["high", "low", "none"]
    info = open_model(run / "step.onnx").info
    assert (info.num_classes, info.unconditioned, info.class_names[2]) == (3, 2, "none")
    meta = info.to_metadata()
    assert meta[Key.UNCONDITIONED] == "2" and ModelInfo.from_metadata(meta) == info  # round trip
    bad = {**meta, Key.UNCONDITIONED: "3"}
    with pytest.raises(ValueError, match="unconditioned class 3 is not one of the 3 classes"):
        ModelInfo.from_metadata(bad)


def test_a_model_without_the_field_writes_no_key_and_still_requires_a_condition(tmp_path):
    model = exported("wavenet", "full", 3)
    info = open_model(model).info
    assert info.unconditioned is None and Key.UNCONDITIONED not in info.to_metadata()
    np.save(tmp_path / "x.npy", np.zeros(20, np.int64))
    write_wav(tmp_path / "x.wav", np.zeros(400))
    result = invoke(arrun, "score", model, tmp_path / "x.wav")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: this model is conditioned on 3 classes; pass --condition 0..2 "
                                     "(zero, one, two)")
    with pytest.raises(ValueError, match="join with a condition"):
        Streams(open_model(exported("wavenet", "step", 3)), 2).join()


def test_score_without_condition_is_the_unconditioned_class(run):
    chirp = run.parent / "chirp.wav"
    plain = json.loads(ok(arrun, "score", run / "full.onnx", chirp, "--json"))
    named = json.loads(ok(arrun, "score", run / "full.onnx", chirp, "--condition", "none", "--json"))
    low = json.loads(ok(arrun, "score", run / "full.onnx", chirp, "--condition", "low", "--json"))
    assert plain["bits_per_dim"] == named["bits_per_dim"] != low["bits_per_dim"]


def test_sample_without_condition_makes_unconditioned_samples(run, tmp_path):
    record = json.loads(ok(arrun, "sample", run / "step.onnx", "-n", 2, "--length", 50, "--out",
                           tmp_path / "s.wav", "--json"))
    assert record["conditions"] == [2, 2]  # not 2 of every class
    named = json.loads(ok(arrun, "sample", run / "step.onnx", "-n", 2, "--length", 50, "--condition", "none",
                          "--out", tmp_path / "n.wav", "--json"))
    assert named["conditions"] == [2, 2]
    assert (tmp_path / "s-none-000.wav").read_bytes() == (tmp_path / "n-none-000.wav").read_bytes()


@pytest.mark.parametrize("condition", [(), ("--condition", "high")])
def test_compress_round_trips_with_and_without_condition(run, tmp_path, condition):
    ok(arrun, "sample", run / "step.onnx", "-n", 1, "--length", 300, "--out", tmp_path / "s.wav")  # mu-law levels
    clip = tmp_path / "s.wav"
    record = json.loads(ok(arrun, "compress", run / "step.onnx", clip, *condition, "--out", tmp_path / "c.arz",
                           "--json"))
    assert record["condition"] == (0 if condition else 2)
    ok(arrun, "decompress", run / "step.onnx", tmp_path / "c.arz", "--out", tmp_path / "back.wav")
    assert (tmp_path / "back.wav").read_bytes() == clip.read_bytes()


def test_streams_join_without_condition_is_the_unconditioned_class(run):
    model = open_model(run / "step.onnx")
    streams = Streams(model, 2)
    a, b = streams.join(), streams.join(condition=2)
    outputs = streams.step(np.zeros(2, np.int64))  # (2, V)
    np.testing.assert_array_equal(outputs[a], outputs[b])


def test_drop_conditions_replaces_about_p_of_the_labels():
    labels = np.arange(20000) % 3  # (N,)
    dropped = drop_conditions(labels, 0.2, 3, np.random.default_rng(0))
    changed = dropped != labels
    assert np.all(dropped[changed] == 3) and abs(changed.mean() - 0.2) < 0.01
    assert np.array_equal(drop_conditions(labels, 0.0, 3, np.random.default_rng(0)), labels)
