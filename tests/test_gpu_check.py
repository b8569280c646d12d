"""benchmarks/gpu_check.sh: on a machine without an NVIDIA GPU it prints the environment and exits 3; on one with a
GPU the whole check must pass. Its pure helpers, and its greedy and state checks on the CPU provider, are tested
here on tiny models."""
import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from arexport.export import export_onnx
from arrun.session import open_model
from conftest import exported, exported_vocoder, make_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gpu_check = _load_gpu_check()


def _has_gpu() -> bool:
    """Decided apart from the script's own detection, so a script that misses a GPU fails here."""
    if not shutil.which("nvidia-smi"):
        return False
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    return listed.returncode == 0 and "GPU" in listed.stdout


def _script(*args, timeout=60):
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_script_on_this_machine():
    """Without a GPU: the environment rows, one line saying why, exit 3, no traceback. With one: every row passes."""
    if _has_gpu():
        result = _script(timeout=1200)
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        assert "| check | result | figure |" in result.stdout and "**FAIL**" not in result.stdout
        return
    result = _script()
    assert result.returncode == gpu_check.NO_GPU, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("no NVIDIA GPU here: ") and lines[-1].endswith("; run this on a machine with one")
    assert lines[:2] == ["| check | result | figure |", "|---|---|---|"]
    assert [line.split(" | ")[0] for line in lines[2:-1]] == ["| python", "| torch", "| onnxruntime",
                                                              "| GPU (nvidia-smi)"]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args,message", [(["--bogus"], "unknown argument --bogus"),
                                          (["--wheel", "/nonexistent.whl"], "no wheel at /nonexistent.whl"),
                                          (["--python"], "usage:")])
def test_script_refuses_bad_arguments(args, message):
    result = _script(*args)
    assert result.returncode == 2 and message in result.stderr


def test_table_is_markdown_one_line_per_row():
    rows = [gpu_check.Row("a", True, "x | y"), gpu_check.Row("b", False, "two\nlines")]
    assert gpu_check.table(rows).splitlines() == ["| check | result | figure |", "|---|---|---|",
                                                  "| a | pass | x \\| y |", "| b | **FAIL** | two lines |"]


def test_row_turns_any_exception_into_a_failed_row():
    def broken():
        raise ValueError("bad\nsecond line")

    assert gpu_check.row("r", lambda: "fine") == gpu_check.Row("r", True, "fine")
    assert gpu_check.row("r", broken) == gpu_check.Row("r", False, "ValueError: bad")


def test_no_gpu_reason():
    reason = gpu_check.no_gpu_reason
    assert reason("nvidia-smi not found", True, True) == "nvidia-smi not found"
    assert "neither onnxruntime" in reason(None, False, False)
    assert reason(None, True, False) is None and reason(None, False, True) is None


def _node(op, provider, *shapes):
    return {"cat": "Node", "name": f"{op}_kernel_time", "args": {
        "op_name": op, "provider": provider, "input_type_shape": [{"float": list(s)} for s in shapes],
        "output_type_shape": [{"float": list(s)} for s in shapes]}}


def test_count_copies_on_a_hand_made_profile():
    """Per run: a small Memcpy (a shape), a state-sized one; fence events and session events are not nodes run."""
    run = [{"cat": "Session", "name": "model_run", "args": {}},
           _node("MemcpyToHost", "CUDAExecutionProvider", (2,)),
           _node("MemcpyFromHost", "CUDAExecutionProvider", (2, 1022, 32)),
           _node("Gemm", "CUDAExecutionProvider", (2, 64)),
           _node("Shape", "CPUExecutionProvider", (2, 1022, 32)),
           {"cat": "Node", "name": "Gemm_fence_before", "args": {"op_name": "Gemm"}}]
    events = [{"cat": "Session", "name": "session_initialization", "args": {}}, *run * 3]
    counted = gpu_check.count_copies(events, 2 * 1022 * 32)
    assert counted == gpu_check.Copies(runs=3, memcpy=6, state_sized=3, cpu_nodes=3)
    assert gpu_check.count_copies(events, 2 * 1022 * 32 + 1).state_sized == 0


def test_state_verdict():
    clean = gpu_check.Copies(runs=50, memcpy=100, state_sized=0, cpu_nodes=150)
    figure = gpu_check.state_verdict("cuda", ["cuda"], clean)
    assert figure.startswith("state on device: yes (cuda), 0 state-sized host copies/step, 2 Memcpy nodes/step")
    for devices, copies in [(["cpu"], clean), (["cpu", "cuda"], clean), ([], clean),
                            (["cuda"], gpu_check.Copies(50, 100, 50, 0)), (["cuda"], gpu_check.Copies(0, 0, 0, 0))]:
        with pytest.raises(gpu_check.CheckFailed, match="state on device: NO"):
            gpu_check.state_verdict("cuda", devices, copies)


def test_greedy_verdict():
    assert "agree 128/128 (100.0 %)" in gpu_check.greedy_verdict("fp32", 9e-4, 20.0, 128, 128)
    assert "agree 120/128 (93.8 %)" in gpu_check.greedy_verdict("fp16", 0.3, 66.0, 120, 128)  # reports agreement
    # the tolerance is relative to the largest |logit|: TF32's 5e-3 at logits of 17 fails fp32, as does 0.4 in 66
    failing = [("fp32", 1.1e-3, 20.0, 128), ("fp32", 5e-3, 17.0, 128), ("fp32", 0.0, 20.0, 127),
               ("fp16", 0.4, 66.0, 128), ("fp16", 6e-3, 1.0, 128), ("fp32", np.nan, 20.0, 128)]
    for precision, delta, scale, agree in failing:
        with pytest.raises(gpu_check.CheckFailed):
            gpu_check.greedy_verdict(precision, delta, scale, agree, 128)


