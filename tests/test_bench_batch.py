"""benchmarks/bench_batch.py: the state traffic and FLOPs it counts on hand-made step graphs (a ring read by a
Gather of its taps and written by one ScatterElements; a KV cache concatenated and gathered whole), its profile
shares, and one short run on a tiny exported step graph."""
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from conftest import exported_vocoder

ROOT = Path(__file__).resolve().parents[1]


def _load_bench_batch():
    spec = importlib.util.spec_from_file_location("bench_batch", ROOT / "benchmarks" / "bench_batch.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_batch"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench_batch = _load_bench_batch()
B, SLOTS, C, TAPS = 64, 10, 4, 3


def _save(tmp_path: Path, nodes, inputs, outputs, initializers, state: list[dict]) -> Path:
    graph = helper.make_graph(nodes, "step", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    helper.set_model_props(model, {"ar.state": json.dumps(state), "ar.format_version": "6", "ar.step_tokens": "1"})
    path = tmp_path / "ring" / "step.onnx"
    path.parent.mkdir()
    onnx.save(model, path)
    return path


def _state(name, shape):
    return {"name": name, "input": f"in.{name}", "output": f"out.{name}", "shape": ["batch", *shape],
            "dtype": "float32", "init": 0.0, "in_place": True}


def _tensor(name, *shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_a_ring_reads_its_taps_and_writes_one_slot(tmp_path):
    """in.ring (B, SLOTS, C): a Gather of TAPS slots feeds a MatMul by (C, C) weights; ScatterElements writes the
    new slot (B, 1, C) into the ring. Reads: the taps; writes: the slot; FLOPs: the product."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array([1, 4, 7], np.int64), "taps"),
             numpy_helper.from_array(rng.standard_normal((C, C)).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros((B, 1, C), np.int64), "slot")]
    inits += [numpy_helper.from_array(np.array([v], np.int64), n) for n, v in (("zero", 0), ("one", 1))]
    nodes = [helper.make_node("Gather", ["in.ring", "taps"], ["tapped"], "taps", axis=1),  # (B, TAPS, C)
             helper.make_node("MatMul", ["tapped", "w"], ["mixed"], "product"),  # (B, TAPS, C)
             helper.make_node("ReduceSum", ["mixed", "one"], ["logits"], "sum", keepdims=0),  # (B, C)
             helper.make_node("Slice", ["mixed", "zero", "one", "one"], ["new"], "new"),  # (B, 1, C)
             helper.make_node("ScatterElements", ["in.ring", "slot", "new"], ["out.ring"], "write", axis=1)]
    path = _save(tmp_path, nodes, [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch"]),
                                   _tensor("in.ring", "batch", SLOTS, C)],
                 [_tensor("logits", "batch", C), _tensor("out.ring", "batch", SLOTS, C)], inits,
                 [_state("ring", [SLOTS, C])])
    graph = bench_batch.Graph.read(path)
    model = onnx.load(path)
    shapes = bench_batch.tensor_shapes(graph, model)
    work = bench_batch.count_work(graph, model, shapes)
    assert work["state_read_bytes"] == B * TAPS * C * 4 and work["state_write_bytes"] == B * 1 * C * 4
    assert work["flops"] == 2 * B * TAPS * C * C and work["unknown_products"] == 0
    assert work["state_movers"] == {nodes[0].name} and work["state_scatters"] == {nodes[4].name}
    assert graph.state[0].in_place and graph.position_rank is None


def test_a_concatenated_cache_reads_the_window_and_writes_the_new_keys(tmp_path):
    """The format-5 Transformer's write: Concat(in.k, new) gathered back to the window; the product reads the
    concatenation whole (the window and the new key), the state written is the new key alone."""
    W, D = 8, 4
    inits = [numpy_helper.from_array(np.arange(1, W + 1, dtype=np.int64), "shift"),
             numpy_helper.from_array(np.ones((B, 1, D), np.float32), "newk")]
    nodes = [helper.make_node("Concat", ["in.k", "newk"], ["cat"], "cat", axis=1),  # (B, W + 1, D)
             helper.make_node("Shape", ["cat"], ["shape"], "shape"),  # reads no data
             helper.make_node("Transpose", ["cat"], ["kt"], "kt", perm=[0, 2, 1]),  # (B, D, W + 1)
             helper.make_node("MatMul", ["newk", "kt"], ["logits"], "scores"),  # (B, 1, W + 1)
             helper.make_node("Gather", ["cat", "shift"], ["out.k"], "shift", axis=1)]  # (B, W, D): carried
    path = _save(tmp_path, nodes, [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch"]),
                                   _tensor("in.k", "batch", W, D)],
                 [_tensor("logits", "batch", 1, W + 1), _tensor("out.k", "batch", W, D),
                  helper.make_tensor_value_info("shape", TensorProto.INT64, [3])], inits, [_state("k", [W, D])])
    graph = bench_batch.Graph.read(path)
    model = onnx.load(path)
    work = bench_batch.count_work(graph, model, bench_batch.tensor_shapes(graph, model))
    assert work["state_read_bytes"] == B * (W + 1) * D * 4  # the Transpose's input, once
    assert work["state_write_bytes"] == B * 1 * D * 4
    assert work["state_movers"] == {nodes[0].name, nodes[2].name, nodes[4].name}


def _node(name, op, dur, ts, *shapes):
    return {"cat": "Node", "name": f"{name}_kernel_time", "dur": dur, "ts": ts,
            "args": {"op_name": op, "input_type_shape": [{"float": list(s)} for s in shapes]}}


def test_shares_of_a_hand_made_profile():
    """Runs after the warm-up only; a mover by name or by a state-shaped input; If's time is its branch's."""
    warm = bench_batch.PROFILE_WARMUP
    events = [{"cat": "Session", "name": "model_run", "ts": 100 * i, "dur": 100} for i in range(warm + 2)]
    for i in range(warm + 2):
        t = 100 * i
        events += [_node("cat", "Concat", 20, t + 1, (2, 3)), _node("t", "Transpose", 10, t + 30, (64, 8, 4)),
                   _node("mm", "MatMul", 40, t + 40, (64, 8)), _node("sc", "ScatterElements", 10, t + 80, (64, 8, 4)),
                   _node("if", "If", 50, t + 40)]
    got = bench_batch.shares(events, {"cat"}, set(), {(64, 8, 4)})
    assert got["runs"] == 2 and abs(got["nodes"] - 0.8) < 1e-9
    assert got["state_moving_ops"] == {"Concat": 0.2, "Transpose": 0.1}
    assert abs(got["state_moving"] - 0.3) < 1e-9 and abs(got["state_scatter"] - 0.1) < 1e-9
    assert list(got["ops"]) == ["MatMul", "Concat", "Transpose", "ScatterElements"]


def test_a_short_run_prints_both_tables(tmp_path, capsys):
    folder = tmp_path / "models" / "speech-vocoder"
    folder.mkdir(parents=True)
    shutil.copy(exported_vocoder(), folder / "step.onnx")
    assert bench_batch.main([str(tmp_path / "models"), "--reps", "1", "--seconds", "0.02",
                             "--json", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "| models/speech-vocoder | arrun, " in out and "| graph | moving state |" in out
    record, = json.loads((tmp_path / "out.json").read_text())["records"]
    assert record["position"] == "per row" and record["floor_ms"] > 0 and record["ratio"] > 0
