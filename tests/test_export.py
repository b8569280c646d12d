"""arexport: parity of the exported graphs with the eager model, the metadata contract, the CLI, bad input.

Every export is a few seconds of CPU, so each tiny model is exported once per module and shared; the
parity figures themselves come from ``verify_onnx`` (onnxruntime vs torch step rollout and forward).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

import arexport.export
from arexport import ParityError, export_onnx, verify_onnx
from arexport.cli import app
from arrun.contract.errors import UsageError
from arrun.contract.schema import ModelInfo
from conftest import CLASSES, TINY, exported, make_checkpoint, tiny_model as checkpoint

FAMILIES = list(TINY)
STEP_CASES = [(family, classes) for family in FAMILIES for classes in (0, 3)]
FULL_CASES = [(family, 3 * (i % 2 == 0)) for i, family in enumerate(FAMILIES)]  # each family once


def read_info(path: Path) -> ModelInfo:
    return ModelInfo.from_metadata({p.key: p.value for p in onnx.load(path).metadata_props}, source=str(path))


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # tiny inputs; a spinning pool only slows a shared machine down
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# ---- parity -------------------------------------------------------------------------------------

@pytest.mark.parametrize("family,num_classes", STEP_CASES)
def test_step_graph_parity(family, num_classes):
    """ORT step rollout (teacher-forced and greedy) vs torch step and forward, batch 1 and 3 (export traced
    batch 2, so both are batch sizes the exporter never saw), up to the last position before max length."""
    path = exported(family, "step", num_classes)
    report = verify_onnx(path, checkpoint(family, num_classes)[1], steps=64, batches=(1, 3))
    assert report.passed and report.max_abs_diff <= 1e-4
    info = read_info(path)
    checks = ["onnx step vs torch step", "onnx step vs torch forward", "onnx greedy vs torch greedy",
              "onnx rows joining vs forward"]  # rows restarting at different steps, each equal to forward
    checks += ["onnx prefill vs torch forward"] * (info.step_tokens > 1)
    assert {(c.what, c.batch) for c in report.comparisons} == {(what, b) for what in checks for b in (1, 3)}
    # the in-place proof: a verdict per state, a reason for each that keeps two buffers; every family writes
    # at least one ring or column with one scatter (the file itself, exported unverified, declares none)
    assert [v.name for v in report.in_place] == [s.name for s in info.state]
    assert all(v.in_place or v.reason for v in report.in_place) and any(v.in_place for v in report.in_place)
    assert not any(s.in_place for s in info.state)
    assert all(c.token_mismatches == 0 for c in report.comparisons)
    assert 64 > 3 * info.window  # a windowed model's ring buffer wraps several times
    assert all(c.positions == min(info.max_length or 64, 64) for c in report.comparisons)  # up to the last position


@pytest.mark.parametrize("family,num_classes", FULL_CASES)
def test_full_graph_parity(family, num_classes):
    report = verify_onnx(exported(family, "full", num_classes), checkpoint(family, num_classes)[1])
    assert report.passed and report.max_abs_diff <= 1e-4
    assert [(c.what, c.batch) for c in report.comparisons] == [("onnx full vs torch forward", 1),
                                                                ("onnx full vs torch forward", 3)]


@pytest.mark.parametrize("family,num_classes", FULL_CASES)
def test_full_graph_dynamic_batch_and_length(family, num_classes):
    """Batch 5 and, where the length is free, 1 and the maximum (or beyond the trace when unbounded)."""
    path, model = exported(family, "full", num_classes), checkpoint(family, num_classes)[0]
    lengths = (model.fixed_length,) if model.fixed_length else (1, model.max_length or 100)
    V = model.config.vocab_size
    rng = np.random.default_rng(1)
    for T in lengths:
        x = rng.integers(0, V, (5, T))
        cond = rng.integers(0, num_classes, 5) if num_classes else None
        feed = {"input_ids": x} | ({"condition": cond} if num_classes else {})
        with torch.no_grad():
            want = model.sequence_logits(torch.from_numpy(x), None if cond is None else torch.from_numpy(cond)).numpy()
        got = session(path).run(["logits"], feed)[0]
        assert got.shape == (5, T, V) and np.abs(got - want).max() <= 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_initial_state_from_metadata(family):
    """The state a runtime builds from the metadata alone is the model's initial state, and the first
    step from it gives forward's logits at position 0; every state output has its input's shape."""
    path, model = exported(family, "step", 0), checkpoint(family, 0)[0]
    info = read_info(path)
    batch = 4
    state = {s.input: s.initial(batch) for s in info.state}
    init = model.init_state(batch)
    assert [s.name for s in info.state] == list(init)
    for spec in info.state:
        assert np.array_equal(state[spec.input], init[spec.name].numpy())
    tokens = np.full((batch, 1) if info.step_tokens > 1 else batch, info.start_token)  # (B, 1): a chunk of one
    feed = {"input_ids": tokens, **state}
    if info.uses_position:
        feed["position"] = np.zeros(batch, np.int64)  # (B,): a position per row
    outs = dict(zip(info.output_names(), session(path).run(info.output_names(), feed)))
    outs["logits"] = outs["logits"].reshape(batch, info.vocab_size)
    for spec in info.state:
        assert outs[spec.output].shape == state[spec.input].shape and outs[spec.output].dtype == np.float32
    x = torch.randint(0, info.vocab_size, (batch, info.max_length or 8))
    with torch.no_grad():
        first = model.sequence_logits(x)[:, 0].numpy()
    assert np.abs(outs["logits"] - first).max() <= 1e-4


def test_step_graph_batch_seven():
    """A batch size far from the traced one, through the verification itself."""
    report = verify_onnx(exported("transformer", "step", 3), checkpoint("transformer", 3)[1], steps=6, batches=(7,))
    assert report.passed and {c.positions for c in report.comparisons} == {2 * 6 + 1}  # a window of 6 wraps


# ---- the contract -------------------------------------------------------------------------------

@pytest.mark.parametrize("family,graph,num_classes", [(f, "step", c) for f, c in STEP_CASES] +
                         [(f, "full", c) for f, c in FULL_CASES])
def test_metadata_round_trip(family, graph, num_classes):
    path = exported(family, graph, num_classes)
    model = checkpoint(family, num_classes)[0]
    proto = onnx.load(path)
    meta = {p.key: p.value for p in proto.metadata_props}
    info = ModelInfo.from_metadata(meta)
    assert info.to_metadata() == meta
    assert [v.name for v in proto.graph.input] == info.input_names()
    assert [v.name for v in proto.graph.output] == info.output_names()
    data = TINY[family][1]
    V = model.config.vocab_size
    assert (info.family, info.graph, info.data_kind) == (family, graph, data["kind"])
    assert (info.vocab_size, info.start_token, info.max_length) == (V, V, model.max_length)
    assert (info.num_classes, info.class_names) == (num_classes, CLASSES[:num_classes])
    assert info.image_shape == tuple(data.get("image_shape", ()))
    assert (info.alphabet, info.sample_rate) == (data.get("alphabet", ""), data.get("sample_rate", 0))
    assert info.uses_position == (graph == "step" and model.uses_position)
    if graph == "step":
        assert info.state == model.state_spec()
    else:
        assert info.state == ()
    if num_classes:
        assert (info.bits_per_dim, info.bits_split) == (1.25, "test")
    else:
        assert math.isnan(info.bits_per_dim) and info.bits_split == ""
    assert (info.opset, info.min_onnxruntime) == (18, "1.14.1")
    assert set(info.producer) == {"torch", "onnx", "onnxscript", "onnxruntime", "arexport"}
    assert proto.ir_version == 8 and [(o.domain, o.version) for o in proto.opset_import] == [("", 18)]
    assert not any(node.metadata_props for node in proto.graph.node)  # IR 10 fields stripped


def test_kv_cache_names():
    info = read_info(exported("transformer", "step", 0))
    assert info.input_names()[:2] == ["input_ids", "position"]
    assert [s.input for s in info.state][:2] == ["past_key_values.0.key", "past_key_values.0.value"]
    assert [s.output for s in info.state][:2] == ["present.0.key", "present.0.value"]
    wavenet = read_info(exported("wavenet", "step", 3))
    assert wavenet.input_names() == ["input_ids", "position", "condition", "in.queue"]  # one ring buffer


# ---- the command line ---------------------------------------------------------------------------

def invoke(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A checkpoint written by `artrain fit`: a tiny class-conditional transformer, 2 steps on digits."""
    from artrain.cli import app as artrain
    root = tmp_path_factory.mktemp("trained")
    (root / "tiny.json").write_text(json.dumps({"model": {"layers": 1, "d_model": 16, "heads": 2},
                                                "batch_size": 4, "eval_every": 2, "warmup": 1}))
    result = CliRunner().invoke(artrain, ["fit", "--model", "transformer", "--data", "digits", "--steps", "2",
                                          "--out", str(root / "run"), "--config", str(root / "tiny.json")])
    assert result.exit_code == 0, result.output
    return root / "run"


