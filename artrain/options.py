"""``artrain fit``'s options: what they are, where they come from, and the one place they are checked.

Options come from three layers, later ones winning: the family's defaults for the data kind
(``ARModel.training_defaults``), a JSON config file (``--config``: keys of ``FitOptions``, with
``"model"`` a dict of the family's config fields), and command-line flags. ``resolve_options`` merges and
validates them. Everything that can be checked without the family is checked first (the config file, the
data's path, the family's name, each value given), so a typo is reported before torch is imported; the
family, and with it torch, loads only for the checks that need it.
"""
from __future__ import annotations

import json
import math
import pkgutil
from dataclasses import dataclass, field, fields
from importlib.metadata import entry_points
from pathlib import Path

from arrun.contract.errors import ARError, UsageError

from .data import check_data_path, data_kind, is_builtin

FAMILY_GROUP = "artrain.families"  # the entry-point group of out-of-tree families (artrain.models.FAMILIES)


@dataclass(frozen=True)
class FitOptions:
    family: str                       # a family name (built-in or entry point) or package.module:Class
    data: str = "digits"              # built-in name or a path
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"
    seq_len: int = 0                  # training window for sequence data; 0: the model's max length
    weight_decay: float = 0.01
    warmup: int = 100
    eval_every: int = 500
    conditional: bool = True          # condition on the data's labels when it has them
    bits: int = 8                     # audio: 8-bit mu-law, or 16-bit linear PCM (65,536 levels: a mixture head)
    text_as: str = ""                 # text: "bytes" (kind utf8) or "characters" (kind text); "": per data
    size: str = ""                    # a family's size preset (tiny | small | base); "": the data kind's defaults
    minutes: float = 0.0              # > 0: a time budget; the schedule's steps are set from the measured rate
    condition_dropout: float = 0.0    # > 0: a row's class is replaced by the unconditioned id with this probability
    unconditioned_class: str = ""     # the data class that is the unconditioned id; "": an extra class "none"
    init: str = ""                    # a checkpoint folder whose weights the run starts from (fine-tuning); "": random
    model: dict = field(default_factory=dict)  # the family's config fields (data fields are set from the data)


def resolve_options(family: str | None, data: str | None, config_file: Path | None, flags: dict) -> FitOptions:
    """The family's defaults for the data kind <- config file <- flags (None: not given); validated here.
    ``family`` and ``data`` may come from the config file instead. UsageError names the first bad option."""
    file_values = _read_config_file(config_file) if config_file is not None else {}
    family = family or file_values.pop("family", None)
    data = _checked_data(data if data is not None else file_values.pop("data", "digits"))
    file_values.pop("family", None), file_values.pop("data", None)
    if family is None:
        raise UsageError(f"--model is required ({', '.join(family_names())}), or --resume DIR")
    check_family_name(family)
    flags = {k: v for k, v in flags.items() if v is not None}
    check_values({k: v for k, v in flags.items() if k != "mixtures"}, "the fit options")
    # the checks below need the family's class, and so torch
    family_cls = load_family(family)
    kind = data_kind(data, flags.get("text_as", file_values.get("text_as", "")))
    defaults = family_cls.training_defaults
    base = dict(defaults.get(kind, defaults.get("text", {}) if kind == "utf8" else {}))  # bytes train as text does
    size = flags.get("size", file_values.get("size", ""))
    base["model"] = {**base.get("model", {}), **_size_preset(family_cls, size), **file_values.pop("model", {})}
    base.update(file_values)
    mixtures = flags.pop("mixtures", None)  # --output softmax: 0; --output mol --mixtures K: K
    if mixtures is not None and "mixtures" in {f.name for f in fields(family_cls.Config)}:
        base["model"]["mixtures"] = mixtures
    elif mixtures:
        raise UsageError(f"--output mol is for a family with a mixture head (a `mixtures` config field, as wavenet, "
                         f"pixelcnn and pixelrnn have); {family_cls.family} has a softmax head")
    base.update(flags)
    check_values(base, "the fit options")
    opts = FitOptions(family=family, data=data, **base)
    _check_bits(opts)
    if opts.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ARError("--device cuda was asked but PyTorch sees no CUDA device; use --device cpu or a CUDA "
                          "build of torch")
    return opts


def _checked_data(data) -> str:
    """``--data`` as stored: a built-in name, or the absolute path of an existing file or folder (so
    `artrain eval` finds it from any folder); UsageError otherwise."""
    if not isinstance(data, str) or not data.strip():
        raise UsageError(f"--data must name a built-in dataset or a path, got {data!r}")
    if is_builtin(data):
        return data
    check_data_path(data)
    return str(Path(data).expanduser().resolve())


def family_names() -> list[str]:
    """Every family name ``--model`` takes, found without importing a family (or torch): the modules of
    artrain.models (a built-in family is one module, named after the family), then the installed entry
    points of FAMILY_GROUP."""
    models = Path(__file__).with_name("models")
    builtin = [m.name for m in pkgutil.iter_modules([str(models)]) if m.name != "base"]
    return builtin + sorted({ep.name for ep in entry_points(group=FAMILY_GROUP)} - set(builtin))


