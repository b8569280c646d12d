"""The discretized logistic mixture head: torch training likelihood = arrun's numpy one; a distribution over
exactly the levels; the sampler draws from it (chi-square), tempered as documented; export verification, `arrun
score` = `artrain eval`, and 16-bit audio end to end; the options that make no sense for it are refused."""
import json
import wave

import numpy as np
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from arexport.export import export_onnx
from artrain.cli import app as artrain_app
from artrain.data import Split
from artrain.evaluate import evaluate
from artrain.models.base import TORCH_OPS
from arrun.cli import app
from arrun.contract.codecs import mulaw_decode, to_pcm16
from arrun.generate import SampleOptions, generate, make_plan
from arrun.contract.heads import LogisticMixture
from arrun.runtime import Stepper
from arrun.sampling import SamplingOptions, sample_rngs
from arrun.session import open_model
from conftest import SAMPLE_RATE, TINY, make_checkpoint

K = 3


@pytest.fixture(scope="module")
def mixture_models(tmp_path_factory):
    """kind -> (eager model, step.onnx, full.onnx): a tiny mixture WaveNet (256 mu-law levels, 3 classes), a
    tiny mixture PixelCNN (4 levels) and a 16-bit one (65,536 levels), each exported with verification."""
    root = tmp_path_factory.mktemp("mixture")
    wide = dict(TINY["wavenet"][1], levels=65536)
    specs = {"audio": ("wavenet", 3, None, {}), "image": ("pixelcnn", 0, None, {}),
             "audio16": ("wavenet", 0, wide, {"vocab_size": 65536})}
    models = {}
    for kind, (family, classes, data, changes) in specs.items():
        model, ckpt = make_checkpoint(root / kind, family, classes, data=data, mixtures=K, **changes)
        for graph in ("step", "full"):
            export_onnx(ckpt, ckpt / f"{graph}.onnx", graph=graph, verify=True)  # raises unless parity holds
        models[kind] = (model, ckpt / "step.onnx", ckpt / "full.onnx")
    return models


@pytest.mark.parametrize("levels", [4, 256, 65536])
def test_torch_likelihood_is_arruns(levels):
    rng = np.random.default_rng(levels)
    outputs = rng.normal(size=(64, 3 * K)).astype(np.float32)
    outputs[:, 2 * K:] -= 2  # log-scales around e^-2
    targets = np.concatenate([[0, levels - 1, 1, levels - 2], rng.integers(0, levels, 60)])  # edges included
    head = LogisticMixture(levels, K)  # the torch side: the training loss, the same formula in TORCH_OPS
    ours = -head.level_log_probs(torch.from_numpy(outputs), torch.from_numpy(targets), TORCH_OPS).double().numpy()
    theirs = -LogisticMixture(levels, K).level_log_probs(outputs, targets)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("levels", [17, 65536])
def test_the_levels_carry_all_the_mass_and_the_cdf_agrees(levels):
    head = LogisticMixture(levels, K)
    outputs = np.random.default_rng(0).normal(size=(2, 3 * K)).astype(np.float32)
    every = np.broadcast_to(np.arange(levels), (2, levels))
    p = np.exp(head.level_log_probs(np.repeat(outputs[:, None], levels, axis=1), every))  # (2, V)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-9)
    cdf = head.cdf(outputs, np.broadcast_to(np.arange(levels + 1), (2, levels + 1)))  # (2, V + 1)
    assert (cdf[:, 0] == 0).all() and (cdf[:, -1] == 1).all()
    np.testing.assert_allclose(np.diff(cdf, axis=1), p, atol=1e-12)


def _chi_square(counts: np.ndarray, expected: np.ndarray) -> float:
    """p-value of counts against probabilities ``expected``, pooling the levels expected < 5 times."""
    n = counts.sum()
    kept = expected * n >= 5
    observed = np.append(counts[kept], counts[~kept].sum())
    wanted = np.append(n * expected[kept], n * expected[~kept].sum())
    if wanted[-1] == 0:
        observed, wanted = observed[:-1], wanted[:-1]
    return stats.chisquare(observed, wanted * observed.sum() / wanted.sum()).pvalue


@pytest.mark.parametrize("temperature", [1.0, 0.6])
@pytest.mark.parametrize("kind", ["audio", "image"])
def test_first_samples_follow_the_mixture(mixture_models, kind, temperature):
    """4000 first elements sampled from the step graph's mixture through arrun's loop against the
    discretized mixture of the eager model's first outputs, tempered as documented: weights softmax(w / T),
    scales s * T."""
    model, step, _ = mixture_models[kind]
    levels = model.config.vocab_size
    with torch.no_grad():
        state = model.init_state(1)
        cond = torch.ones(1, dtype=torch.long) if model.config.num_classes else None
        first = model.step(torch.full((1,), levels), torch.zeros(1, dtype=torch.long), state, cond)[0][0].double().numpy()  # (3K,)
    tempered = np.concatenate([first[:K] / temperature, first[K:2 * K], first[2 * K:] + np.log(temperature)])
    expected = np.exp(LogisticMixture(levels, K).level_log_probs(np.repeat(tempered[None], levels, 0), np.arange(levels)))
    n = 4000
    stepper = Stepper(open_model(step), n)
    stepper.reset(np.ones(n, np.int64) if model.config.num_classes else None)
    outputs = stepper.step(np.full(n, levels, np.int64), np.zeros(n, np.int64))
    head = LogisticMixture(levels, K)
    tokens = head.sample(outputs, SamplingOptions(temperature), sample_rngs(3, range(n)))
    counts = np.bincount(tokens, minlength=levels)
    assert _chi_square(counts, expected) > 1e-3, (counts, np.round(n * expected))
    greedy = head.sample(outputs[:1], SamplingOptions(0.0), [])
    k = first[:K].argmax()
    assert greedy[0] == np.clip(np.floor((first[K + k] + 1) * (levels - 1) / 2 + 0.5), 0, levels - 1)