@pytest.fixture(scope="module")
def cli_export(trained, tmp_path_factory):
    """`arexport onnx trained --step-graph --out FILE --force --json` over an older file -> (result, FILE)."""
    out = tmp_path_factory.mktemp("cli") / "model.onnx"
    out.write_text("an older file")
    return invoke("onnx", trained, "--step-graph", "--out", out, "--force", "--json"), out


def test_cli_export(cli_export):
    result, out = cli_export
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["path"] == str(out) and summary["size_bytes"] == out.stat().st_size
    assert summary["inputs"][:3] == ["input_ids", "position", "condition"]
    assert summary["verification"]["passed"] and summary["verification"]["max_abs_diff"] <= 1e-4
    assert {c["positions"] for c in summary["verification"]["comparisons"]} == {2 * 64 + 1}  # the ring buffer wraps
    assert _files(out.parent) == {"model.onnx"}  # the temporary file is gone
    info = read_info(out)
    assert (info.data_kind, info.image_shape, info.num_classes, info.bits_split) == ("image", (8, 8), 10, "test")
    assert info.class_names == tuple("0123456789") and 0 < info.bits_per_dim < 10


def test_cli_verify(cli_export, trained):
    result = invoke("verify", cli_export[1], trained)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    report = json.loads(invoke("verify", cli_export[1], trained, "--json").stdout)
    assert report["passed"] and len(report["comparisons"]) == 10  # 5 comparisons (rows joining too) x 2 batches
    states = [s.name for s in read_info(cli_export[1]).state]
    assert [v["name"] for v in report["in_place"]] == states  # whether each state is in place, and why not
    # header, verdict, a line per comparison, a line per state ("in place" or "two buffers: <why>")
    assert "verification passed" in lines[1] and len(lines) == 2 + 10 + len(states)
    assert all(line.startswith("  state ") and ("in place" in line or "two buffers: " in line) for line in lines[-len(states):])


