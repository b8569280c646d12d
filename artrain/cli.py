"""The ``artrain`` command line: thin Typer commands over the workers in ``commands.py``; errors become
one line through ``arrun.contract.edge``."""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand

from arrun.contract import edge

from .options import family_names

# Nothing here imports torch: the workers check arguments and paths first and import it only then.
FAMILY_NAMES = ", ".join(family_names())
app = edge.typer_app(prog="artrain", no_args_is_help=True,
                     help=f"Train autoregressive models ({FAMILY_NAMES}) and measure bits/dim.")


class SplitName(str, Enum):
    test = "test"
    val = "val"
    train = "train"
    all = "all"


class Size(str, Enum):
    tiny = "tiny"
    small = "small"
    base = "base"


class TextAs(str, Enum):
    bytes = "bytes"
    characters = "characters"


class Head(str, Enum):
    softmax = "softmax"
    mol = "mol"


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


class FitCommand(TyperCommand):
    """``fit``, whose help lists each family's config keys: that needs the family classes (and torch), so
    the list is built only when the help is shown."""

    def format_help(self, ctx, formatter) -> None:
        from .models import config_keys
        from .options import size_parameters

        self.epilog = ("Family config keys (in --config under \"model\"): "
                       + "; ".join(f"{family}: {', '.join(keys)}" for family, keys in config_keys().items())
                       + ".  --size presets, parameters at 256 levels: "
                       + "; ".join(f"{family}: " + ", ".join(f"{size} {count:,}" for size, count in sizes.items())
                                   for family, sizes in size_parameters().items() if sizes)
                       + ".  Examples:  artrain fit --model pixelcnn --data digits --out runs/digits  |  "
                         "artrain fit --config models/digits-pixelcnn/train.json --out runs/mine  |  "
                         "artrain fit --resume runs/digits --steps 2000  |  "
                         "artrain fit --init models/pydoc-transformer --data mine.py --minutes 10")
        super().format_help(ctx, formatter)


@app.command(cls=FitCommand)
def fit(
    model: Annotated[Optional[str], typer.Option(help=f"Model family to train: {FAMILY_NAMES}, or "
                                                      "package.module:Class of an installed family.")] = None,
    data: Annotated[Optional[str], typer.Option(help="Built-in dataset (digits, text, pystdlib, speech) or a path: text file, folder of WAV files, .npy of images (default digits).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Checkpoint directory to create (default: runs/MODEL-DATA).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps (default: per model and data).")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Time budget: the steps, warm-up, evaluations and checkpoints are planned from the rate of the first steps so the last checkpoint is written within it (the test evaluation follows); the weights kept are the best validation's. Replaces --steps.")] = None,
    size: Annotated[Optional[Size], typer.Option(help="The family's size preset (parameter counts below); --config's \"model\" fields override it.")] = None,
    text_as: Annotated[Optional[TextAs], typer.Option(help="A text file as UTF-8 bytes (any file; the default) or as characters of its own alphabet (the built-in 'text' default).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Sequences per batch.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (warm-up, then cosine decay).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of every random generator the run uses.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda.")] = None,
    seq_len: Annotated[Optional[int], typer.Option(help="Training window for text and audio (default: per model).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="JSON file of fit options (\"family\", \"data\", \"steps\", ..., \"model\": {family config fields}).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this checkpoint directory.")] = None,
    init: Annotated[Optional[Path], typer.Option(help="Start from the weights of this checkpoint or shipped model folder (fine-tuning): its family and size, a new schedule on --data of the same kind, a tenth of its learning rate; its best validation (step 0 included) is kept.")] = None,
    output: Annotated[Optional[Head], typer.Option(help="Output head: softmax over the levels (default) or mol, a discretized mixture of logistics (wavenet, pixelcnn, pixelrnn).")] = None,
    mixtures: Annotated[Optional[int], typer.Option(help="Logistics in the mixture of --output mol (default 10).")] = None,
    bits: Annotated[Optional[int], typer.Option(help="Audio bit depth: 8 (mu-law, default) or 16 (linear PCM; needs --output mol).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Train a model; writes weights (safetensors), config.json and metrics.jsonl into the output directory."""
    from .commands import fit as work

    if mixtures is not None and (output != Head.mol or mixtures < 1):
        edge.fail("--mixtures K (K >= 1) sets the components of --output mol; give both", 2)
    heads = {None: None, Head.softmax: 0, Head.mol: 10 if mixtures is None else mixtures}
    if minutes is not None and steps is not None:
        edge.fail("--minutes plans the steps from a time budget; give --minutes or --steps, not both", 2)
    flags = dict(steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device, seq_len=seq_len, bits=bits,
                 mixtures=heads[output], minutes=minutes, size=size.value if size else None,
                 text_as=text_as.value if text_as else None)
    record = edge.run(lambda: work(family=model, data=data, out=out, config_file=config,
                                   resume=resume, init=init, flags=flags, log=lambda msg: typer.echo(msg, err=True)))
    if json_out:
        typer.echo(json.dumps(record))


@app.command("eval", epilog="Examples:  artrain eval runs/digits  |  artrain eval runs/book --data other.txt --json  "
                             "(a file of your own is scored whole, as `arrun score` scores it)")
def eval_(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint directory written by `artrain fit`.")],
    data: Annotated[Optional[str], typer.Option(help="Dataset to score (default: the one the model was trained on).")] = None,
    split: Annotated[Optional[SplitName], typer.Option(help="Split to score (default: test; all for a --data file of your own).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Print held-out negative log-likelihood in bits per dimension (and nats)."""
    from .commands import evaluate as work

    r = edge.run(lambda: work(checkpoint, data=data, split=split.value if split else None))
    if json_out:
        typer.echo(json.dumps(r))
    else:
        typer.echo(f"{r['family']} on {r['data']} ({r['split']}): {r['bits_per_dim']:.4f} bits/dim, "
                   f"{r['nats_per_dim']:.4f} nats/dim over {r['n_dims']:,} dims")


def main() -> None:
    app()
