"""The workers behind ``artrain``: keyword-only, return the ``--json`` record as a dict, raise ARError.

Each checks its arguments and paths before it imports torch (``.train``, ``.evaluate``), so a typo or a
missing path is said at once.
"""
from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

from arrun.contract.codecs import audio_bits
from arrun.contract.errors import Interrupted, UsageError

from . import checkpoint as ckpt
from .data import Dataset, is_builtin, load_dataset
from .options import FitOptions, resolve_options
from .textdata import UTF8


def fit(*, family: str | None = None, data: str | None = None, out: Path | None = None,
        config_file: Path | None = None, resume: Path | None = None, init: Path | None = None,
        flags: dict | None = None, log=print) -> dict:
    """Train a new run into ``out`` (default runs/FAMILY-DATA), from random weights or from those of the
    checkpoint ``init`` (fine-tuning), or continue the one in ``resume`` (its saved options, overridden by the
    ``flags`` given) -> {"out", "family", "data", "step", "test": evaluation}."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    if init is not None:
        if resume is not None:
            raise UsageError("--init starts a new run from a checkpoint's weights and --resume continues a run; "
                             "give one of them")
        family, flags = _fine_tuning(Path(init), family, flags)
    if resume is not None:
        given = [flag for flag, value in (("--model", family), ("--data", data), ("--config", config_file),
                                          ("--out", out)) if value is not None]
        if given:
            raise UsageError(f"--resume continues the run with its own options, so {', '.join(given)} cannot be "
                             "given with it; drop them (--steps and the other flags may change)")
        config = ckpt.read_config(resume)
        saved = config["train"]
        if not {"family", "data"} <= set(saved):
            raise UsageError(f"{resume} holds no training state to resume (its config.json has no training "
                             "options); train a new run with `artrain fit`")
        known = {f.name for f in fields(FitOptions)}
        opts = FitOptions(**{k: v for k, v in saved.items() if k in known})
        kept = {k: v for k, v in asdict(opts).items() if k not in ("family", "data")}
        # text reads as the checkpoint's kind, whatever the default was when it was trained
        kept["text_as"] = {UTF8: "bytes", "text": "characters"}.get(config.get("data", {}).get("kind"), opts.text_as)
        opts = resolve_options(opts.family, opts.data, None, {**kept, **flags})
        out = Path(resume)
    else:
        opts = resolve_options(family, data, config_file, flags)
        out = Path(out or Path("runs") / f"{opts.family}-{Path(opts.data).stem}")
    from .train import fit as run_fit

    try:
        config = run_fit(opts, out, resume=resume is not None, log=log)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; a checkpoint is saved in {out}; continue with "
                          f"`artrain fit --resume {out}`") from None
    return {"out": str(out), "family": opts.family, "data": opts.data, "step": config["step"], "test": config["eval"]}


def _fine_tuning(init: Path, family: str | None, flags: dict) -> tuple[str, dict]:
    """The family and flags of a run that starts from the checkpoint ``init``: its family, model config and
    data reading (bytes, audio bits, classes), and by default a tenth of its peak learning rate; UsageError
    for what cannot be fine-tuned."""
    config = ckpt.read_config(init)
    if family is not None and family != config["family"]:
        raise UsageError(f"--init {init} holds a {config['family']} model, not {family}; drop --model")
    if "size" in flags or "mixtures" in flags:
        raise UsageError(f"--init {init} sets the model's size and output head; drop --size and --output")
    info = config["data"]
    if info["kind"] == "text":
        raise UsageError(f"--init {init} reads text as characters of its own alphabet; start from a model "
                         "trained on bytes (models/pydoc-transformer) or drop --init")
    reading = {UTF8: {"text_as": "bytes"}, "audio": {"bits": audio_bits(info["levels"])}}.get(info["kind"], {})
    peak = config["train"].get("lr")
    lr = flags.get("lr", peak / 10 if type(peak) in (int, float) and peak > 0 else 1e-4)  # keep what it learned
    given = {**flags, **reading, "lr": lr, "conditional": bool(config["model"].get("num_classes")),
             "model": config["model"], "init": str(init.resolve())}
    return config["family"], given


def evaluate(checkpoint: Path, *, data: str | None = None, split: str | None = None) -> dict:
    """Bits/dim of the checkpoint on ``split`` of ``data``: by default the test split of what it was trained
    on; a file or folder of the user's given as ``data`` is scored whole (split 'all'), as `arrun score`
    scores it."""
    ckpt.read_config(checkpoint)  # a missing or broken checkpoint is said before torch loads
    from .evaluate import evaluate as evaluate_split

    model, config = ckpt.load_checkpoint(checkpoint)
    info = config["data"]
    name = data or info["name"]
    split = split or ("all" if data is not None and not is_builtin(data) else "test")
    dataset = load_dataset(name, alphabet=info.get("alphabet") if info["kind"] == "text" else None,
                           bits=audio_bits(info["levels"]) if info["kind"] == "audio" else 8,
                           text_as="bytes" if info["kind"] == UTF8 else "")
    check_compatible(dataset, info, model.config)
    result = evaluate_split(model, dataset.split(split))
    return {**asdict(result), "split": split, "data": name, "family": config["family"]}


def check_compatible(data: Dataset, info: dict, model_config) -> None:
    """The data must be of the kind, levels and classes the model was trained on."""
    if data.kind != info["kind"] or data.levels > model_config.vocab_size:
        raise UsageError(f"{data.name} is {data.kind} data with {data.levels} levels, the model was trained on "
                         f"{info['kind']} data with {model_config.vocab_size}; give matching --data")
    if model_config.num_classes and (data.train.labels is None or data.num_classes != model_config.num_classes):
        raise UsageError(f"the model is conditioned on {model_config.num_classes} classes and {data.name} has "
                         f"{data.num_classes}; give labelled data with the same classes")
    if data.image_shape is not None and tuple(data.image_shape) != tuple(info.get("image_shape") or ()):
        raise UsageError(f"{data.name} has images of {data.image_shape}, the model {info.get('image_shape')}; "
                         "give images of the model's size")