def test_cli_default_output_and_text_report(cli_export, trained, monkeypatch):
    """Without --out the file goes beside the checkpoint, with a short text report; a second export
    needs --force. (The graph traced above is handed back instead of re-tracing; it is still verified.)"""
    monkeypatch.setattr(arexport.export, "to_onnx", lambda model, info: onnx.load(cli_export[1]))
    result = invoke("onnx", trained, "--step-graph")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"wrote {trained / 'step.onnx'} (") and "opset 18, IR 8, onnxruntime >= 1.14.1" in lines[0]
    states = len(read_info(trained / "step.onnx").state)  # wrote, inputs, outputs, verdict, 10 comparisons, states
    assert lines[3].startswith("verification passed") and len(lines) == 4 + 10 + states
    assert_one_line_error(invoke("onnx", trained, "--step-graph"), 2, "already exists", "--force")


def assert_one_line_error(result, code: int, *words: str, stdout: str = ""):
    assert result.exit_code == code, result.output
    assert result.stdout == stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and ";" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


BAD_CHECKPOINTS = {
    "missing directory": (lambda d: d.rename(d.with_name("gone")), "does not exist"),
    "missing config": (lambda d: (d / "config.json").unlink(), "config.json is missing"),
    "missing weights": (lambda d: (d / "model.safetensors").unlink(), "model.safetensors is missing"),
    "truncated weights": (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:100]),
                          "corrupt"),
    "unknown family": (lambda d: _edit_config(d, family="lstm"), "unknown model family 'lstm'"),
    "config not json": (lambda d: (d / "config.json").write_text("{not json"), "corrupt"),
    "weights of another model": (lambda d: _edit_config(d, model={**TINY["wavenet"][0], "layers_per_stack": 2}),
                                 "does not match"),
}


