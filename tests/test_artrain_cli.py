"""artrain through its command line: fit a few steps, eval, resume, and bad input."""
import json
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from artrain.cli import app
from conftest import TINY

TINY_MODELS = {family: config for family, (config, _) in TINY.items()}  # the data sets levels, sizes, classes


def tiny_config(tmp_path, family, **extra):
    path = tmp_path / f"{family}.json"
    path.write_text(json.dumps({"model": TINY_MODELS[family], "eval_every": 2, "batch_size": 4, "warmup": 1, **extra}))
    return str(path)


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "tiny.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    return path


@pytest.mark.parametrize("family", ["pixelcnn", "transformer", "wavenet"])
def test_fit_then_eval_digits(tmp_path, family):
    out = tmp_path / "run"
    result = invoke("fit", "--model", family, "--data", "digits", "--steps", 3, "--out", out,
                    "--config", tiny_config(tmp_path, family))
    assert result.exit_code == 0, result.output
    for name in ("model.safetensors", "config.json", "metrics.jsonl", "trainer.safetensors"):
        assert (out / name).is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["family"] == family and config["step"] == 3
    assert config["model"]["num_classes"] == 10 and config["data"]["levels"] == 17
    events = [json.loads(line)["event"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert events.count("val") == 2 and events[-1] == "test"

    result = invoke("eval", out, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["split"] == "test" and record["data"] == "digits" and record["n_dims"] == 447 * 64
    assert record["bits_per_dim"] == pytest.approx(config["eval"]["bits_per_dim"], abs=1e-9)
    assert record["nats_per_dim"] == pytest.approx(record["bits_per_dim"] * 0.6931471805599453)
    assert 0 < record["bits_per_dim"] < 5  # log2(17) ~ 4.09 is uniform; a few steps stay near it


@pytest.mark.parametrize("family", ["transformer", "wavenet"])
def test_fit_text_file(tmp_path, family, text_file):
    out = tmp_path / "run"
    result = invoke("fit", "--model", family, "--data", text_file, "--steps", 2, "--seq-len", 16, "--out", out,
                    "--config", tiny_config(tmp_path, family))
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["data"]["kind"], config["data"]["levels"], config["data"]["alphabet"]) == ("utf8", 256, None)
    result = invoke("eval", out, "--split", "val", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["split"] == "val"
    chars = tmp_path / "chars"
    result = invoke("fit", "--model", family, "--data", text_file, "--steps", 2, "--seq-len", 16, "--out", chars,
                    "--text-as", "characters", "--config", tiny_config(tmp_path, family))
    assert result.exit_code == 0, result.output
    config = json.loads((chars / "config.json").read_text())
    assert config["data"]["alphabet"] == "".join(sorted(set(text_file.read_text())))


def test_fit_is_deterministic(tmp_path):
    runs = []
    for name in ("a", "b"):
        assert invoke("fit", "--model", "pixelcnn", "--steps", 2, "--out", tmp_path / name, "--seed", 7,
                      "--config", tiny_config(tmp_path, "pixelcnn")).exit_code == 0
        runs.append((tmp_path / name / "model.safetensors").read_bytes())
    assert runs[0] == runs[1]


def error_line(result, code):
    """The one error line, which ends stderr (progress lines such as "loading ..." may come before it)."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], result.stderr
    assert "Traceback" not in result.output
    return lines[-1]


def test_bad_input(tmp_path, text_file):
    cfg = tiny_config(tmp_path, "pixelcnn")
    assert "digits, text, pystdlib, speech" in error_line(invoke("fit", "--model", "wavenet", "--data", "nonsense", "--config", cfg), 2)
    assert "nor an existing path" in error_line(invoke("fit", "--model", "wavenet", "--data", tmp_path / "missing.txt"), 2)
    bad_text = tmp_path / "latin1.txt"
    bad_text.write_bytes("caf\xe9".encode("latin-1") * 10)
    assert "UTF-8" in error_line(invoke("fit", "--model", "transformer", "--data", bad_text, "--text-as", "characters"), 2)
    empty_wavs = tmp_path / "wavs"
    empty_wavs.mkdir()
    for name in ("a.wav", "b.wav", "c.wav"):
        (empty_wavs / name).write_bytes(b"")
    assert "a.wav" in error_line(invoke("fit", "--model", "wavenet", "--data", empty_wavs), 2)
    for flag in ("--steps", "--batch-size", "--lr"):
        assert flag in error_line(invoke("fit", "--model", "pixelcnn", flag, 0, "--config", cfg), 2)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"stepz": 3}))
    assert "stepz" in error_line(invoke("fit", "--model", "pixelcnn", "--config", unknown), 2)
    bad_model_key = tmp_path / "bad_model.json"
    bad_model_key.write_text(json.dumps({"model": {"depth": 3}}))
    assert "depth" in error_line(invoke("fit", "--model", "pixelcnn", "--config", bad_model_key), 2)
    assert "image data" in error_line(invoke("fit", "--model", "pixelcnn", "--data", text_file), 2)
    # an output directory that already holds a model
    out = tmp_path / "taken"
    assert invoke("fit", "--model", "pixelcnn", "--steps", 1, "--out", out, "--config", cfg).exit_code == 0
    assert "already holds a checkpoint" in error_line(invoke("fit", "--model", "wavenet", "--out", out), 2)
    # eval of something that is not a checkpoint
    assert "does not exist" in error_line(invoke("eval", tmp_path / "nothing"), 2)
    assert "not a complete checkpoint" in error_line(invoke("eval", empty_wavs), 2)
    assert "image data with 17" in error_line(invoke("eval", out, "--data", text_file), 2)


def test_family_from_the_config_file(tmp_path):
    """A config file may name the family and the data (as models/*/train.json do); an unknown one is refused
    with the families there are."""
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"family": "rnn", "data": "digits"}))
    assert "choose one of pixelcnn" in error_line(invoke("fit", "--config", cfg), 2)
    cfg.write_text(json.dumps({"family": "wavenet", "data": "digits", "steps": 2, "batch_size": 4,
                               "model": TINY_MODELS["wavenet"]}))
    result = invoke("fit", "--config", cfg, "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert (record["family"], record["data"], record["step"]) == ("wavenet", "digits", 2)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["family"] == config["train"]["family"] == "wavenet"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_leaves_a_checkpoint_that_resume_continues(tmp_path, sig):
    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, "pixelcnn", eval_every=100000)
    cmd = [sys.executable, "-m", "artrain", "fit", "--model", "pixelcnn", "--steps", "100000", "--out", str(out), "--config", cfg]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "metrics.jsonl").exists():  # written at step 10
        time.sleep(0.2)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr.strip().splitlines()[-1] and "Traceback" not in stderr
    step = json.loads((out / "config.json").read_text())["step"]
    assert step >= 10
    result = invoke("fit", "--resume", out, "--steps", step + 2)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["step"] == step + 2 and config["eval"]["split"] == "test"


def test_resume_reads_text_as_the_checkpoint_did(tmp_path, text_file):
    """A character run from before bytes were the default (its options name no text_as) resumes on characters."""
    out = tmp_path / "run"
    assert invoke("fit", "--model", "transformer", "--data", text_file, "--steps", 2, "--seq-len", 16, "--out", out,
                  "--text-as", "characters", "--config", tiny_config(tmp_path, "transformer")).exit_code == 0
    config = json.loads((out / "config.json").read_text())
    del config["train"]["text_as"]
    (out / "config.json").write_text(json.dumps(config))
    result = invoke("fit", "--resume", out, "--steps", 3)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["step"], config["data"]["kind"], config["train"]["text_as"]) == (3, "text", "characters")
