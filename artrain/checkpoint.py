"""Checkpoint directory: the architecture travels with the weights.

DIR/
  model.safetensors    weights (safetensors: loading never executes code)
  config.json          {"format_version", "family", ["family_import": "package.module:Class" for a family
                        from outside artrain], "model": {config fields}, "data": {DataInfo fields},
                        "train": {options}, "step": int, "eval": {"split", "bits_per_dim", ...} | null}
  trainer.safetensors  optimizer tensors; its metadata holds the step, optimizer groups and RNG states (resume)
  metrics.jsonl        one JSON object per logged event
Every file is written to a temporary name, flushed, fsynced and renamed, config.json last.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError

from arrun.contract.errors import ARError, UsageError
from arrun.contract.files import write_atomic, write_together
from arrun.contract.registry import UnknownEntry

if TYPE_CHECKING:  # torch is imported by the functions that need it, so read_config is quick
    import torch

    from .models import ARModel

FORMAT_VERSION = 1
WEIGHTS, CONFIG, TRAINER, METRICS = "model.safetensors", "config.json", "trainer.safetensors", "metrics.jsonl"


@dataclass(frozen=True)
class DataInfo:
    """What the model was trained on and how its tokens decode (the parts of a Dataset a model needs)."""
    name: str
    kind: str
    levels: int
    image_shape: tuple[int, int] | None = None
    alphabet: str | None = None
    sample_rate: int | None = None
    class_names: tuple[str, ...] = ()
    kind_fields: dict = field(default_factory=dict)  # the data kind's own fields, name -> str: ar.data.<name>
    unconditioned: int = -1                # the class id meaning "no condition" (condition dropout); -1: none

    @classmethod
    def of(cls, dataset) -> "DataInfo":
        return cls(dataset.name, dataset.kind, dataset.levels, dataset.image_shape, dataset.alphabet,
                   dataset.sample_rate, tuple(dataset.class_names), unconditioned=dataset.unconditioned)

    @classmethod
    def from_dict(cls, d: dict) -> "DataInfo":
        shape = d.get("image_shape")
        return cls(**{**d, "image_shape": tuple(shape) if shape else None, "class_names": tuple(d.get("class_names", ()))})


def write_json(path: Path, obj) -> None:
    write_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


def save_checkpoint(out: Path, model: ARModel, config: dict, trainer: dict[str, torch.Tensor] | None = None,
                    trainer_meta: dict | None = None, *, weights: bool = True) -> None:
    """Write weights (and the resume state when given) and config.json (its family fields from the model's
    class: ``artrain.models.family_fields``) together: every file of the checkpoint, or none and the previous
    checkpoint as it was (``commit_together``; each file nameless until complete). ``weights=False`` writes
    the resume state alone and leaves the weights and config.json as they were (a run keeping its best)."""
    from safetensors.torch import save

    from .models import family_fields

    config = {**config, **family_fields(type(model))}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    step = {"step": str(config.get("step", 0))}
    try:
        out.mkdir(parents=True, exist_ok=True)
        contents = {WEIGHTS: save(tensors, metadata=step)} if weights else {}
        if trainer is not None:
            contents[TRAINER] = save(trainer, metadata={**step, "trainer": json.dumps(trainer_meta or {})})
        if weights:
            contents[CONFIG] = (json.dumps(config, indent=2) + "\n").encode()
        write_together({out / name: content for name, content in contents.items()})
    except OSError as e:
        raise ARError(f"cannot write the checkpoint in {out} ({e.strerror or e}); free disk space or choose "
                           "another --out (the previous checkpoint there is intact)") from None


def read_config(path: Path) -> dict:
    """config.json of a checkpoint directory; UsageError when it is missing or not a checkpoint."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} is a file, not a checkpoint directory; give the folder that holds its {CONFIG} "
                         f"({path.parent})")
    if not path.is_dir():
        raise UsageError(f"checkpoint directory {path} does not exist; train one with `artrain fit --out {path}`")
    try:
        config = json.loads((path / CONFIG).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path} is not a complete checkpoint ({CONFIG} is missing); point to a directory written by `artrain fit`") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, OSError) as e:
        raise UsageError(f"{path / CONFIG} is corrupt or unreadable ({str(e)[:120]}); restore it or train again") from None
    if not isinstance(config, dict):
        raise UsageError(f"{path / CONFIG} is not an artrain checkpoint config (not a JSON object); train again with `artrain fit`")
    missing = [k for k in ("family", "model", "data", "train") if k not in config]
    if missing or config.get("format_version") != FORMAT_VERSION:
        raise UsageError(f"{path / CONFIG} is not an artrain checkpoint config (format {config.get('format_version')!r}, "
                         f"missing {', '.join(missing) or 'nothing'}); train again with `artrain fit`")
    data = config["data"]
    if not (isinstance(config["model"], dict) and isinstance(data, dict) and isinstance(config["train"], dict)
            and isinstance(data.get("name"), str) and isinstance(data.get("kind"), str) and data["kind"].isidentifier()
            and isinstance(data.get("levels"), int)):
        raise UsageError(f"{path / CONFIG} is damaged (its model, data or train section is malformed); "
                         "restore it or train again")
    return config


def load_checkpoint(path: Path, device: str = "cpu") -> tuple[ARModel, dict]:
    """Rebuild the model from config.json alone and load its weights -> (model in eval mode, config)."""
    path = Path(path)
    config = read_config(path)
    from .models import checkpoint_family, make_config

    try:
        cls = checkpoint_family(config)
    except UnknownEntry as e:  # a family not installed (or that cannot be imported): the message says what to do
        raise UsageError(f"{path / CONFIG}: {e}") from None
    except ValueError as e:
        raise UsageError(f"{path / CONFIG}: {e}; fix the config or train again") from None
    try:
        model = cls(make_config(cls.family, config["model"]))
    except (ValueError, TypeError) as e:
        raise UsageError(f"{path / CONFIG}: {e}; fix the config or train again") from None
    weights = read_safetensors(path / WEIGHTS)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[1:2] or [str(e)]
        raise UsageError(f"{path / WEIGHTS} does not match {path / CONFIG}: {first[0].strip()}; "
                         "the checkpoint is incomplete or mixed, train again") from None
    return model.to(device).eval(), config


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UsageError(f"{path} is missing (the checkpoint is incomplete); train again with `artrain fit`")
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise UsageError(f"{path} is corrupt or not safetensors ({e}); restore it or train again") from None


def data_info(config: dict) -> DataInfo:
    return DataInfo.from_dict(config["data"])


class MetricsLog:
    """Append-only JSONL log; each line is flushed so an interrupted run keeps what it logged."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def write(self, **record) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