def _edit_config(directory: Path, **changes) -> None:
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **changes}))


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_bad_checkpoint(tmp_path, case):
    _, ckpt = make_checkpoint(tmp_path / "run", "wavenet", 0)
    damage, words = BAD_CHECKPOINTS[case]
    damage(ckpt)
    result = invoke("onnx", ckpt, "--step-graph", "--out", tmp_path / "x.onnx")
    assert_one_line_error(result, 2, words)
    assert not (tmp_path / "x.onnx").exists() and _files(tmp_path) <= {"run", "gone"}


@pytest.mark.parametrize("case", ["exists", "parent missing", "parent is a file", "is a directory", "checkpoint file",
                                  "opset 17", "opset 21", "no graph", "both graphs", "graph and alias",
                                  "graph the family lacks"])
def test_bad_arguments(tmp_path, case):
    _, ckpt = make_checkpoint(tmp_path / "run", "pixelcnn" if case == "graph the family lacks" else "wavenet", 0)
    (tmp_path / "file").write_text("x")
    (tmp_path / "taken.onnx").write_text("keep me")
    out, extra, words = {
        "exists": (tmp_path / "taken.onnx", ["--step-graph"], "--force"),
        "parent missing": (tmp_path / "nowhere" / "x.onnx", ["--step-graph"], "does not exist"),
        "parent is a file": (tmp_path / "file" / "x.onnx", ["--step-graph"], "does not exist"),
        "is a directory": (tmp_path / "run", ["--step-graph"], "is a directory"),
        "checkpoint file": (tmp_path / "run" / "model.safetensors", ["--step-graph", "--force"], "checkpoint"),
        "opset 17": (tmp_path / "x.onnx", ["--step-graph", "--opset", "17"], "18..20"),
        "opset 21": (tmp_path / "x.onnx", ["--full-graph", "--opset", "21"], "18..20"),
        "no graph": (tmp_path / "x.onnx", [], "--step-graph, --full-graph or --chunk-graph"),
        "both graphs": (tmp_path / "x.onnx", ["--step-graph", "--full-graph"], "--step-graph, --full-graph or --chunk-graph"),
        "graph and alias": (tmp_path / "x.onnx", ["--graph", "step", "--full-graph"], "--graph step|full|chunk"),
        "graph the family lacks": (tmp_path / "x.onnx", ["--graph", "chunk"], "the pixelcnn family exports step, full"),
    }[case]
    assert_one_line_error(invoke("onnx", ckpt, "--out", out, *extra), 2, words)
    assert _files(tmp_path) == {"run", "file", "taken.onnx"} and (tmp_path / "taken.onnx").read_text() == "keep me"
    assert _files(ckpt) == {"config.json", "model.safetensors"}


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes to read-only directories")
def test_unwritable_output_directory(tmp_path):
    _, ckpt = make_checkpoint(tmp_path / "run", "wavenet", 0)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert_one_line_error(invoke("onnx", ckpt, "--step-graph", "--out", locked / "x.onnx"), 2, "cannot write")
        assert not any(locked.iterdir())
    finally:
        locked.chmod(0o700)


def test_failed_export_leaves_nothing(tmp_path, monkeypatch):
    _, ckpt = make_checkpoint(tmp_path / "run", "wavenet", 0)

    def broken(*args, **kwargs):
        print("[torch.onnx] noise that must not reach the user")
        raise RuntimeError("unsupported operator aten::frobnicate\nsecond line")
    monkeypatch.setattr(torch.onnx, "export", broken)
    result = invoke("onnx", ckpt, "--step-graph")
    assert_one_line_error(result, 1, "could not export", "aten::frobnicate", "AR_DEBUG=1")
    assert "noise" not in result.output and _files(ckpt) == {"config.json", "model.safetensors"}


def test_failed_verification_leaves_nothing(tmp_path, monkeypatch):
    """A graph that does not reproduce the checkpoint (here: another seed's weights) is never written."""
    _, twin = make_checkpoint(tmp_path / "twin", "transformer", 0, seed=1)
    other = onnx.load(exported("transformer", "step", 0))
    monkeypatch.setattr(arexport.export, "to_onnx", lambda model, info: other)
    result = invoke("onnx", twin, "--step-graph")
    report = result.stdout.splitlines()  # every figure, then the one-line error on stderr
    assert report[0].startswith("verification FAILED") and len(report) == 11  # 5 comparisons x 2 batches; no proof run
    assert_one_line_error(result, 1, "fails verification", "max |diff|", str(twin / "step.onnx"), stdout=result.stdout)
    assert _files(twin) == {"config.json", "model.safetensors"}
    with pytest.raises(ParityError) as failure:
        export_onnx(twin, graph="step")
    assert not failure.value.report.passed and failure.value.report.max_abs_diff > 1e-4


