"""The source-filter WaveNet (``lpc_order`` > 0, issue 25): step rollout equals forward, every graph kind exports
and verifies, the chunk graph samples what the step loop samples, scoring gives the bits of the file's own
codes, and `arrun vocode` answers the inputs that give no predictor, silence and a clip shorter than a frame."""
import copy
import functools
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from arexport.export import export_onnx
from arexport.variants import int8_graph
from arexport.verify import verify_onnx
from artrain.source_filter import prediction, sample_predictor
from arrun.cli import app
from arrun.contract.codecs import mulaw_encode
from arrun.contract.features import LPC_PREEMPHASIS, mulaw_features
from conftest import VOCODER, VOCODER_DATA, make_checkpoint
from test_arrun_errors import assert_error
from test_vocoder import RATE, frames_for, read_wav_samples, write_wav

ORDER = 4
_ROOT = Path(tempfile.mkdtemp(prefix="ar-source-filter-"))


@functools.lru_cache(maxsize=None)
def tiny_source_filter():
    """(model, checkpoint) of the tiny vocoder with a 4th-order predictor."""
    return make_checkpoint(_ROOT / "ckpt", "wavenet", 0, data=VOCODER_DATA, **VOCODER, lpc_order=ORDER)


@functools.lru_cache(maxsize=None)
def exported_source_filter(graph: str) -> Path:
    out = _ROOT / f"{graph}.onnx"
    export_onnx(tiny_source_filter()[1], out, graph=graph, verify=False)
    return out


