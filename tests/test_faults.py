"""Training at scale and under faults: torchrun DDP equivalence, exact resume after SIGINT/SIGKILL,
atomic checkpoint writes, hostile checkpoints, NaN stop, unwritable output."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from artrain import checkpoint as ckpt
from artrain.data import load_dataset
from arrun.contract.errors import ARError, UsageError
from artrain.options import FitOptions
from artrain.train import Trainer

TINY = {"model": {"layers": 1, "d_model": 16, "heads": 2, "dropout": 0.0}, "batch_size": 8, "warmup": 2,
        "eval_every": 5}


def config_file(tmp_path, **extra):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({**TINY, **extra}))
    return str(path)


def fit_cmd(out, cfg, steps, launcher=()):
    return [*launcher, "-m", "artrain", "fit", "--model", "transformer", "--data", "digits", "--steps", str(steps),
            "--out", str(out), "--config", cfg, "--seed", "3"]


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def train_losses(out):
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["bits_per_dim"]) for r in map(json.loads, lines) if r["event"] == "train"]


def test_two_gloo_processes_follow_the_single_process_curve(tmp_path):
    """Two processes, and one under torchrun (a process group of one: DDP and its collectives run, as with
    nccl on one GPU), follow the plain single-process loss curve."""
    cfg = config_file(tmp_path)
    run([sys.executable, *fit_cmd(tmp_path / "one", cfg, 20)])
    for name, n, port in (("two", 2, 29517), ("torchrun-one", 1, 29518)):
        torchrun = (sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", f"--master_port={port}")
        run(fit_cmd(tmp_path / name, cfg, 20, torchrun), env={**os.environ, "OMP_NUM_THREADS": "1"})
    one, two, grouped = (train_losses(tmp_path / name) for name in ("one", "two", "torchrun-one"))
    assert [s for s, _ in one] == [s for s, _ in two] == [s for s, _ in grouped] == [10, 20]
    for (_, a), (_, b), (_, c) in zip(one, two, grouped):
        assert abs(a - b) < 1e-5 and abs(a - c) < 1e-5
    w1, w2 = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 2e-4  # Adam divides by sqrt(v): float noise grows
    e1, e2 = (json.loads((tmp_path / d / "config.json").read_text())["eval"] for d in ("one", "two"))
    assert abs(e1["bits_per_dim"] - e2["bits_per_dim"]) < 1e-5


def wait_for_step(out, step, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (out / "metrics.jsonl").exists() and any(s >= step for s, _ in train_losses(out)):
            return
        time.sleep(0.1)
    raise AssertionError("the run did not reach the step in time")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_resume_after_signal_is_bitwise_exact(tmp_path, sig):
    cfg = config_file(tmp_path, model={**TINY["model"], "dropout": 0.1})  # dropout: the torch RNG must resume too
    steps = 40
    run([sys.executable, *fit_cmd(tmp_path / "straight", cfg, steps)])
    out = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, *fit_cmd(out, cfg, steps)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_step(out, 10, proc)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    cut_at = json.loads((out / "config.json").read_text())["step"]
    assert 5 <= cut_at < steps
    run([sys.executable, "-m", "artrain", "fit", "--resume", str(out)])
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(out / "model.safetensors")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    evals = [json.loads((d / "config.json").read_text())["eval"] for d in (tmp_path / "straight", out)]
    assert evals[0] == evals[1]


def tiny_trainer(tmp_path):
    opts = FitOptions(family="transformer", data="digits", steps=4, batch_size=4, model=TINY["model"])
    return Trainer(opts, tmp_path / "run", load_dataset("digits"))


def test_interrupted_write_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    trainer = tiny_trainer(tmp_path)
    trainer.save()
    before = (trainer.out / "model.safetensors").read_bytes()
    trainer.train_step()

    real, calls = os.replace, []

    def crash(src, dst, *args, **kwargs):  # interrupted while the checkpoint's files go into place
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.save()
    monkeypatch.undo()
    # the new weights were in place when the interrupt came: they were taken back
    assert [Path(p).name for p in calls[:2]] == ["model.safetensors", "trainer.safetensors"]
    assert (trainer.out / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in trainer.out.iterdir()) == ["config.json", "model.safetensors", "trainer.safetensors"]
    model, config = ckpt.load_checkpoint(trainer.out)
    assert config["step"] == 0


def test_disk_full_is_a_clear_error_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    trainer = tiny_trainer(tmp_path)
    trainer.save()

    def full(tensors, metadata=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save", full)
    with pytest.raises(ARError, match="No space left on device.*previous checkpoint there is intact"):
        trainer.save()
    ckpt.load_checkpoint(trainer.out)


def test_pickle_checkpoint_is_refused_without_running_it(tmp_path):
    trainer = tiny_trainer(tmp_path)
    trainer.save()
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import pickle

    (trainer.out / "model.safetensors").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(UsageError, match="not safetensors"):
        ckpt.load_checkpoint(trainer.out)
    assert not marker.exists()


def test_nan_loss_stops_with_the_step(tmp_path):
    """The error names the step, and points to the last checkpoint only when one was saved."""
    trainer = tiny_trainer(tmp_path)
    trainer.train_step()
    good = trainer.model.head.weight.detach().clone()
    with torch.no_grad():
        trainer.model.head.weight.fill_(float("nan"))
    with pytest.raises(ARError, match="at step 1, before any checkpoint was saved"):
        trainer.train_step()
    with torch.no_grad():
        trainer.model.head.weight.copy_(good)
    trainer.save()
    with torch.no_grad():
        trainer.model.head.weight.fill_(float("nan"))
    with pytest.raises(ARError, match="at step 1; the last good checkpoint is in"):
        trainer.train_step()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (bf16 autocast path)")
def test_cuda_training_with_bf16_autocast(tmp_path):
    opts = FitOptions(family="transformer", data="digits", steps=3, batch_size=4, device="cuda", model=TINY["model"])
    trainer = Trainer(opts, tmp_path / "run", load_dataset("digits"))
    losses = [trainer.train_step() for _ in range(3)]
    assert all(math.isfinite(b) for b in losses)
    assert all(p.dtype == torch.float32 and p.is_cuda for p in trainer.model.parameters())  # fp32 master weights
