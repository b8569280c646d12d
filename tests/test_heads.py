"""An output head from outside the project (tests/toy_head.py), installed as an entry point of 'arrun.heads' the
way pip installs a plug-in, trains with artrain's torch loss, exports verified through arexport, and is read from
the graph's metadata, scored and sampled by arrun, with no project file naming it."""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from arexport import DataInfo, export_model
from artrain.data import Split
from artrain.evaluate import evaluate
from artrain.models.wavenet import WaveNet
from arrun.cli import app
from arrun.contract.errors import ARError
from arrun.contract.heads import make_head
from arrun.generate import SampleOptions, generate, make_plan
from arrun.sampling import SamplingOptions
from arrun.score import score
from arrun.session import open_model
from conftest import TINY, exported, tiny_model

TOY = {"kind": "uniform_mixture", "floor": 0.25}


def with_head(graph: Path, spec: dict, out: Path) -> Path:
    """A copy of an exported softmax graph whose 'ar.output' declares ``spec`` (the toy head reads ``logits`` too)."""
    proto = onnx.load(graph)
    for prop in proto.metadata_props:
        if prop.key == "ar.output":
            prop.value = json.dumps(spec)
    onnx.save(proto, out)
    return out


class ToyHeadWaveNet(WaveNet):
    """The tiny WaveNet with the installed head in place of its softmax (the same weights: W = V)."""

    @property
    def output_head(self):
        return make_head(TOY, self.config.vocab_size)


class Keep:
    """A sink that keeps the tokens."""
    def begin(self, indices): pass
    def update(self, tokens, done): pass
    def end(self, tokens): self.tokens = tokens.copy()


def test_a_graph_declaring_the_head_reads_it_from_the_registry(toy_head_installed, tmp_path):
    info = open_model(with_head(exported("wavenet", "step"), TOY, tmp_path / "toy.onnx")).info
    assert type(info.head).__module__ == "toy_head" and info.head.floor == 0.25
    assert (info.output_name, info.output_width) == ("logits", 256)
    assert info.to_metadata()["ar.output"] == json.dumps(TOY)


def test_a_head_that_is_not_installed_is_refused(tmp_path):
    with pytest.raises(ARError, match="unknown output head 'uniform_mixture'.*'arrun.heads'"):
        open_model(with_head(exported("wavenet", "step"), TOY, tmp_path / "toy.onnx"))


def test_arrun_scores_what_artrain_trains(toy_head_installed, tmp_path):
    """A model with the toy head exports (verified against torch) declaring it; artrain's torch loss and
    arrun's numpy score of it agree, and differ from the softmax's; the loss has gradients."""
    model, _ = tiny_model("wavenet")
    toy = ToyHeadWaveNet(model.config).eval()
    toy.load_state_dict(model.state_dict())
    graph = export_model(toy, DataInfo(**TINY["wavenet"][1]), tmp_path / "toy.onnx", graph="full").path
    x = np.random.default_rng(0).integers(0, 256, 300)
    split = Split(x, np.array([0, len(x)]), None)
    want, softmax = evaluate(toy, split).bits_per_dim, evaluate(model, split).bits_per_dim
    runtime = open_model(graph)
    assert runtime.info.output == TOY
    got = score(runtime, [x])["bits_per_dim"]
    assert abs(got - want) < 1e-5 and abs(want - softmax) > 0.01, (got, want, softmax)
    tokens = torch.from_numpy(x[None])
    outputs = toy.sequence_logits(tokens)  # (1, T, V)
    nll = toy.output_nll(outputs, tokens)  # (1, T)
    np.testing.assert_allclose(nll.detach().double().numpy(),
                               -toy.output_head.level_log_probs(outputs.detach().numpy(), x[None]), rtol=1e-5)
    nll.mean().backward()
    grads = torch.cat([p.grad.flatten() for p in toy.parameters()])
    assert torch.isfinite(grads).all() and grads.abs().max() > 0


def _uniformity(path: Path) -> float:
    """p-value of 4000 elements sampled by arrun at temperature 0.1 (200 sequences of 20) against uniform levels."""
    model, sink = open_model(path), Keep()
    sampling = SamplingOptions(temperature=0.1)
    generate(model, make_plan(SampleOptions(num_samples=200, length=20, sampling=sampling), model.info), sampling, 5, sink)
    return stats.chisquare(np.bincount(sink.tokens.flatten(), minlength=256)).pvalue


def test_arrun_samples_with_the_head(toy_head_installed, tmp_path):
    """A floor of 0.999 samples nearly uniform levels where the tiny model's own tempered softmax is far from
    uniform; the head's refusal of --top-k reaches the command line."""
    step = exported("wavenet", "step")
    assert _uniformity(step) < 1e-6
    flat = with_head(step, {"kind": "uniform_mixture", "floor": 0.999}, tmp_path / "flat.onnx")
    assert _uniformity(flat) > 1e-3
    result = CliRunner().invoke(app, ["sample", str(flat), "--length", "5", "--top-k", "3",
                                      "--out", str(tmp_path / "s.wav")])
    assert result.exit_code == 2 and "uniform_mixture head samples with --temperature alone" in result.stderr
