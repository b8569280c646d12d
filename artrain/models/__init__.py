"""The three families and how to build one from a config dict (as stored with a checkpoint)."""
from __future__ import annotations

from dataclasses import fields

from .base import ARModel
from .pixelcnn import PixelCNN, PixelCNNConfig
from .transformer import Transformer, TransformerConfig
from .wavenet import WaveNet, WaveNetConfig

FAMILIES = {
    "wavenet": (WaveNet, WaveNetConfig),
    "pixelcnn": (PixelCNN, PixelCNNConfig),
    "transformer": (Transformer, TransformerConfig),
}


def make_config(family: str, values: dict):
    """Family name + dict of config fields -> the family's frozen config; unknown keys raise ValueError."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    config_cls = FAMILIES[family][1]
    unknown = set(values) - {f.name for f in fields(config_cls)}
    if unknown:
        raise ValueError(f"unknown {family} config keys: {', '.join(sorted(unknown))}")
    return config_cls(**values)


def build_model(family: str, values: dict) -> ARModel:
    config = make_config(family, values)
    return FAMILIES[family][0](config)


def family_of(model: ARModel) -> str:
    return next(name for name, (cls, _) in FAMILIES.items() if isinstance(model, cls))


__all__ = ["ARModel", "FAMILIES", "make_config", "build_model", "family_of"]
