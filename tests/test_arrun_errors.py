"""Bad input gives one `error: ...` line, exit 2 (usage) or 1 (runtime), no traceback and no output
file; arrun runs where torch cannot be imported; CUDA missing is an error, never a silent CPU run."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from arrun import commands
from arrun.contract.heads import softmax as softmax_head
from arrun.cli import app
from arrun.contract.errors import Interrupted, UsageError
from arrun.generate import SampleOptions
from conftest import KIND, exported

ROOT = Path(__file__).resolve().parents[1]


def assert_error(args, code, fragment, out_dir=None, env=None):
    result = CliRunner(env=env).invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    if out_dir is not None:
        assert list(out_dir.iterdir()) == []  # no partial output file
    return lines[0]


def edited(tmp_path, name, edit, kind="text"):
    """A copy of an exported model with its ModelProto changed by ``edit``."""
    proto = onnx.load(str(exported(KIND[kind], "step", 3 if kind == "image" else 0)))
    edit(proto)
    path = tmp_path / name
    onnx.save(proto, str(path))
    return path


def set_meta(key, value):
    def edit(proto):
        props = {p.key: p.value for p in proto.metadata_props}
        props[key] = value(props[key]) if callable(value) else value
        del proto.metadata_props[:]
        for k, v in props.items():
            if v is not None:
                proto.metadata_props.add(key=k, value=v)
    return edit


def renamed_layer(state: str) -> str:
    """The metadata's state names for layer 1 renamed to layer 9 (consistent, but not the graph's)."""
    return state.replace("past_key_values.1.", "past_key_values.9.").replace("present.1.", "present.9.")


def test_bad_model_files(tmp_path):
    good = exported(KIND["text"]).read_bytes()
    (tmp_path / "not.onnx").write_text("hello")
    (tmp_path / "cut.onnx").write_bytes(good[: len(good) // 2])
    cases = [
        (tmp_path / "missing.onnx", "does not exist"),
        (tmp_path, "is a directory"),
        (tmp_path / "not.onnx", "not a loadable ONNX model"),
        (tmp_path / "cut.onnx", "not a loadable ONNX model"),
        (edited(tmp_path, "bare.onnx", lambda p: p.ClearField("metadata_props")), "does not exist in the metadata"),
        (edited(tmp_path, "v9.onnx", set_meta("ar.format_version", "9")), "format version 9"),
        (edited(tmp_path, "state.onnx", set_meta("ar.state", lambda s: s.replace("past_key_values.1.value", "x"))),
         "is bound to 'x' -> 'present.1.value'"),
        (edited(tmp_path, "renamed.onnx", set_meta("ar.state", renamed_layer)), "disagrees with its metadata"),
        (edited(tmp_path, "vocab.onnx", set_meta("ar.vocab_size", "5"), kind="image"), "disagrees with its metadata"),
    ]
    for path, fragment in cases:
        for command in ("info", "sample") if path != tmp_path else ("sample",):  # info lists a folder's graphs
            assert_error([command, path], 2, fragment)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes regardless of permissions")
def test_unreadable_model_and_unwritable_folder(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(exported(KIND["text"]).read_bytes())
    model.chmod(0)
    assert_error(["info", model], 2, "cannot read")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert_error(["sample", exported(KIND["audio"]), "--out", locked / "a.wav"], 2, "cannot write", locked)


@pytest.mark.parametrize("kind,args,fragment", [
    ("text", ["--temperature", "-1"], "--temperature must be >= 0"),
    ("text", ["--top-p", "0"], "--top-p must be in (0, 1]"),
    ("text", ["--top-p", "1.5"], "--top-p must be in (0, 1]"),
    ("text", ["--top-k", "-1"], "--top-k must be >= 0"),
    ("text", ["-n", "0"], "-n and --batch-size must be >= 1"),
    ("text", ["--batch-size", "0"], "-n and --batch-size must be >= 1"),
    ("text", ["--seed", "-3"], "--seed must be >= 0"),
    ("image", ["--condition", "3"], "--condition 3 is out of range; use 0..2 (zero, one, two)"),
    ("text", ["--condition", "0"], "unconditional"),
    ("text", ["--prompt", "abZ"], "outside the model's alphabet ('Z')"),
    ("text", ["--length", "0"], "--length must be >= 1"),
    ("audio", ["--prompt", "ab"], "for text models"),
    ("image", ["--length", "7"], "fixed size"),
    ("audio", ["--length", "0"], "--length must be >= 1"),
])
def test_bad_sample_options(tmp_path, kind, args, fragment):
    out = tmp_path / "out"
    out.mkdir()
    model = exported(KIND[kind], "step", 3 if kind == "image" else 0)
    suffix = {"image": ".png", "audio": ".wav", "text": ".txt"}[kind]
    assert_error(["sample", model, *args, "--out", out / f"s{suffix}"], 2, fragment, out)


def test_bad_output_paths_and_graph(tmp_path):
    assert_error(["sample", exported(KIND["audio"]), "--out", tmp_path / "no" / "a.wav"], 2, "does not exist", tmp_path)
    (tmp_path / "d.wav").mkdir()
    assert_error(["sample", exported(KIND["audio"]), "--out", tmp_path / "d.wav"], 2, "is a directory")
    assert_error(["sample", exported(KIND["text"], "full")], 2, "needs the step or chunk graph")
    assert_error(["bench", exported(KIND["text"]), "--steps", "0"], 2, "--steps at most")


def test_bad_score_data(tmp_path):
    np.save(tmp_path / "hi.npy", np.full((2, 5, 4), 4))
    np.save(tmp_path / "shape.npy", np.zeros((2, 4, 4), np.int64))
    np.save(tmp_path / "float.npy", np.zeros((2, 5, 4)))
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    (tmp_path / "z.txt").write_text("abc XYZ")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    image, text = exported(KIND["image"], "step", 3), exported(KIND["text"], "full")
    cases = [
        (image, tmp_path / "hi.npy", ["--condition", "0"], "levels up to 4 but the model has 4 levels"),
        (image, tmp_path / "shape.npy", ["--condition", "0"], "has images of 4x4, the model 5x4"),
        (image, tmp_path / "float.npy", ["--condition", "0"], "integer array"),
        (image, tmp_path / "a.wav", ["--condition", "0"], "is audio data but the model takes image data"),
        (image, tmp_path / "hi.npy", [], "pass --condition 0..2"),
        (text, tmp_path / "hi.npy", [], "is image data but the model takes text data"),
        (text, tmp_path / "z.txt", [], "outside the model's alphabet ('XYZ')"),
        (text, tmp_path / "latin.txt", [], "not valid UTF-8"),
        (text, tmp_path / "none.txt", [], "does not exist"),
        (text, tmp_path, [], "is a folder"),
        (image, tmp_path, ["--condition", "0"], "holds no .png files"),
        (exported(KIND["audio"]), tmp_path / "a.wav", [], "not a readable WAV file"),
    ]
    for model, data, args, fragment in cases:
        assert_error(["score", model, data, *args], 2, fragment)


def test_cuda_missing_is_an_error_with_the_fix(tmp_path):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the missing-provider path cannot be shown here")
    for command in ("sample", "bench"):
        line = assert_error([command, exported(KIND["audio"]), "--provider", "cuda", *(["--out", tmp_path / "a.wav"]
                            if command == "sample" else [])], 1, "pip install .[gpu]", tmp_path)
        assert "CUDAExecutionProvider" in line


def test_debug_variable_shows_the_exception():
    result = CliRunner(env={"AR_DEBUG": "1"}).invoke(app, ["sample", str(exported(KIND["text"])), "--top-k", "-2"])
    assert isinstance(result.exception, UsageError)


def test_interrupted_run_leaves_no_file(tmp_path, monkeypatch):
    """The WAVs grow in files with no name yet (O_TMPFILE) while sampling (every 800 steps here); an interrupt
    drops them, and the folder never shows a name."""
    calls = []

    def interrupt(*args):
        calls.append(1)
        if len(calls) == 2000:
            assert list(tmp_path.iterdir()) == []
            growing = {os.fstat(int(fd)).st_ino: os.fstat(int(fd)).st_size for fd in os.listdir("/proc/self/fd")
                       if _link(f"/proc/self/fd/{fd}").startswith(f"{tmp_path}/#")}  # inode -> size
            assert len(growing) == 2 and all(size >= 44 + 2 * 1600 for size in growing.values())
            raise KeyboardInterrupt
        return real(*args)

    real = softmax_head.sample  # the softmax sampler, as the model's head calls it each step
    monkeypatch.setattr(softmax_head, "sample", interrupt)
    with pytest.raises(Interrupted, match="interrupted"):
        commands.sample(exported(KIND["audio"]), options=SampleOptions(num_samples=2, length=3000), out=tmp_path / "a.wav")
    assert list(tmp_path.iterdir()) == []


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


BLOCK_TORCH = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "onnx", "onnxscript", "artrain", "arexport"):
                raise ImportError(f"{name} is blocked: arrun must not need it")
    sys.meta_path.insert(0, Block())
""")