@pytest.mark.parametrize("batch", [1, 3])
def test_step_rollout_equals_forward(batch):
    model, _ = tiny_source_filter()
    assert [s.name for s in model.state_spec()] == ["queue", "samples"]
    T = 3 * model.state_period + 5
    x = torch.randint(0, 256, (batch, T), generator=torch.Generator().manual_seed(batch))
    frames = torch.from_numpy(frames_for(model, batch, T))
    with torch.no_grad():
        parallel = model(x, features=frames)  # (B, T, V)
        vectors, state, token, stepped = model.frame_vectors(frames), model.init_state(batch), torch.full((batch,), 256), []
        for t in range(T):
            logits, state = model.step(token, torch.full((batch,), t), state, features=vectors[:, t // VOCODER["mel_hop"]])
            stepped.append(logits)
            token = x[:, t]
    assert (parallel - torch.stack(stepped, 1)).abs().max().item() <= 1e-5


def test_the_folded_predictor_is_the_pre_emphasised_one():
    """One product over the decoded past (``sample_predictor``'s p + 1 coefficients) gives the contract's
    p_t = sum_k a_k e_{t-k} + 0.85 s_{t-1}, e_t = s_t - 0.85 s_{t-1}, written out here sample by sample."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, ORDER))                                       # (B, order)
    s = rng.uniform(-1, 1, (3, 40))                                           # (B, T) decoded samples
    t = 30
    e = np.c_[s[:, :1], s[:, 1:] - LPC_PREEMPHASIS * s[:, :-1]]              # (B, T) e_j = s_j - 0.85 s_{j-1}
    expected = sum(a[:, k - 1] * e[:, t - k] for k in range(1, ORDER + 1)) + LPC_PREEMPHASIS * s[:, t - 1]
    past = torch.from_numpy(s[:, t - 1 - np.arange(ORDER + 1)].copy())      # (B, order+1) s_{t-1} .. s_{t-1-order}
    got = prediction(past, sample_predictor(torch.from_numpy(a)))[:, 0].numpy()
    assert np.abs(got - expected).max() < 1e-12


@pytest.mark.parametrize("rho_shift", [-10.0, 0.0, 5.0])
def test_the_prior_is_a_student_t_on_the_mulaw_scale(rho_shift):
    """The graph's prior and second input, written out here in numpy from the model's card: the prior is
    -beta ln(1 + e^(8+rho) (c_k - mu(p_t))^2) over the codes' mu-law values c_k = 2k / 255 - 1 (any constant per
    sample aside: the log-softmax is compared), rho the frame's clamped precision unit, p_t the prediction; the
    network is told mu(p_t). ``rho_shift`` moves rho across its range (a narrow and a wide prior)."""
    model = copy.deepcopy(tiny_source_filter()[0])
    n = model.local[-1].out_features - 1                                      # the rho unit
    with torch.no_grad():
        model.local[-1].bias[n] += rho_shift
    frames = torch.from_numpy(frames_for(model, 2, 40))                       # (B, F, M)
    rng = np.random.default_rng(1)
    past = torch.from_numpy(rng.uniform(-1, 1, (*frames.shape[:2], ORDER + 1)))  # (B, F, P) decoded samples
    with torch.no_grad():
        v, prior = model._source_filter(past, *model._prior_parts(model.frame_vectors(frames)))
        scaled = frames * (-2.0 / np.log(model.feature_spec.log_floor)) + 1.0 if model.config.mel_normalise else frames
        rho = model.local(scaled)[..., n].double().clamp(-12, 6).numpy()       # (B, F)
        p = (past * sample_predictor(model.lpc(frames))).sum(-1).numpy()       # (B, F)
        beta = torch.nn.functional.softplus(model.prior_scale).item()
    mu_p = np.sign(p) * np.log1p(255 * np.minimum(np.abs(p), 1)) / np.log1p(255)  # (B, F)
    codes = np.linspace(-1, 1, 256)
    expected = -beta * np.log1p(np.exp(8 + rho)[..., None] * (codes - mu_p[..., None]) ** 2)  # (B, F, V)

    def log_softmax(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    assert np.abs(log_softmax(prior.double().numpy()) - log_softmax(expected)).max() < 1e-4
    assert np.abs(v[..., 0].double().numpy() / np.log1p(255) - mu_p).max() < 1e-6


def test_the_prediction_uses_the_past_samples_and_the_frame():
    """Changing sample t-1 moves the prior at t even with the network's own path blind to it (a causal model of
    the past through the predictor); changing frame 3 moves only samples 12..15."""
    model, _ = tiny_source_filter()
    T, hop = 24, VOCODER["mel_hop"]
    x = torch.randint(0, 256, (1, T), generator=torch.Generator().manual_seed(0))
    frames = torch.from_numpy(frames_for(model, 1, T))
    with torch.no_grad():
        base = model(x, features=frames)
        other = frames.clone()
        other[:, 3] += 1
        changed = (model(x, features=other) - base).abs().amax(dim=(0, 2))  # (T,)
        y = x.clone()
        y[0, 10] = (y[0, 10] + 100) % 256
        moved = (model(y, features=frames) - base).abs().amax(dim=(0, 2))  # (T,)
    assert changed[:3 * hop].max() == 0 and changed[3 * hop:4 * hop].min() > 0
    assert moved[:11].max() == 0 and moved[11] > 0


@pytest.mark.parametrize("graph", ["step", "full", "chunk"])
def test_export_verifies_every_graph(graph):
    model, _ = tiny_source_filter()
    report = verify_onnx(exported_source_filter(graph), model)
    assert report.passed, report.lines()
    assert report.comparisons[0].positions >= 2 * model.state_period + 1


def test_chunk_graph_samples_what_the_step_loop_samples(tmp_path):
    np.save(tmp_path / "f.npy", frames_for(tiny_source_filter()[0], 1, 1500)[0])
    for graph in ("step", "chunk"):
        result = CliRunner().invoke(app, ["sample", str(exported_source_filter(graph)), "--features",
                                          str(tmp_path / "f.npy"), "--seed", "5", "--out", str(tmp_path / f"{graph}.wav")])
        assert result.exit_code == 0, result.stderr
    step, chunk = ((tmp_path / f"{g}.wav").read_bytes() for g in ("step", "chunk"))
    assert step == chunk and len(step) > 2000


def test_int8_variant_keeps_the_decoded_past_exact():
    """The int8 conversion quantizes float32 tables; the decoded samples are float64, so the variant's past (the
    ``samples`` state) is the fp32 graph's bit for bit, quiet samples included (at 8 bits over [-1, 1] every
    sample below 1/255 would read as 0)."""
    source = exported_source_filter("step")
    variant = int8_graph(onnx.load(source)).SerializeToString()
    sessions = [ort.InferenceSession(g, providers=["CPUExecutionProvider"]) for g in (str(source), variant)]
    model = tiny_source_filter()[0]
    frames = frames_for(model, 1, 40)[0]                                         # (F, M)
    tokens = np.r_[np.arange(0, 256, 13), np.arange(120, 131)]                   # loud codes, then quiet ones (127, 128)
    pasts = []
    for session in sessions:
        state = {i.name: np.zeros([1, *i.shape[1:]], np.float64 if "double" in i.type else np.float32)
                 for i in session.get_inputs() if i.name.startswith("in.")}
        names, previous = [o.name for o in session.get_outputs()], 256
        for t, token in enumerate(tokens):
            outputs = session.run(None, {"input_ids": np.array([previous]), "position": np.array([t]),
                                         "features": frames[None, t // VOCODER["mel_hop"]], **state})
            state = {n.replace("out.", "in."): v for n, v in zip(names[1:], outputs[1:])}
            previous = token
        pasts.append(state["in.samples"])
    assert pasts[0].dtype == np.float64 and np.array_equal(pasts[0], pasts[1])
    assert np.abs(pasts[0]).min() < 1 / 255 and pasts[0].any()                  # quiet ones were there to lose


def test_score_is_the_bits_of_the_file_s_own_codes(tmp_path):
    model, _ = tiny_source_filter()
    write_wav(tmp_path / "a.wav", np.random.default_rng(1).standard_normal(700) * 0.2, RATE)
    codes = mulaw_encode(np.frombuffer((tmp_path / "a.wav").read_bytes()[44:], "<i2") / 32768)
    frames = torch.from_numpy(mulaw_features(codes, model.feature_spec, 256))[None]
    with torch.no_grad():
        logits = model(torch.from_numpy(codes)[None], features=frames)[0]  # (T, V)
    want = torch.nn.functional.cross_entropy(logits, torch.from_numpy(codes)).item() / np.log(2)
    for graph in ("full", "step"):
        result = CliRunner().invoke(app, ["score", str(exported_source_filter(graph)), str(tmp_path / "a.wav"), "--json"])
        assert result.exit_code == 0, result.stderr
        assert abs(json.loads(result.stdout)["bits_per_dim"] - want) < 1e-4


@pytest.mark.parametrize("value", [np.nan, -np.inf])
def test_features_that_give_no_predictor_are_refused(tmp_path, value):
    spec = tiny_source_filter()[0].feature_spec
    np.save(tmp_path / "bad.npy", np.full((5, spec.n_mels), value, np.float32))
    (tmp_path / "out").mkdir()
    for graph in ("step", "chunk"):
        assert_error(["sample", exported_source_filter(graph), "--features", tmp_path / "bad.npy", "--out",
                      tmp_path / "out" / "a.wav"], 2, "NaN or infinite values (the first is frame 0)", tmp_path / "out")


@pytest.mark.parametrize("samples", [16000, 50], ids=["digital silence", "shorter than one frame"])
def test_silence_and_a_clip_shorter_than_a_frame_are_vocoded(tmp_path, samples):
    """Digital silence is a legitimate input (its frames sit at the floor and give a stable predictor of a
    silent past: 0); a clip of fewer samples than a hop is one frame. Both come back at their own length."""
    write_wav(tmp_path / "in.wav", np.zeros(samples), RATE)
    result = CliRunner().invoke(app, ["vocode", str(exported_source_filter("chunk")), str(tmp_path / "in.wav"),
                                      "--out", str(tmp_path / "out.wav")])
    assert result.exit_code == 0, result.stderr
    out, rate = read_wav_samples((tmp_path / "out.wav").read_bytes())
    assert rate == RATE and len(out) == samples
