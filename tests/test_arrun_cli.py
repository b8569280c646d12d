"""arrun on tiny exported models of each family: the step loop against eager PyTorch, every command
through the CLI, determinism, and the sampled distribution."""
import json
import wave

import numpy as np
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from arexport.verify import TorchStepper
from arrun import commands
from arrun import session as session_module
from arrun.cli import app
from arrun.contract.codecs import mulaw_decode, png_decode
from arrun.generate import SampleOptions
from arrun.runtime import Stepper
from arrun.sampling import SamplingOptions, sample, sample_rngs
from arrun.session import open_model
from conftest import ALPHABET, KIND, SAMPLE_RATE, TINY, exported, tiny_model

KINDS = [("audio", 0), ("image", 3), ("text", 0)]


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.stderr
    return result


def cli_json(*args):
    return json.loads(cli(*args, "--json").stdout)


@pytest.mark.parametrize("kind,classes", KINDS)
def test_step_loop_equals_eager_forward(kind, classes):
    """The IO-bound, double-buffered loop reproduces the PyTorch model's logits at every position."""
    model, _ = tiny_model(KIND[kind], classes)
    runner = Stepper(open_model(exported(KIND[kind], "step", classes)), 3)
    T = runner.info.max_length or 40
    x = np.random.default_rng(0).integers(0, runner.info.vocab_size, (3, T))
    cond = np.array([0, 2, 1]) if classes else None
    runner.reset(cond)
    feed, logits = np.full(3, runner.info.start_token), []
    for t in range(T):
        logits.append(runner.step(feed, np.full(3, t)).copy())
        feed = x[:, t].copy()
    with torch.no_grad():
        ref = model.sequence_logits(torch.from_numpy(x), None if cond is None else torch.from_numpy(cond))
    assert np.abs(np.stack(logits, axis=1) - ref.numpy()).max() < 1e-4


@pytest.mark.parametrize("kind,classes", KINDS)
def test_info_json(kind, classes):
    path = exported(KIND[kind], "step", classes)
    record = cli_json("info", path)
    family = KIND[kind]
    assert (record["family"], record["graph"], record["data_kind"]) == (family, "step", kind)
    model, _ = tiny_model(family, classes)
    assert [(s["name"], s["shape"], s["dtype"], s["init"]) for s in record["state"]] == \
        [(s.name, list(s.shape), s.dtype, s.init) for s in model.state_spec()]
    kind_fields = {"image_shape", "alphabet", "sample_rate"}
    assert kind_fields & set(record) == {"audio": {"sample_rate"}, "image": {"image_shape"}, "text": {"alphabet"}}[kind]
    assert record["bits_unit"] == {"audio": "sample", "image": "pixel", "text": "character"}[kind]
    assert record["inputs"][0] == "input_ids" and record["outputs"][0] == "logits"
    assert set(record["inputs"]) >= {s["input"] for s in record["state"]}
    assert "family: " + family in cli("info", path).stdout


def test_sample_image_grid_per_class(tmp_path):
    out = tmp_path / "grid.png"
    record = cli_json("sample", exported(KIND["image"], "step", 3), "-n", 4, "--out", out)
    images = np.load(tmp_path / "grid.npy")
    assert images.shape == (12, 5, 4) and images.dtype == np.int64
    assert images.min() >= 0 and images.max() < 4
    assert record["files"] == [str(out), str(tmp_path / "grid.npy")]
    assert record["conditions"] == [0] * 4 + [1] * 4 + [2] * 4
    grid = png_decode(out.read_bytes(), str(out))
    scale = 32 // 5  # tiles magnified to about 32 pixels
    assert grid.shape == (3 * (5 * scale + 1) + 1, 4 * (4 * scale + 1) + 1)  # one row per class
    first = grid[1:1 + 5 * scale:scale, 1:1 + 4 * scale:scale]
    assert np.array_equal(first, np.round(images[0] * 255 / 3).astype(np.uint8))
    one_class = cli_json("sample", exported(KIND["image"], "step", 3), "-n", 2, "--condition", 2, "--out", out)
    assert one_class["conditions"] == [2, 2] and np.load(tmp_path / "grid.npy").shape == (2, 5, 4)