def test_verify_bad_input(tmp_path):
    path = exported("pixelcnn", "step", 3)
    ckpt = checkpoint("pixelcnn", 3)[1]
    assert_one_line_error(invoke("verify", tmp_path / "none.onnx", ckpt), 2, "does not exist")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07junk" * 10)
    assert_one_line_error(invoke("verify", tmp_path / "junk.onnx", ckpt), 1, "not a valid ONNX model")
    proto = onnx.load(path)
    del proto.metadata_props[:]
    onnx.save(proto, tmp_path / "bare.onnx")
    assert_one_line_error(invoke("verify", tmp_path / "bare.onnx", ckpt), 1, "'ar.format_version' does not exist")
    assert_one_line_error(invoke("verify", path, checkpoint("pixelcnn", 0)[1]), 2, "was not exported from this checkpoint")
    assert_one_line_error(invoke("verify", path, tmp_path / "nothing"), 2, "does not exist")


def test_graph_option_names_the_kind(tmp_path):
    """--graph KIND is the option; --step-graph, --full-graph and --chunk-graph stay as its aliases."""
    _, ckpt = make_checkpoint(tmp_path / "run", "wavenet", 0)
    result = invoke("onnx", ckpt, "--graph", "full", "--no-verify", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["graph"] == "full" and (ckpt / "full.onnx").is_file()
    assert invoke("onnx", ckpt, "--graph", "both").exit_code == 2


def test_debug_shows_the_exception(tmp_path):
    result = invoke("onnx", tmp_path / "nothing", "--step-graph", env={"AR_DEBUG": "1"})
    assert result.exit_code != 0 and isinstance(result.exception, UsageError)


def test_worker_raises_domain_errors(tmp_path):
    with pytest.raises(UsageError, match="graph kind"):
        export_onnx(tmp_path, graph="both")


@pytest.mark.parametrize("key,value,says", [
    ("ar.vocab_size", " 11", "not a base-10 integer"), ("ar.vocab_size", "+11", "not a base-10 integer"),
    ("ar.vocab_size", "1_1", "not a base-10 integer"), ("ar.format_version", "5 ", "not a base-10 integer"),
    ("ar.opset", "\uff11\uff18", "not a base-10 integer"), ("ar.data.alphabet", '"abcdefgh .."', "repeats a character")])
def test_metadata_is_read_strictly(key, value, says):
    """An int is ASCII digits and nothing else (what a reader in another language parses alike); a text model's
    alphabet has V distinct characters (a repeated one would make its text ambiguous)."""
    from arrun.contract.schema import SchemaError
    from arrun.kinds import kind_of

    meta = {p.key: p.value for p in onnx.load(exported("transformer", "step")).metadata_props}
    with pytest.raises(SchemaError, match=says):
        kind_of(ModelInfo.from_metadata({**meta, key: value}))


def test_parity_tolerance_scales_with_the_largest_output():
    """float32 rounds relative to a value's size: the tolerance applies to max |diff| over the largest |output|
    where that exceeds 1 (a source-filter vocoder's logits pass 150), and never loosens below 1."""
    from arexport.verify import Comparison, comparison

    want = np.array([[[2.0, -150.0, 0.5]]], np.float32)  # (B, T, V)
    scaled = comparison("c", want + np.float32(0.01), want)
    assert scaled.scale == 150.0 and scaled.passed(1e-4) and not scaled.passed(1e-5)
    assert comparison("c", want[..., 2:] + np.float32(1.5e-4), want[..., 2:]).scale == 1.0
    assert not Comparison("c", 1, 1, max_abs_diff=1.5e-4, token_mismatches=0, scale=1.0).passed(1e-4)
    assert Comparison("c", 1, 1, max_abs_diff=1.5e-4, token_mismatches=0, scale=2.0).passed(1e-4)
    assert not Comparison("c", 1, 1, max_abs_diff=0.0, token_mismatches=1, scale=100.0).passed(1e-4)
