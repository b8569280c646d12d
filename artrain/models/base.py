"""What every family shares: the explicit-state step contract, the family registry, two small helpers.

Contract (every family):
- ``forward(x, cond=None)`` -> logits for every element in parallel (teacher forcing);
  logits at position t are the distribution of x_t given x_<t (and the condition). A locally conditioned
  model (``feature_spec`` not None: a vocoder) also takes ``features=`` (B, F, M) frames, frame f
  conditioning elements f*hop .. f*hop + hop - 1; ``frame_vectors(frames (B, ..., M))`` -> (B, ..., D) is its
  conditioning network, applied once per frame, and its ``step`` takes ``features=`` (B, D), the vector of
  each row's own frame: that of the element at ``pos[b]``. The other families never receive the argument.
- ``state_spec()`` -> every state tensor, declared in full (``StateSpec``: name, shape without the batch,
  dtype, initial value); the exporter only serialises it and ``init_state`` builds from it.
- ``step(token, pos, state, cond=None)`` -> (logits (B, V), new_state). ``pos`` is a (B,) int64 tensor:
  row b returns the distribution of its element at position pos[b], and ``token[b]`` (B,) int64 is row b's
  element at pos[b] - 1, or the start symbol ``vocab_size`` where pos[b] == 0 (a prefill step takes token
  (B, S), row b's elements at pos[b] .. pos[b] + S - 1). Rows are independent: row b's outputs and new state
  depend only on row b's token, position, state (and condition, features), so rows at different positions
  share a batch and a row may restart from its initial state at any step. The input state is never
  modified; the new state has the same names, shapes and dtypes. A ring buffer is written one slot per step
  (a scatter into the state as given, whose result is the new state), read only where the products need it;
  arexport proves such a state safe to update in place (docs/contract.md).
Rolling ``step`` for pos = 0..T-1 from ``init_state`` reproduces ``forward`` (float32, max abs diff 1e-5).
A model's output head (``output_head``, an ``arrun.contract.heads.Head``: a softmax over the V levels, or a
discretized mixture of K logistics where the config has ``mixtures`` K > 0) sets ``output_width``, the W outputs
per element that ``forward`` and ``step`` return in place of the V logits, and ``output_nll``, the training loss:
the head's likelihood, the formula arrun scores with, evaluated in torch (``TORCH_OPS``).

A family is one ``ARModel`` subclass with a ``family`` name, carrying everything the rest of the project
asks of it (config class, training defaults, data-dependent config, lengths, declared abilities). A
built-in family is one module in this package and registers itself in ``FAMILIES`` when defined; a family
outside this repository is an entry point of the group ``artrain.families`` or is named as
``package.module:Class`` (``artrain.models.family_class``). The protocol is written down in
docs/families.md. Nothing outside this package names a family.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from arrun.contract.features import FeatureSpec
from arrun.contract.heads import ArrayOps, Head, LogisticMixture, Softmax
from arrun.contract.registry import Registry
from arrun.contract.schema import StateSpec


def _check_family(name: str, cls) -> None:
    """An entry point of ``artrain.families`` must be an ARModel subclass whose ``family`` is its name."""
    if not (isinstance(cls, type) and issubclass(cls, ARModel)):
        raise ValueError(f"the entry point {name!r} of 'artrain.families' is {cls!r}, not an ARModel subclass; "
                         "fix the plug-in's pyproject.toml")
    if getattr(cls, "family", None) != name:
        raise ValueError(f"the entry point {name!r} of 'artrain.families' loads a class whose family is "
                         f"{getattr(cls, 'family', None)!r}; name the entry point after the class's family")


# family name -> class: the built-ins register as their modules load, plug-ins are entry points
FAMILIES: Registry[type["ARModel"]] = Registry("artrain.families", "model family", _check_family)


class ARModel(nn.Module):
    """Base class of the families; subclasses set ``family`` and ``Config`` and define ``state_spec``,
    ``forward`` and ``step``."""

    family: ClassVar[str]         # the name used by `artrain fit --model`, checkpoints and the .onnx metadata
    Config: ClassVar[type]        # the family's frozen config dataclass
    uses_position: ClassVar[bool] = True  # whether ``step`` reads ``pos`` (the step graph then takes it)
    # data kind ('image' | 'text' | 'audio') -> default fit options, "model" holding config fields; sized to
    # train a useful model in <= 15 min on 2 CPU cores.
    training_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    # `artrain fit --size` presets: 'tiny' | 'small' | 'base' -> config fields, over the data kind's defaults;
    # docs/families.md lists each built-in preset's parameter count (tests/test_budget.py rebuilds them).
    sizes: ClassVar[dict[str, dict[str, Any]]] = {}
    # Optional abilities, declared here and never probed (docs/families.md). Two more are properties below,
    # since the config decides them: prefill (``step_tokens`` > 1) and local conditioning (``feature_spec``).
    graph_kinds: ClassVar[tuple[str, ...]] = ("step", "full")  # the `arexport onnx --graph` kinds it exports;
    # 'chunk' (the step rolled inside the graph) needs a one-element step over sequences of any length
    genai: ClassVar[bool] = False  # has ``step_growing``: `arexport genai` exports it for onnxruntime-genai
    # M > 0: the chunk graph rolls ``roll`` M elements per Loop iteration (then the rest one at a time); worth it
    # where ``roll`` does M elements' work in fewer nodes than M steps (WaveNet reads and writes its ring once)
    chunk_block: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "family" in cls.__dict__ and cls.__module__.startswith(f"{__package__}."):  # a built-in
            FAMILIES.register(cls.family, cls)

    @classmethod
    def data_config(cls, values: dict, *, levels: int, num_classes: int,
                    image_shape: tuple[int, int] | None) -> dict:
        """The config fields the training data decides, added to ``values``; raise ValueError when the
        family cannot model that data."""
        return {**values, "vocab_size": levels, "num_classes": num_classes}

    @property
    def max_length(self) -> int:
        """Positions one sequence may have (0: unbounded); longer data is scored in chunks of this."""
        return 0

    @property
    def receptive_field(self) -> int:
        """Predecessors one prediction can depend on (0: all of them); scoring feeds each element this many."""
        return 0

    @property
    def window(self) -> int:
        """Keys one attention query sees (0: no attention window)."""
        return 0

    @property
    def state_period(self) -> int:
        """Steps after which every slot of a ring-buffer state has been overwritten (0: no ring buffer);
        verification rolls at least twice this far."""
        return self.window

    @property
    def step_tokens(self) -> int:
        """Elements one ``step`` call takes: 1 -> token (B,), logits (B, V); S > 1 -> token (B, s) for any
        1 <= s <= S, logits (B, s, V) (prefill)."""
        return 1

    @property
    def feature_spec(self) -> FeatureSpec | None:
        """The features a locally conditioned model takes (``arrun.contract.features``), None for the others."""
        return None

    @property
    def fixed_length(self) -> int:
        """The one sequence length the parallel ``forward`` takes (an image's H*W), 0 when any length up to
        ``max_length`` works."""
        return 0

    @property
    def output_head(self) -> Head:
        """The output head over the config's ``vocab_size`` levels: a discretized mixture of ``mixtures``
        logistics where the config has K > 0, else a softmax. A family with a head of its own overrides this;
        the width, the loss and the exported 'ar.output' follow from it."""
        levels, K = self.config.vocab_size, getattr(self.config, "mixtures", 0)
        return LogisticMixture(levels, K) if K else Softmax(levels)

    @property
    def output_width(self) -> int:
        return self.output_head.width

    def output_nll(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """outputs (..., W) float32, targets (...) levels -> (...) -ln p(target), the training loss per element."""
        return -self.output_head.level_log_probs(outputs, targets, TORCH_OPS)

    def state_spec(self) -> tuple[StateSpec, ...]:
        raise NotImplementedError

    def step_growing(self, token: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                     past: list[tuple[torch.Tensor, torch.Tensor]]):
        """The onnxruntime-genai form of ``step`` (a KV cache growing by S per call, Optimum names), for a family
        that declares ``genai``: token (B, S), attention_mask (B, P + S), position_ids (B, S), past per layer
        (key, value) (B, heads, P, head_dim) -> (logits (B, S, V), present per layer (B, heads, P + S, head_dim))."""
        raise NotImplementedError(f"the {self.family} family does not declare genai")

    def roll(self, token: torch.Tensor, pos: torch.Tensor, state: dict[str, torch.Tensor], draw, length: int,
             cond: torch.Tensor | None = None, features: torch.Tensor | None = None):
        """``length`` steps from token (B,) at pos (B,): element s is drawn from its logits (B, W) by
        ``draw(logits, s) -> (B,) int64`` and fed to the next step; ``features`` (B, length, D) are the elements'
        frame vectors -> (tokens (B, length), the state after them). This is the step loop; a family that sets
        ``chunk_block`` overrides it with the same computation in fewer nodes."""
        tokens = []
        for s in range(length):
            local = {} if features is None else {"features": features[:, s]}
            logits, state = self.step(token, pos + s, state, cond, **local)
            token = draw(logits, s)
            tokens.append(token)
        return torch.stack(tokens, dim=1), state  # (B, length)

    def init_state(self, batch_size: int) -> dict[str, torch.Tensor]:
        device = next(self.parameters()).device
        return {s.name: torch.from_numpy(s.initial(batch_size)).to(device) for s in self.state_spec()}

    def sequence_logits(self, x: torch.Tensor, cond: torch.Tensor | None = None, **features) -> torch.Tensor:
        """Logits (B, T, V) for flat sequences x (B, T) [and ``features=`` frames]; families with a 2-D layout
        override it."""
        return self(x, cond, **features)


@dataclass(frozen=True)
class ImageConfig:
    """The config of an image family (a family subclasses it, adding fields of its own if it has any)."""
    vocab_size: int = 256      # pixel levels
    height: int = 32
    width: int = 32
    num_classes: int = 0       # class ids for conditioning (0: unconditional)
    layers: int = 8
    channels: int = 64
    kernel_size: int = 3       # odd; r = kernel_size // 2 columns (and rows) of context per layer
    dropout: float = 0.0
    mixtures: int = 0          # K > 0: a discretized mixture of K logistics over the levels in place of the softmax

    def __post_init__(self):
        if self.kernel_size < 3 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 3, got {self.kernel_size}")


class ImageModel(ARModel):
    """What the image families share: the config has ``height``, ``width`` (set from the data), ``layers``
    and ``channels``; a sequence is one whole image in raster order (``fixed_length`` = H*W); ``forward``
    takes (B, H, W); an embedding of the levels, ``layers`` layers built by ``layer(config, first=...)``
    and a two-layer output head."""

    def __init__(self, config, layer):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.channels)
        self.layers = nn.ModuleList(layer(c, first=i == 0) for i in range(c.layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(c.channels, c.channels), nn.ReLU(),
                                  nn.Linear(c.channels, self.output_width))

    @classmethod
    def data_config(cls, values, *, levels, num_classes, image_shape):
        if image_shape is None:
            raise ValueError(f"{cls.family} models images; train it on image data, or use a sequence family")
        values = super().data_config(values, levels=levels, num_classes=num_classes, image_shape=image_shape)
        return {**values, "height": image_shape[0], "width": image_shape[1]}

    @property
    def max_length(self) -> int:
        return self.config.height * self.config.width

    @property
    def feature_spec(self) -> FeatureSpec | None:
        """The features a locally conditioned model takes (``arrun.contract.features``), None for the others."""
        return None

    @property
    def fixed_length(self) -> int:
        return self.max_length  # forward takes whole images

    def sequence_logits(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        return self(x.view(-1, c.height, c.width), cond).flatten(1, 2)  # (B, H*W, V)


# The array functions of a head's likelihood (``arrun.contract.heads.ArrayOps``), in torch: float32, differentiable.
TORCH_OPS = ArrayOps(
    real=lambda x: x.float(), exp=torch.exp, log=torch.log, expm1=torch.expm1, softplus=F.softplus,
    where=torch.where, maximum=lambda x, low: x.clamp(min=low), logsumexp=lambda x: torch.logsumexp(x, dim=-1),
    log_softmax=lambda x: torch.log_softmax(x, dim=-1),
    take=lambda x, index: x.gather(-1, index.unsqueeze(-1)).squeeze(-1))


def gate(a: torch.Tensor, dim: int) -> torch.Tensor:
    """Gated activation unit tanh(a1) * sigmoid(a2), halves taken along ``dim``."""
    filt, gate_ = a.chunk(2, dim=dim)
    return torch.tanh(filt) * torch.sigmoid(gate_)


def shift_right(x: torch.Tensor, start: int) -> torch.Tensor:
    """(B, T) -> (B, T) inputs u with u_0 = start and u_t = x_{t-1}: the model at t sees only x_<t."""
    return torch.cat([torch.full_like(x[:, :1], start), x[:, :-1]], dim=1)
