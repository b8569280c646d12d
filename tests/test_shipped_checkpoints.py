"""The shipped checkpoints (models/NAME/model.safetensors + config.json) are the models their graphs hold:
torch's forward of the rebuilt model equals the shipped full graph's logits, the recorded test bits/dim is
the graph's, and `arexport onnx` works on a shipped folder as on any checkpoint."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from artrain.checkpoint import load_checkpoint

MODELS = Path(__file__).resolve().parent.parent / "models"
SHIPPED = sorted(p.parent.name for p in MODELS.glob("*/train.json"))
LENGTH = 300  # elements per checked sequence (an image is always whole)


def test_every_shipped_model_ships_its_checkpoint():
    assert len(SHIPPED) == 6
    for name in SHIPPED:
        assert (MODELS / name / "model.safetensors").is_file() and (MODELS / name / "config.json").is_file(), name


@pytest.mark.parametrize("name", SHIPPED)
def test_checkpoint_equals_the_shipped_full_graph(name):
    model, config = load_checkpoint(MODELS / name)
    session = ort.InferenceSession(str(MODELS / name / "full.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert config["eval"]["bits_per_dim"] == pytest.approx(float(meta["ar.bits_per_dim"]), abs=1e-6)
    rng = np.random.default_rng(0)
    length = model.fixed_length or LENGTH
    tokens = rng.integers(0, model.config.vocab_size, size=(2, length))  # (B, T)
    feeds, args = {"input_ids": tokens}, [torch.from_numpy(tokens)]
    if model.config.num_classes:
        labels = np.array([1, 2])
        feeds["condition"], args = labels, [*args, torch.from_numpy(labels)]
    else:
        args.append(None)
    local = {}
    if model.feature_spec is not None:  # a vocoder: log-mel-like frames covering the sequence
        frames = rng.normal(-4.0, 2.0, size=(2, -(-length // model.feature_spec.hop), model.feature_spec.n_mels))
        feeds["features"] = frames.astype(np.float32)
        local = {"features": torch.from_numpy(feeds["features"])}
    graph_logits = session.run(None, feeds)[0]  # (B, T, W)
    with torch.no_grad():
        torch_logits = model.sequence_logits(*args, **local).numpy()
    assert graph_logits.shape == torch_logits.shape
    np.testing.assert_allclose(graph_logits, torch_logits, atol=1e-4, rtol=0)


def test_arexport_onnx_works_on_a_shipped_folder(tmp_path):
    out = tmp_path / "step.onnx"
    result = subprocess.run([sys.executable, "-m", "arexport", "onnx", str(MODELS / "digits-pixelcnn"),
                             "--step-graph", "--out", str(out), "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["verification"]
    assert report is not None and out.is_file()
    shipped = ort.InferenceSession(str(MODELS / "digits-pixelcnn" / "step.onnx"), providers=["CPUExecutionProvider"])
    again = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros([2 if d == "batch" else d for d in i.shape],
                              dtype=np.int64 if "int64" in i.type else np.float32) for i in shipped.get_inputs()}
    feeds["input_ids"] = np.array([16, 3])
    for a, b in zip(shipped.run(None, feeds), again.run(None, feeds)):
        np.testing.assert_array_equal(a, b)


def test_arexport_verify_takes_a_shipped_graph_of_format_4_and_its_checkpoint():
    """The shipped graphs predate the output head's key ('ar.output', format 5): their metadata still round-trips."""
    result = subprocess.run([sys.executable, "-m", "arexport", "verify", str(MODELS / "digits-pixelrnn" / "step.onnx"),
                             str(MODELS / "digits-pixelrnn"), "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["passed"] is True
