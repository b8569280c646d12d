"""The ``artrain`` command line: thin Typer commands over ``train.fit`` and ``evaluate.evaluate``."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import ArtrainError, UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train autoregressive models (WaveNet, Gated PixelCNN, Transformer) and measure bits/dim.")


class Family(str, Enum):
    wavenet = "wavenet"
    pixelcnn = "pixelcnn"
    transformer = "transformer"


class SplitName(str, Enum):
    test = "test"
    val = "val"


@app.command()
def fit(
    model: Annotated[Optional[Family], typer.Option(help="Model family to train.")] = None,
    data: Annotated[str, typer.Option(help="Built-in dataset (digits, text, speech) or a path: UTF-8 text file, folder of WAV files, .npy of images.")] = "digits",
    out: Annotated[Optional[Path], typer.Option(help="Checkpoint directory to create (default: runs/MODEL-DATA).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps (default: per model and data).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Sequences per batch.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (warm-up, then cosine decay).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of every random generator the run uses.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda.")] = None,
    seq_len: Annotated[Optional[int], typer.Option(help="Training window for text and audio (default: per model).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="JSON file of fit options, with \"model\": {family config fields}.")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this checkpoint directory.")] = None,
) -> None:
    """Train a model; writes weights (safetensors), config.json and metrics.jsonl into the output directory."""
    flags = dict(steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device, seq_len=seq_len)
    _run(lambda: _fit(model.value if model else None, data, out, config, resume, flags))


def _fit(model, data, out, config_file, resume, flags) -> None:
    from . import checkpoint as ckpt
    from .train import FitOptions, fit as run_fit, resolve_options

    if resume is not None:
        saved = ckpt.read_config(resume)["train"]
        known = {f.name for f in fields(FitOptions)}
        opts = FitOptions(**{k: v for k, v in saved.items() if k in known})
        opts = resolve_options(opts.model, opts.data, None, {**_without(asdict(opts), "model", "data"), **_given(flags)})
        out = resume
    else:
        if model is None:
            raise UsageError("--model is required (wavenet, pixelcnn or transformer), or --resume DIR")
        opts = resolve_options(model, data, config_file, flags)
        out = out or Path("runs") / f"{model}-{Path(data).stem}"
    try:
        run_fit(opts, out, resume=resume is not None, log=lambda msg: typer.echo(msg, err=True))
    except KeyboardInterrupt:
        raise ArtrainError(f"interrupted; a checkpoint is saved in {out}: continue with `artrain fit --resume {out}`") from None


def _given(flags: dict) -> dict:
    return {k: v for k, v in flags.items() if v is not None}


def _without(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


@app.command("eval")
def eval_(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint directory written by `artrain fit`.")],
    data: Annotated[Optional[str], typer.Option(help="Dataset to score (default: the one the model was trained on).")] = None,
    split: Annotated[SplitName, typer.Option(help="Held-out split to score.")] = SplitName.test,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print held-out negative log-likelihood in bits per dimension (and nats)."""
    _run(lambda: _eval(checkpoint, data, split.value, json_out))


def _eval(path: Path, data_name: str | None, split: str, json_out: bool) -> None:
    from .checkpoint import load_checkpoint
    from .data import load_dataset
    from .evaluate import evaluate

    model, config = load_checkpoint(path)
    info = config["data"]
    name = data_name or info["name"]
    data = load_dataset(name, alphabet=info.get("alphabet") if info["kind"] == "text" else None)
    check_compatible(data, info, model.config)
    result = evaluate(model, data.split(split))
    record = {"bits_per_dim": result.bits_per_dim, "nats_per_dim": result.nats_per_dim, "n_dims": result.n_dims,
              "split": split, "data": name, "family": config["family"]}
    if json_out:
        typer.echo(json.dumps(record))
    else:
        typer.echo(f"{config['family']} on {name} ({split}): {result.bits_per_dim:.4f} bits/dim, "
                   f"{result.nats_per_dim:.4f} nats/dim over {result.n_dims:,} dims")


def check_compatible(data, info: dict, model_config) -> None:
    """The data must be of the kind, levels and classes the model was trained on."""
    if data.kind != info["kind"] or data.levels > model_config.vocab_size:
        raise UsageError(f"{data.name} is {data.kind} data with {data.levels} levels, the model was trained on "
                         f"{info['kind']} data with {model_config.vocab_size}; give matching --data")
    if model_config.num_classes and (data.train.labels is None or data.num_classes != model_config.num_classes):
        raise UsageError(f"the model is conditioned on {model_config.num_classes} classes and {data.name} has "
                         f"{data.num_classes}; give labelled data with the same classes")
    if data.image_shape is not None and tuple(data.image_shape) != tuple(info.get("image_shape") or ()):
        raise UsageError(f"{data.name} has images of {data.image_shape}, the model {info.get('image_shape')}")


def _run(work) -> None:
    """The CLI edge: domain errors become one line on stderr and an exit code; AR_DEBUG=1 shows tracebacks."""
    try:
        work()
    except ArtrainError as e:
        if os.environ.get("AR_DEBUG"):
            raise
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=e.exit_code) from None


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