def test_sample_audio_wav(tmp_path):
    out = tmp_path / "a.wav"
    record = cli_json("sample", exported(KIND["audio"]), "-n", 2, "--length", 900, "--out", out, "--seed", 3)
    paths = [tmp_path / "a-000.wav", tmp_path / "a-001.wav"]
    assert record["files"] == [str(p) for p in paths]
    assert sorted(tmp_path.iterdir()) == paths  # no pending file left behind
    for path in paths:
        with wave.open(str(path)) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, SAMPLE_RATE, 900)
            pcm = np.frombuffer(w.readframes(900), "<i2")
        assert np.abs(pcm).max() > 0
        levels = np.round(mulaw_decode(np.arange(256)) * 32767)
        assert np.isin(pcm, levels).all()  # every frame is a decoded mu-law code


def test_sample_text_streams_and_writes(tmp_path):
    result = cli("sample", exported(KIND["text"]), "--prompt", "ab c", "--length", 12, "--seed", 5)
    text = result.stdout.rstrip("\n")
    assert text.startswith("ab c") and len(text) == 16 and set(text) <= set(ALPHABET)
    record = cli_json("sample", exported(KIND["text"]), "--prompt", "ab c", "--length", 12, "--seed", 5,
                      "--out", tmp_path / "t.txt")
    assert record["text"] == [text] and (tmp_path / "t.txt").read_text() == text
    assert record["tokens"] == [[ALPHABET.index(c) for c in text]]
    assert record["steps_per_s"] > 0


def test_unbounded_text_samples_the_default_length_after_the_prompt():
    record = cli_json("sample", exported(KIND["text"]), "--prompt", "abc")
    assert len(record["text"][0]) == 3 + 256 and record["text"][0].startswith("abc")


def test_greedy_equals_eager_argmax():
    model, _ = tiny_model(KIND["text"])
    record = cli_json("sample", exported(KIND["text"]), "--temperature", 0, "--prompt", "h", "--length", 23)
    x = torch.tensor([[ALPHABET.index("h")]])
    with torch.no_grad():
        while x.shape[1] < 24:  # logits[:, t] predict x_t: append a placeholder to read the next one
            logits = model(torch.cat([x, torch.zeros(1, 1, dtype=torch.long)], dim=1))[:, -1]
            x = torch.cat([x, logits.argmax(-1, keepdim=True)], dim=1)
    assert record["tokens"][0] == x[0].tolist()


@pytest.mark.parametrize("kind,classes,args", [("image", 3, ["-n", 2]), ("audio", 0, ["-n", 3, "--length", 300]),
                                               ("text", 0, ["-n", 3, "--top-p", 0.9])])