def _utf8_model(folder: Path) -> Path:
    _, checkpoint = make_checkpoint(folder / "bytes", "transformer", vocab_size=256,
                                    data=dict(name="tiny-bytes", kind="utf8", levels=256))
    export_onnx(checkpoint, checkpoint / "step.onnx", graph="step", verify=False)
    return checkpoint / "step.onnx"


@pytest.mark.parametrize("path", [lambda tmp: exported("pixelcnn", "step", 3), lambda tmp: exported("transformer"),
                                  _utf8_model, lambda tmp: exported_vocoder()],
                         ids=["conditional-image", "text", "utf8", "vocoder"])
def test_sample_row_of_every_data_kind(path, tmp_path):
    """`arrun sample` as the check runs it writes its file, whatever the model's data kind (a kind that claims no
    file suffix, like utf8, gets .txt)."""
    model = open_model(path(tmp_path))
    figure = gpu_check.check_sample(model.path, model.info, "cpu", tmp_path)
    assert figure.endswith(" bytes") and not figure.endswith(" 0 bytes")


def test_model_paths_take_fp16_variants(tmp_path):
    for name in ["b/step.onnx", "b/step.fp16.onnx", "a/step.onnx", "a/full.onnx", "c/chunk.onnx"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).touch()
    assert [str(p.relative_to(tmp_path)) for p in gpu_check.model_paths(tmp_path)] == \
        ["a/step.onnx", "b/step.fp16.onnx", "b/step.onnx"]


@pytest.mark.parametrize("path", [lambda: exported("pixelcnn", "step", 3), lambda: exported("transformer"),
                                  lambda: exported_vocoder()], ids=["conditional-image", "text", "vocoder"])
def test_greedy_match_of_a_graph_with_itself(path):
    model = open_model(path())
    max_delta, _, agree, total = gpu_check.greedy_match(model, open_model(path()))
    steps = min(gpu_check.GREEDY_STEPS, model.info.max_length or gpu_check.GREEDY_STEPS)
    assert (max_delta, agree, total) == (0.0, total, steps * gpu_check.GREEDY_BATCH)


def test_greedy_match_sees_other_weights(tmp_path):
    _, checkpoint = make_checkpoint(tmp_path / "other", "transformer", seed=1)
    export_onnx(checkpoint, tmp_path / "other.onnx", graph="step", verify=False)
    other, ours = open_model(tmp_path / "other.onnx"), open_model(exported("transformer"))
    max_delta, _, agree, total = gpu_check.greedy_match(other, ours)
    assert max_delta > 0.1 and agree < total


def test_state_check_on_the_cpu(tmp_path):
    """The real profiler on a real step loop: the state stays where the provider is, no Memcpy at all on the CPU."""
    figure = gpu_check.check_state(open_model(exported("transformer")), tmp_path)
    assert figure.startswith("state on device: yes (cpu), 0 state-sized host copies/step, 0 Memcpy nodes/step")
    assert figure.endswith(f"{gpu_check.PROFILE_STEPS} steps profiled")
    profile, = tmp_path.glob("profile-*.json")
    assert any(e.get("name") == "model_run" for e in json.loads(profile.read_text()))


def test_in_place_verdict():
    assert gpu_check.in_place_verdict([], 0, True, {}).startswith("no state tensor declared in_place")
    figure = gpu_check.in_place_verdict(["queue"], 2052, True, {1: (3000.0, 2000.0), 256: (900.0, 300.0)})
    assert figure.startswith("in place: queue; 2052 steps at batch 3 (rows at positions 0, 7, 13...) equal bit for bit")
    assert figure.endswith("batch 1: 3,000 vs 2,000 steps/s (1.50×); batch 256: 900 vs 300 steps/s (3.00×)")
    with pytest.raises(gpu_check.CheckFailed, match="DIFFER with separate buffers"):
        gpu_check.in_place_verdict(["queue"], 2052, False, {})


@pytest.mark.parametrize("path", [lambda: exported("pixelcnn", "step", 3), lambda: exported("transformer"),
                                  lambda: exported_vocoder()], ids=["conditional-image", "text", "vocoder"])
def test_in_place_check_on_the_cpu(path):
    """The aliased rollout against separate buffers on a real step loop: equal where the metadata declares some
    state in place; the forced-separate model declares none."""
    model = open_model(path())
    declared, steps, equal = gpu_check.in_place_rollout(model)
    assert declared == [s.name for s in model.info.state if s.in_place] and equal
    assert steps == 2 * max(max(s.shape) for s in model.info.state) + 8
    assert not any(s.in_place for s in gpu_check.separate_buffers(model).info.state)
    figure = gpu_check.check_in_place(model)
    assert figure.startswith("in place: " if declared else "no state tensor declared in_place")


def test_in_place_check_compares_an_aliased_ring():
    """The WaveNet's ring written by one ScatterElements, bound in place on the CPU (declared here as arexport
    would after its proof): equal bit for bit with separate buffers, and both speeds reported."""
    model = open_model(exported_vocoder())
    aliased = replace(model, info=replace(model.info, state=tuple(replace(s, in_place=True) for s in model.info.state)))
    figure = gpu_check.check_in_place(aliased)
    assert figure.startswith("in place: queue; ") and "equal bit for bit with separate buffers" in figure
    assert "batch 1: " in figure and "batch 256: " in figure