def _score(*args) -> dict:
    result = CliRunner().invoke(app, ["score", *map(str, args), "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _wav(path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


@pytest.mark.parametrize("graph", [1, 2])
def test_score_equals_artrain_eval(mixture_models, tmp_path, graph):
    """Images (.npy) and 16-bit audio (every sample value kept exactly), through the step and the full graph."""
    model, *paths = mixture_models["image"]
    images = np.random.default_rng(1).integers(0, 4, (6, 5, 4))
    np.save(tmp_path / "x.npy", images)
    want = evaluate(model, Split(images.reshape(-1), np.arange(7) * 20, None))
    got = _score(paths[graph - 1], tmp_path / "x.npy")
    assert got["n_dims"] == 120 and abs(got["bits_per_dim"] - want.bits_per_dim) < 1e-3
    model, *paths = mixture_models["audio16"]
    samples = np.round(9000 * np.sin(np.linspace(0, 60, 500))).astype(np.int64)
    samples[:3] = [-32768, 32767, 0]  # the extremes are levels 0 and 65535
    _wav(tmp_path / "a.wav", samples)
    want = evaluate(model, Split(samples + 32768, np.array([0, 500]), None))
    got = _score(paths[graph - 1], tmp_path / "a.wav")
    assert got["n_dims"] == 500 and abs(got["bits_per_dim"] - want.bits_per_dim) < 1e-3


def test_sixteen_bit_samples_are_sixteen_bit_wavs(mixture_models, tmp_path):
    """The WAV holds every sampled level exactly (sample = level - 32768), as the CLI wrote it."""
    _, step, _ = mixture_models["audio16"]
    out = tmp_path / "s.wav"
    result = CliRunner().invoke(app, ["sample", str(step), "--length", "300", "--out", str(out), "--seed", "4", "--json"])
    assert result.exit_code == 0, result.stderr
    with wave.open(str(out)) as w:
        assert (w.getsampwidth(), w.getnframes(), w.getframerate()) == (2, 300, SAMPLE_RATE)
        samples = np.frombuffer(w.readframes(300), "<i2")
    class Keep:  # a sink that keeps the tokens
        def begin(self, indices): pass
        def update(self, tokens, done): pass
        def end(self, tokens): self.tokens = tokens.copy()

    model, sink = open_model(step), Keep()
    generate(model, make_plan(SampleOptions(length=300), model.info), SamplingOptions(), 4, sink)
    np.testing.assert_array_equal(samples, sink.tokens[0] - 32768)
    mu_law = np.frombuffer(to_pcm16(mulaw_decode(np.arange(256))), "<i2")
    assert not np.isin(samples, mu_law).all()  # 16-bit values, not confined to the 256 of mu-law
    info = CliRunner().invoke(app, ["info", str(step), "--json"])
    assert json.loads(info.stdout)["output"] == f"logistic mixture of {K}"


@pytest.mark.parametrize("option", [["--top-k", "5"], ["--top-p", "0.9"]])
def test_top_k_and_top_p_are_refused(mixture_models, tmp_path, option):
    _, step, _ = mixture_models["audio"]
    result = CliRunner().invoke(app, ["sample", str(step), "--length", "10", "--out", str(tmp_path / "s.wav"),
                                      *option])
    assert result.exit_code == 2 and "mixture of logistics" in result.stderr and "--temperature" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_no_chunk_graph_for_a_mixture(mixture_models, tmp_path):
    from arrun.contract.errors import UsageError
    ckpt = mixture_models["audio"][1].parent
    with pytest.raises(UsageError, match="chunk graph samples a softmax head"):
        export_onnx(ckpt, tmp_path / "chunk.onnx", graph="chunk")


@pytest.mark.parametrize("args,message", [
    (["--model", "transformer", "--data", "text", "--output", "mol"], "softmax head"),
    (["--model", "wavenet", "--data", "speech", "--bits", "16"], "add --output mol"),
    (["--model", "wavenet", "--data", "digits", "--bits", "16", "--output", "mol"], "no 16-bit form"),
    (["--model", "wavenet", "--data", "speech", "--mixtures", "4"], "--output mol"),
])
def test_fit_refuses_heads_and_bits_that_do_not_fit(tmp_path, args, message):
    result = CliRunner().invoke(artrain_app, ["fit", *args, "--out", str(tmp_path / "run"), "--steps", "1"])
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_output_softmax_is_every_family_s_default_head():
    """`--output softmax` (mixtures 0) names the head a family without a mixture field already has."""
    from artrain.options import resolve_options

    assert "mixtures" not in resolve_options("transformer", "text", None, {"mixtures": 0}).model
    assert resolve_options("wavenet", "speech", None, {"mixtures": 0}).model["mixtures"] == 0


def test_files_before_format_6_are_refused_in_one_line(tmp_path):
    """A version 4 or 5 file (one position for the whole batch) is refused by name, with what to do."""
    import onnx

    from conftest import exported
    proto = onnx.load(exported("transformer", "step"))
    for version in ("4", "5"):
        for prop in proto.metadata_props:
            if prop.key == "ar.format_version":
                prop.value = version
        onnx.save(proto, tmp_path / f"v{version}.onnx")
        result = CliRunner().invoke(app, ["sample", str(tmp_path / f"v{version}.onnx"), "--length", "5"])
        assert result.exit_code != 0
        assert f"format version {version}" in result.stderr and "re-export" in result.stderr
        assert result.stderr.count("\n") == 1
