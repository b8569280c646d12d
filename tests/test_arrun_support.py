"""Tiny random models saved as checkpoints and exported to ONNX, shared by the arrun tests.

The test side may use torch and artrain; arrun itself never does. Exports are cached for the whole
session (a few seconds each) in one temporary folder removed at exit. The file holds no tests.
"""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from arexport.export import export_onnx
from artrain.checkpoint import DataInfo, save_checkpoint
from artrain.models import build_model

ALPHABET = "abcdefgh .\n"  # 11 characters: the tiny text model's tokens
CLASSES = ("zero", "one", "two")
SAMPLE_RATE = 8000
# data kind -> (family, model config without num_classes, data info)
TINY = {
    "audio": ("wavenet", dict(vocab_size=256, stacks=1, layers_per_stack=3, residual_channels=8, skip_channels=12),
              dict(name="tiny-audio", kind="audio", levels=256, sample_rate=SAMPLE_RATE)),
    "image": ("pixelcnn", dict(vocab_size=4, height=5, width=4, layers=3, channels=8),
              dict(name="tiny-image", kind="image", levels=4, image_shape=(5, 4))),
    "text": ("transformer", dict(vocab_size=len(ALPHABET), max_len=24, layers=2, d_model=16, heads=2),
             dict(name="tiny-text", kind="text", levels=len(ALPHABET), alphabet=ALPHABET)),
}
_ROOT = Path(tempfile.mkdtemp(prefix="arrun-tests-"))
atexit.register(shutil.rmtree, _ROOT, True)


def tiny_model(kind: str, num_classes: int = 0):
    """(model in eval mode, checkpoint directory) of a tiny random model for ``kind`` data."""
    return _tiny_model(kind, num_classes)


@functools.lru_cache(maxsize=None)  # behind a wrapper so tiny_model("text") and ("text", 0) share an entry
def _tiny_model(kind: str, num_classes: int):
    family, config, data = TINY[kind]
    torch.manual_seed(0)
    model = build_model(family, {**config, "num_classes": num_classes}).eval()
    for p in model.parameters():  # random, not near-zero, so distributions are far from uniform
        torch.nn.init.normal_(p, std=0.3)
    info = DataInfo(**data, class_names=CLASSES[:num_classes])
    ckpt = _ROOT / f"{kind}-{num_classes}-ckpt"
    save_checkpoint(ckpt, model, {"format_version": 1, "family": family, "model": asdict(model.config),
                                  "data": asdict(info), "train": {}, "step": 0, "eval": None})
    return model, ckpt


def exported(kind: str, graph: str = "step", num_classes: int = 0) -> Path:
    """Path of the tiny ``kind`` model exported by arexport as a ``graph`` ('step' | 'full') graph."""
    return _exported(kind, graph, num_classes)


@functools.lru_cache(maxsize=None)
def _exported(kind: str, graph: str, num_classes: int) -> Path:
    _, ckpt = tiny_model(kind, num_classes)
    out = _ROOT / f"{kind}-{num_classes}-{graph}.onnx"
    export_onnx(ckpt, out, graph=graph, verify=False)
    return out