def check_family_name(name: str) -> None:
    """UsageError unless ``name`` may name a family: one of ``family_names()`` or package.module:Class.
    Nothing is imported; ``load_family`` proves the name."""
    if ":" not in name and name not in family_names():
        raise UsageError(f"unknown model family {name!r}; choose one of {', '.join(family_names())}, or give "
                         "package.module:Class of an installed family")


def load_family(name: str) -> type:
    """The ARModel subclass ``name`` names (this imports artrain.models, and torch); UsageError when there
    is none."""
    from .models import family_class

    try:
        return family_class(name)
    except ValueError as e:
        raise UsageError(str(e)) from None


OPTION_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,)}


def check_values(values: dict, source: str) -> None:
    """The fit options in ``values`` (any of FitOptions' fields) of the types FitOptions declares (bool is no
    int) and in range; UsageError naming the first that is not."""
    types = {f.name: f.type for f in fields(FitOptions)}
    for name, value in values.items():
        wanted = OPTION_TYPES[types[name].split(" ")[0]]
        if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
            raise UsageError(f"{source}: {name!r} must be {types[name]}, got {value!r}; fix the value")
    for name in ("steps", "batch_size", "lr"):
        if name in values and not 0 < values[name] < math.inf:
            raise UsageError(f"--{name.replace('_', '-')} must be positive and finite, got {values[name]}")
    if not 0 <= values.get("condition_dropout", 0) < 1:
        raise UsageError(f"condition_dropout must be in [0, 1), got {values['condition_dropout']}")
    if not 0 <= values.get("seed", 0) < 2**63:
        raise UsageError(f"--seed must be in 0..2**63-1, got {values['seed']}")
    if not 0 <= values.get("weight_decay", 0) < math.inf:
        raise UsageError(f"weight_decay must be >= 0 and finite, got {values['weight_decay']}; fix the config")
    if values.get("seq_len", 0) < 0 or values.get("eval_every", 1) <= 0 or values.get("warmup", 0) < 0:
        raise UsageError("seq_len and warmup must be >= 0 and eval_every > 0; fix the config")
    if values.get("text_as", "") not in ("", "bytes", "characters"):
        raise UsageError(f"--text-as must be bytes or characters, got {values['text_as']!r}")
    if values.get("size", "") not in ("", *SIZES):
        raise UsageError(f"--size must be one of {', '.join(SIZES)}, got {values['size']!r}")
    if not 0 <= values.get("minutes", 0) < math.inf:
        raise UsageError(f"--minutes must be positive and finite, got {values['minutes']}")
    if values.get("device", "cpu") not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda, got {values['device']!r}")


SIZES = ("tiny", "small", "base")


def _size_preset(family_cls: type, size: str) -> dict:
    """The config fields of the family's ``size`` preset (ARModel.sizes); {} for ""; UsageError when the family
    declares no such preset."""
    if not size:
        return {}
    if size not in family_cls.sizes:
        raise UsageError(f"--size {size}: {family_cls.family} declares the sizes "
                         f"{', '.join(family_cls.sizes) or 'none'}; give one of them or drop --size")
    return dict(family_cls.sizes[size])


def size_parameters(levels: int = 256) -> dict[str, dict[str, int]]:
    """Family -> {size preset: parameters of that preset at ``levels`` levels, unconditional} for every family
    found (this imports torch; the models are built on the meta device, nothing is allocated)."""
    import torch

    from .models import FAMILIES, build_model

    counts = {}
    for name, cls in FAMILIES.items():
        with torch.device("meta"):
            counts[name] = {size: sum(p.numel() for p in build_model(name, {**fields_, "vocab_size": levels}).parameters())
                            for size, fields_ in cls.sizes.items()}
    return counts


def _check_bits(opts: FitOptions) -> None:
    if opts.bits not in (8, 16) or (opts.bits == 16 and data_kind(opts.data, opts.text_as) != "audio"):
        raise UsageError(f"--bits {opts.bits}: give 16 for 16-bit linear audio or 8 (the default); "
                         f"{data_kind(opts.data, opts.text_as)} data has no 16-bit form")
    if opts.bits == 16 and not opts.model.get("mixtures"):
        raise UsageError("--bits 16 gives 65,536 levels, too many for a softmax head; add --output mol")


def _read_config_file(path: Path) -> dict:
    if Path(path).exists() and not Path(path).is_file() and not Path(path).is_dir():
        raise UsageError(f"config file {path} is not a regular file; give a JSON file of fit options")
    try:
        values = json.loads(Path(path).read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"config file {path} does not exist; give a JSON file of fit options") from None
    except IsADirectoryError:
        raise UsageError(f"config file {path} is a directory; give a JSON file of fit options") from None
    except PermissionError:
        raise UsageError(f"cannot read the config file {path}; check its permissions") from None
    except RecursionError:
        raise UsageError(f"config file {path} is nested too deeply; give a flat JSON object of fit options") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"config file {path} is not valid JSON ({e}); fix it") from None
    if not isinstance(values, dict):
        raise UsageError(f"config file {path} must hold a JSON object of fit options")
    allowed = {f.name for f in fields(FitOptions)}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise UsageError(f"config file {path} has unknown keys: {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    if not isinstance(values.get("model", {}), dict):
        raise UsageError(f"config file {path}: \"model\" must be an object of the family's config fields")
    check_values(values, f"config file {path}")
    return values