def test_same_seed_same_bytes_any_batch_size(tmp_path, kind, classes, args):
    model = exported(KIND[kind], "step", classes)
    suffix = {"image": ".png", "audio": ".wav", "text": ".txt"}[kind]
    runs = {}
    for name, batch in (("a", None), ("b", None), ("c", 1), ("d", 2)):
        folder = tmp_path / name
        folder.mkdir()
        cli("sample", model, *args, "--seed", 11, "--out", folder / f"s{suffix}",
            *(["--batch-size", batch] if batch else []))
        runs[name] = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    assert len(runs["a"]) >= 2
    assert runs["a"] == runs["b"] == runs["c"] == runs["d"]
    other = tmp_path / "e"
    other.mkdir()
    cli("sample", model, *args, "--seed", 12, "--out", other / f"s{suffix}")
    assert {p.name: p.read_bytes() for p in other.iterdir()} != runs["a"]


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.7, 0, 1.0), (1.0, 3, 1.0), (1.3, 0, 0.8)])
def test_first_tokens_follow_the_softmax(temperature, top_k, top_p):
    """Chi-square: 2000 first tokens against softmax(logits / T) restricted to the top k or top p."""
    model, _ = tiny_model(KIND["text"])
    with torch.no_grad():
        logits = model(torch.zeros(1, 1, dtype=torch.long))[0, 0].double() / temperature  # position 0
    p = torch.softmax(logits, 0)
    order = torch.argsort(p, descending=True, stable=True)
    n_keep = top_k or int((torch.cumsum(p[order], 0) < top_p).sum()) + 1
    expected = torch.zeros_like(p)
    expected[order[:n_keep]] = p[order[:n_keep]]
    expected = (expected / expected.sum()).numpy()
    options = SampleOptions(num_samples=2000, sampling=SamplingOptions(temperature, top_k, top_p), seed=1, length=1)
    record = commands.sample(exported(KIND["text"]), options=options)
    counts = np.bincount([t[0] for t in record["tokens"]], minlength=len(expected))
    assert (counts[expected == 0] == 0).all()
    kept = expected > 0
    statistic, p_value = stats.chisquare(counts[kept], 2000 * expected[kept])
    assert p_value > 1e-3, (counts, np.round(2000 * expected))


def test_bench_reports_both_loops():
    record = cli_json("bench", exported(KIND["text"]), "--steps", 60, "--batch-size", 2)
    assert record["steps"] == 60 and record["batch_size"] == 2
    assert record["steps_per_s"] > 0 and record["bare_steps_per_s"] > 0 and record["loop_vs_bare"] > 0
    assert "bare session.run" in cli("bench", exported(KIND["audio"]), "--steps", 30).stdout


@pytest.mark.parametrize("family", list(TINY))
def test_first_samples_of_every_family_follow_its_step_graph(family):
    """Chi-square, for every family: 2000 first elements drawn from the step graph's logits through the
    shipped loop and sampler against softmax of the eager model's first logits, under class 1."""
    model, _ = tiny_model(family, 3)
    eager = TorchStepper(model, 1)
    eager.reset(np.ones(1, np.int64))
    logits = eager.step(np.full(1, model.config.vocab_size, np.int64), 0)  # (1, V)
    expected = torch.softmax(torch.from_numpy(logits[0]).double(), 0).numpy()
    stepper = Stepper(open_model(exported(family, "step", 3)), 2000)
    stepper.reset(np.ones(2000, np.int64))
    first = stepper.step(np.full(2000, stepper.info.start_token, np.int64), np.zeros(2000, np.int64))
    tokens = sample(first, SamplingOptions(), sample_rngs(7, range(2000)))
    counts = np.bincount(tokens, minlength=len(expected))
    kept = expected * 2000 >= 5  # chi-square needs expected counts >= 5; pool the rest
    observed = np.append(counts[kept], counts[~kept].sum())
    wanted = np.append(2000 * expected[kept], 2000 * expected[~kept].sum())
    if wanted[-1] == 0:
        observed, wanted = observed[:-1], wanted[:-1]
    assert stats.chisquare(observed, wanted * observed.sum() / wanted.sum()).pvalue > 1e-3, (counts, expected)


def test_cuda_sessions_ask_for_float32_arithmetic(monkeypatch):
    """On the CUDA provider a session turns TF32 off, so an fp32 graph computes in fp32 there (onnxruntime's
    default rounds matrix products' inputs to 10-bit mantissas); the CPU provider takes no options."""
    asked = []
    monkeypatch.setattr(session_module.ort, "InferenceSession", lambda path, options, providers: asked.append(providers))
    for provider in ("CUDAExecutionProvider", "CPUExecutionProvider"):
        session_module._create_session(exported(KIND["audio"]), provider, 1)
    assert asked == [[("CUDAExecutionProvider", {"use_tf32": "0"})], [("CPUExecutionProvider", {})]]