def test_runs_where_torch_cannot_be_imported(tmp_path):
    """A fresh interpreter in which importing torch, onnx, artrain or arexport fails runs arrun."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def python(code, *args):
        return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code, *map(str, args)], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=120)

    assert "torch is blocked" in python("import torch").stderr
    out = tmp_path / "a.wav"
    run_arrun = "import runpy; sys.argv = ['arrun'] + sys.argv[1:]; runpy.run_module('arrun', run_name='__main__')"
    for args in (["sample", exported(KIND["audio"]), "--length", "50", "--out", out, "--json"],
                 ["info", exported(KIND["text"]), "--json"]):
        result = python(run_arrun, *args)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)
    assert out.is_file()


def test_contract_imports_without_torch_or_onnxruntime(tmp_path):
    """artrain, arexport and arrun share arrun.contract; it needs neither torch nor onnxruntime."""
    block = BLOCK_TORCH.replace('("torch", "onnx", "onnxscript", "artrain", "arexport")',
                                '("torch", "onnx", "onnxruntime", "onnxscript", "artrain", "arexport", "typer")')
    code = ("import arrun.contract.schema, arrun.contract.codecs, arrun.contract.features, arrun.contract.scoring, "
            "arrun.contract.errors, arrun.contract.files, arrun.contract.edge; "
            "print(sorted(m for m in sys.modules if m.startswith('arrun')))")
    result = subprocess.run([sys.executable, "-c", block + code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "onnxruntime" not in result.stdout and "arrun.session" not in result.stdout
