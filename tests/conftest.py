"""What the tests share: one tiny configuration per family, saved as checkpoints and exported to ONNX once
per session (a few seconds each) into one temporary folder removed at exit.

A new family adds one entry to ``TINY``; every test parametrised over it then covers the family.
The test side may use torch and artrain; arrun itself never does.
"""
from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
import wave
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

ALPHABET = "abcdefgh .\n"  # 11 characters: the tiny text model's tokens
CLASSES = ("zero", "one", "two")
SAMPLE_RATE = 8000
EVAL = {"split": "test", "bits_per_dim": 1.25}  # recorded with the conditional checkpoints
LENGTH = 20  # every tiny model takes sequences of 20 elements (the images are 5 x 4)
# family -> (model config without num_classes, data info)
TINY = {
    "wavenet": (dict(vocab_size=256, stacks=1, layers_per_stack=3, residual_channels=8, skip_channels=12),
                dict(name="tiny-audio", kind="audio", levels=256, sample_rate=SAMPLE_RATE)),
    "pixelcnn": (dict(vocab_size=4, height=5, width=4, layers=3, channels=8),
                 dict(name="tiny-image", kind="image", levels=4, image_shape=(5, 4))),
    "pixelrnn": (dict(vocab_size=4, height=5, width=4, layers=3, channels=8),
                 dict(name="tiny-image", kind="image", levels=4, image_shape=(5, 4))),
    "transformer": (dict(vocab_size=len(ALPHABET), window=6, layers=2, d_model=16, heads=2),
                    dict(name="tiny-text", kind="text", levels=len(ALPHABET), alphabet=ALPHABET)),
}
# a vocoder: the tiny WaveNet conditioned on 8-band log-mel frames of 4 samples, kernel 3, on 16 kHz audio
VOCODER = dict(mel_bins=8, mel_hop=4, mel_hidden=16, kernel_size=3)
VOCODER_DATA = dict(TINY["wavenet"][1], name="tiny-speech", sample_rate=16000)
KIND = {"audio": "wavenet", "image": "pixelcnn", "text": "transformer"}  # the family arrun's tests use per kind
_ROOT = Path(tempfile.mkdtemp(prefix="ar-tests-"))
atexit.register(shutil.rmtree, _ROOT, True)


def make_checkpoint(path: Path, family: str, num_classes: int = 0, seed: int = 0, data: dict | None = None,
                    **config_changes):
    """A tiny random model of ``family`` saved as an artrain checkpoint in ``path`` -> (model in eval mode, path).
    Weights are normal with std 0.3, so distributions are far from uniform and a wrong tap shows up. ``data``
    replaces the family's data info."""
    from artrain.checkpoint import DataInfo, save_checkpoint
    from artrain.models import build_model

    config, default_data = TINY[family]
    data = data or default_data
    torch.manual_seed(seed)
    model = build_model(family, {**config, "num_classes": num_classes, **config_changes}).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    info = DataInfo(**data, class_names=CLASSES[:num_classes])
    save_checkpoint(path, model, {"format_version": 1, "family": family, "model": asdict(model.config),
                                  "data": asdict(info), "train": {}, "step": 0,
                                  "eval": EVAL if num_classes else None})
    return model, path


def tiny_model(family: str, num_classes: int = 0):
    """(model, checkpoint directory) of the shared tiny ``family`` model, built once per session."""
    return _tiny_model(family, num_classes)


def exported(family: str, graph: str = "step", num_classes: int = 0) -> Path:
    """The shared tiny model exported by arexport as a ``graph`` ('step' | 'full' | 'chunk') graph (unverified)."""
    return _exported(family, graph, num_classes)


@functools.lru_cache(maxsize=None)
def tiny_vocoder(num_classes: int = 0):
    """(model, checkpoint directory) of the shared tiny vocoder (``VOCODER``), built once per session."""
    return make_checkpoint(_ROOT / f"vocoder-{num_classes}-ckpt", "wavenet", num_classes, data=VOCODER_DATA, **VOCODER)


def exported_vocoder(graph: str = "step", num_classes: int = 0) -> Path:
    """The shared tiny vocoder exported as a ``graph`` graph (unverified)."""
    return _exported_vocoder(graph, num_classes)


@functools.lru_cache(maxsize=None)  # behind the wrapper, so that f() and f("step", 0) share an entry
def _exported_vocoder(graph: str, num_classes: int) -> Path:
    from arexport.export import export_onnx

    out = _ROOT / f"vocoder-{num_classes}-{graph}.onnx"
    export_onnx(tiny_vocoder(num_classes)[1], out, graph=graph, verify=False)
    return out


@functools.lru_cache(maxsize=None)  # behind wrappers, so that f("x") and f("x", 0) share an entry
def _tiny_model(family: str, num_classes: int):
    return make_checkpoint(_ROOT / f"{family}-{num_classes}-ckpt", family, num_classes)


@functools.lru_cache(maxsize=None)
def _exported(family: str, graph: str, num_classes: int) -> Path:
    from arexport.export import export_onnx

    out = _ROOT / f"{family}-{num_classes}-{graph}.onnx"
    export_onnx(tiny_model(family, num_classes)[1], out, graph=graph, verify=False)
    return out


def write_wav(path: Path, x: np.ndarray, rate: int = 16000) -> None:
    """x (T,) floats in [-1, 1] -> a mono 16-bit PCM WAV at path (folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(np.round(np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


@pytest.fixture
def toy_head_installed(tmp_path, monkeypatch):
    """The toy head (tests/toy_head.py) installed as a plug-in of 'arrun.heads': a dist-info on the path whose
    entry_points.txt declares it; the registry forgets it after the test."""
    from arrun.contract.heads import HEADS

    dist = tmp_path / "site" / "toy_head-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-head\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[arrun.heads]\nuniform_mixture = toy_head:UniformMixture\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(HEADS, "_entries", dict(HEADS._entries))


def writing_unnamed(pid: int, folder: Path) -> bool:
    """Whether process ``pid`` holds open a file of ``folder`` that has no name yet (/proc shows an O_TMPFILE
    file as 'FOLDER/#INODE (deleted)')."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{folder}/#"):
            return True
    return False
