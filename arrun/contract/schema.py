"""The contract between arexport and arrun: metadata keys, I/O names and the format version.

An exported .onnx carries everything a runtime needs in ``metadata_props`` (string -> string). This
module declares every key once, writes them (``ModelInfo.to_metadata``) and reads them back strictly
(``ModelInfo.from_metadata``): a missing or malformed key raises ``SchemaError``; nothing is guessed.
The data kind is a name, looked up in ``arrun.kinds.DATA_KINDS``, whose object checks the fields it needs.
It imports the standard library and numpy only, so the torch-side exporter, the models (``StateSpec``) and
the torch-free runtime use it.

Graph I/O (B = batch, dynamic in every graph):
- step graph: ``input_ids`` (B,) int64, the element at position - 1 (the start symbol at position 0);
  ``position`` () int64 where the family needs it; ``condition`` (B,) int64 where the model is
  conditional; one input per state tensor -> ``logits`` (B, V) float32 and one output per state tensor
  with the input's shape and dtype, to be fed back as the next step's input. A graph declaring
  ``ar.step_tokens`` S > 1 takes ``input_ids`` (B, s) for any 1 <= s <= S, the elements at positions
  position-1..position+s-2, and returns ``logits`` (B, s, V) for positions position..position+s-1
  (prefill: a chunk of a prompt in one call).
- full graph: ``input_ids`` (B, T) int64 elements x_0..x_{T-1} (plus ``condition``) -> ``logits``
  (B, T, V) float32, where logits[:, t] is the distribution of x_t given x_<t.
- chunk graph (``ar.graph`` 'chunk'): the step graph rolled N times inside the graph, sampling as it goes:
  ``input_ids`` (B,) the element before the chunk, ``position`` () the chunk's first position, [``condition``],
  [``features``], ``uniforms`` (B, N) float64, one per element, state -> ``tokens`` (B, N) int64 and the
  state. Element i is drawn by the inverse CDF of the softmax of its logits at uniforms[:, i], computed in
  float64 as ``arrun.sampling.sample_categorical`` does, so a chunk samples what N steps sample.
The output head (``ar.output``, ``arrun.contract.heads``) names the graph output and its width W: a softmax head
outputs ``logits`` (..., V) as above; a mixture head (kind logistic_mixture, K components) outputs ``mixture``
(..., 3K) float32: per element K mixture logits, K means and K log-scales of logistics over the levels mapped to
[-1, 1]; only a head a chunk graph can sample (the softmax) has a chunk graph.
A locally conditioned model (``ar.features``: a vocoder) takes ``features`` float32 frames of the declared
analysis (``arrun.contract.features``), frame f conditioning elements f*hop .. f*hop + hop - 1: (B, F, M)
frames 0..F-1 in the full graph, (B, M) the frame of ``position`` in the step graph, (B, F, M) frames
position // hop .. in the chunk graph.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .features import FeatureSpec
from .heads import Head, make_head

FORMAT_VERSION = 6  # 2: windowed models (window, receptive field, step tokens), data name; 3: features, chunk graph;
                    # 4: precision variants (precision, source hash, quality gate); 5: output head (mixture of logistics);
                    # 6: a position per row ((B,) int64), in_place per state tensor (one-slot writes proved safe to alias)
READS_VERSIONS = (6,)  # a version 5 file's position is one scalar for the whole batch: re-export it

TOKEN_INPUT = "input_ids"
POSITION_INPUT = "position"
CONDITION_INPUT = "condition"
FEATURES_INPUT = "features"
UNIFORMS_INPUT = "uniforms"
LOGITS_OUTPUT = "logits"  # the softmax head's output (a chunk graph's logits inside the graph)
TOKENS_OUTPUT = "tokens"
BATCH_DIM = "batch"



@dataclass(frozen=True)
class GraphIO:
    """What a graph kind takes and returns besides the head's output, the condition and the features (the
    module docstring): the one description the exporter and a runtime's input checks read. A new kind is one
    entry in GRAPH_IO, plus the runtime code that drives it."""
    stateful: bool   # state tensors in and out, and ``position`` where the model reads it
    sequence: bool   # ``input_ids`` (B, T) and outputs (B, T, W): a whole sequence per call
    samples: bool    # ``uniforms`` (B, N) float64 in, ``tokens`` (B, N) int64 out: elements drawn in the graph

    @property
    def frames(self) -> bool:
        """Whether ``features`` are frames (B, F, M) rather than the one frame (B, M) of a single step."""
        return self.sequence or self.samples


GRAPH_IO = {"step": GraphIO(stateful=True, sequence=False, samples=False),
            "full": GraphIO(stateful=False, sequence=True, samples=False),
            "chunk": GraphIO(stateful=True, sequence=False, samples=True)}
GRAPH_KINDS = tuple(GRAPH_IO)
PRECISIONS = ("fp32", "fp16", "int8")
STATE_DTYPES = ("float32", "float16", "float64")
# Ranges a file may declare; anything beyond is refused before a runtime allocates for it.
MAX_VOCAB = 1 << 24          # logits per element
MAX_LENGTH = 1 << 31         # positions per sequence
MAX_CLASSES = 1 << 20
MAX_STATE_BYTES = 1 << 30    # state per sequence (one batch row), all tensors together


class Key:
    """Every metadata key (values are strings; JSON where structured)."""

    FORMAT_VERSION = "ar.format_version"
    FAMILY = "ar.family"
    GRAPH = "ar.graph"                    # 'step' | 'full' | 'chunk'
    DATA_KIND = "ar.data.kind"            # a data kind's name (arrun.kinds): 'image' | 'text' | 'audio' built in
    VOCAB_SIZE = "ar.vocab_size"          # logits width V; tokens are in [0, V)
    START_TOKEN = "ar.start_token"        # fed as input_ids at position 0
    MAX_LENGTH = "ar.max_length"          # positions a sequence may have; 0: unbounded
    WINDOW = "ar.window"                  # keys one attention query sees (a KV ring buffer of this size); 0: none
    RECEPTIVE_FIELD = "ar.receptive_field"  # predecessors a prediction depends on (scoring feeds this many); 0: all
    STEP_TOKENS = "ar.step_tokens"        # elements one step-graph call takes (> 1: input_ids (B, s), prefill)
    IMAGE_SHAPE = "ar.data.image_shape"   # JSON [H, W] (image) else []
    DATA_NAME = "ar.data.name"            # the training data: a built-in name or the file/folder name
    ALPHABET = "ar.data.alphabet"         # JSON string: token i is character i (text) else ""
    SAMPLE_RATE = "ar.data.sample_rate"   # Hz (audio: tokens are 8-bit mu-law codes) else 0
    KIND_FIELD = "ar.data.{}"             # any other ar.data.<name>: a field of the data kind's own (a string)
    FEATURES = "ar.features"              # JSON FeatureSpec of the local conditioning (a vocoder) else ""
    NUM_CLASSES = "ar.condition.num_classes"  # 0: unconditional (no condition input)
    CLASS_NAMES = "ar.condition.class_names"  # JSON list of str
    UNCONDITIONED = "ar.condition.unconditioned"  # optional: the class id meaning "no condition"; absent: none
    STATE = "ar.state"                    # JSON list of {name, input, output, shape, dtype, init, in_place}
    USES_POSITION = "ar.uses_position"    # '1': the step graph has the `position` input
    BITS_PER_DIM = "ar.bits_per_dim"      # held-out bits/dim recorded at training, 'nan' if unknown
    BITS_SPLIT = "ar.bits_split"          # the split that figure is on
    OPSET = "ar.opset"
    MIN_ONNXRUNTIME = "ar.min_onnxruntime"  # oldest onnxruntime the graph was verified on
    PRODUCER = "ar.producer"              # JSON {package: version}
    PRECISION = "ar.precision"            # 'fp32' (exported) | 'fp16' | 'int8' (variants of an fp32 graph)
    SOURCE_SHA256 = "ar.source_sha256"    # a variant: sha256 of the fp32 file it was made from; fp32: ""
    OUTPUT = "ar.output"                  # JSON {"kind": head kind, **its params}: {"kind": "softmax"} or
                                          # {"kind": "logistic_mixture", "mixtures": K} (arrun.contract.heads)
    GATE = "ar.precision.gate"            # a variant: JSON {split, tolerance, bits_per_dim, reference_bits_per_dim,
                                          # greedy_steps}: the quality gate it passed; fp32: {}


BUILT_IN_DATA_KEYS = frozenset({Key.DATA_KIND, Key.IMAGE_SHAPE, Key.DATA_NAME, Key.ALPHABET, Key.SAMPLE_RATE})


class SchemaError(ValueError):
    """The file's metadata is missing, malformed or of another format version."""


@dataclass(frozen=True)
class StateSpec:
    """One state tensor, declared by the model and serialised as it is: shape without the batch
    dimension, numpy dtype name, the value every element starts from, and whether a runtime may bind one buffer
    as both its input and its output (``in_place``: set by arexport once it proved the aliased rollout equal to
    the separate-buffer one; a family never declares it)."""
    name: str
    shape: tuple[int, ...]   # (d1, d2, ...): the graph's tensor is (B, d1, d2, ...)
    dtype: str = "float32"
    init: float = 0.0
    in_place: bool = False

    @property
    def input(self) -> str:
        return state_io_names(self.name)[0]

    @property
    def output(self) -> str:
        return state_io_names(self.name)[1]

    def initial(self, batch_size: int) -> np.ndarray:
        """The state a sequence starts from: (batch_size, *shape) of ``dtype`` filled with ``init``."""
        return np.full((batch_size, *self.shape), self.init, dtype=self.dtype)


def variant_name(file_name: str, precision: str) -> str:
    """The file name of a graph's variant at ``precision``, beside it: step.onnx <-> step.int8.onnx, step.fp16.onnx;
    an ORT-format file keeps its suffix (step.int8.ort -> step.ort)."""
    suffix = ".ort" if file_name.endswith(".ort") else ".onnx"
    stem = file_name.removesuffix(suffix)
    for other in PRECISIONS:
        stem = stem.removesuffix(f".{other}")
    return f"{stem}{suffix}" if precision == "fp32" else f"{stem}.{precision}{suffix}"


def state_io_names(name: str) -> tuple[str, str]:
    """State tensor name -> (graph input, graph output). KV caches use the Optimum/onnxruntime-genai
    names past_key_values.{i}.key|value -> present.{i}.key|value; others in.<name> -> out.<name>."""
    if name.startswith("past_key_values."):
        return name, "present." + name.removeprefix("past_key_values.")
    return f"in.{name}", f"out.{name}"


@dataclass(frozen=True)
class ModelInfo:
    family: str
    graph: str
    data_kind: str
    vocab_size: int
    start_token: int
    max_length: int
    state: tuple[StateSpec, ...] = ()
    window: int = 0
    receptive_field: int = 0
    step_tokens: int = 1
    data_name: str = ""
    features: FeatureSpec | None = None
    image_shape: tuple[int, ...] = ()
    alphabet: str = ""
    sample_rate: int = 0
    kind_fields: dict = field(default_factory=dict)  # the data kind's own fields: ar.data.<name> -> name: str
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    unconditioned: int | None = None  # the class id used when no condition is given; None: one is required
    uses_position: bool = False
    bits_per_dim: float = float("nan")
    bits_split: str = ""
    opset: int = 0
    min_onnxruntime: str = ""
    producer: dict = field(default_factory=dict)
    precision: str = "fp32"
    source_sha256: str = ""
    gate: dict = field(default_factory=dict)
    output: dict = field(default_factory=lambda: {"kind": "softmax"})  # 'ar.output': the head's kind and params
    format_version: int = FORMAT_VERSION

    @cached_property
    def head(self) -> Head:
        """The output head ``output`` declares over the V levels (ValueError when it declares none)."""
        return make_head(self.output, self.vocab_size)

    @property
    def output_name(self) -> str:
        """The graph output holding each element's distribution: ``logits`` (..., V) for a softmax head,
        ``mixture`` (..., 3K) for a mixture head."""
        return self.head.output_name

    @property
    def output_width(self) -> int:
        return self.head.width

    @property
    def graph_io(self) -> GraphIO:
        return GRAPH_IO[self.graph]

    def input_names(self) -> list[str]:
        names = [TOKEN_INPUT]
        if self.graph_io.stateful and self.uses_position:
            names.append(POSITION_INPUT)
        if self.num_classes:
            names.append(CONDITION_INPUT)
        if self.features:
            names.append(FEATURES_INPUT)
        if self.graph_io.samples:
            names.append(UNIFORMS_INPUT)
        return names + [s.input for s in self.state]

    def output_names(self) -> list[str]:
        return [TOKENS_OUTPUT if self.graph_io.samples else self.output_name] + [s.output for s in self.state]

    def to_metadata(self) -> dict[str, str]:
        state = [dict(name=s.name, input=s.input, output=s.output, shape=[BATCH_DIM, *s.shape], dtype=s.dtype,
                      init=s.init, in_place=s.in_place) for s in self.state]
        return {
            Key.FORMAT_VERSION: str(self.format_version),
            Key.FAMILY: self.family,
            Key.GRAPH: self.graph,
            Key.DATA_KIND: self.data_kind,
            Key.VOCAB_SIZE: str(self.vocab_size),
            Key.START_TOKEN: str(self.start_token),
            Key.MAX_LENGTH: str(self.max_length),
            Key.WINDOW: str(self.window),
            Key.RECEPTIVE_FIELD: str(self.receptive_field),
            Key.STEP_TOKENS: str(self.step_tokens),
            Key.DATA_NAME: self.data_name,
            Key.FEATURES: self.features.to_json() if self.features else "",
            Key.IMAGE_SHAPE: json.dumps(list(self.image_shape)),
            Key.ALPHABET: json.dumps(self.alphabet),
            Key.SAMPLE_RATE: str(self.sample_rate),
            **{Key.KIND_FIELD.format(name): value for name, value in self.kind_fields.items()},
            Key.NUM_CLASSES: str(self.num_classes),
            Key.CLASS_NAMES: json.dumps(list(self.class_names)),
            **({} if self.unconditioned is None else {Key.UNCONDITIONED: str(self.unconditioned)}),
            Key.STATE: json.dumps(state),
            Key.USES_POSITION: "1" if self.uses_position else "0",
            Key.BITS_PER_DIM: repr(float(self.bits_per_dim)),
            Key.BITS_SPLIT: self.bits_split,
            Key.OPSET: str(self.opset),
            Key.MIN_ONNXRUNTIME: self.min_onnxruntime,
            Key.PRODUCER: json.dumps(self.producer, sort_keys=True),
            Key.PRECISION: self.precision,
            Key.SOURCE_SHA256: self.source_sha256,
            Key.GATE: json.dumps(self.gate, sort_keys=True),
            Key.OUTPUT: json.dumps(self.head.spec),
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str = "the model") -> "ModelInfo":
        """Strict read: raises SchemaError naming the first missing or malformed key."""
        def get(key: str) -> str:
            if key not in meta:
                raise SchemaError(f"'{key}' does not exist in the metadata of {source}; export it with `arexport onnx`")
            return meta[key]

        def parse(key: str, convert):
            try:
                return convert(get(key))
            except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
                reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:200]
                raise SchemaError(f"metadata '{key}' of {source} is malformed ({reason}); "
                                  "re-export it with `arexport onnx`") from None

        version = parse(Key.FORMAT_VERSION, _int)
        if version not in READS_VERSIONS:
            reads = ", ".join(map(str, READS_VERSIONS))
            raise SchemaError(f"{source} has format version {version}, this arrun reads version{'s' * (len(READS_VERSIONS) > 1)} "
                              f"{reads}; re-export it with this version's arexport (or upgrade arrun)")
        vocab_size = parse(Key.VOCAB_SIZE, _ranged(1, MAX_VOCAB))
        info = cls(
            family=get(Key.FAMILY),
            graph=parse(Key.GRAPH, _choice(GRAPH_KINDS)),
            data_kind=parse(Key.DATA_KIND, _name),
            vocab_size=vocab_size,
            start_token=parse(Key.START_TOKEN, _int),
            max_length=parse(Key.MAX_LENGTH, _ranged(0, MAX_LENGTH)),
            state=parse(Key.STATE, _state_specs),
            window=parse(Key.WINDOW, _ranged(0, MAX_LENGTH)),
            receptive_field=parse(Key.RECEPTIVE_FIELD, _ranged(0, MAX_LENGTH)),
            step_tokens=parse(Key.STEP_TOKENS, _ranged(1, MAX_LENGTH)),
            data_name=get(Key.DATA_NAME),
            features=parse(Key.FEATURES, lambda s: FeatureSpec.from_json(s) if s else None),
            image_shape=parse(Key.IMAGE_SHAPE, lambda s: tuple(_json_int(v) for v in _json_list(s))),
            alphabet=parse(Key.ALPHABET, _json_str),
            sample_rate=parse(Key.SAMPLE_RATE, _int),
            kind_fields=_kind_fields(meta),
            num_classes=parse(Key.NUM_CLASSES, _ranged(0, MAX_CLASSES)),
            class_names=parse(Key.CLASS_NAMES, lambda s: tuple(_json_text(v) for v in _json_list(s))),
            unconditioned=parse(Key.UNCONDITIONED, _int) if Key.UNCONDITIONED in meta else None,
            uses_position=parse(Key.USES_POSITION, lambda s: {"0": False, "1": True}[s]),
            bits_per_dim=parse(Key.BITS_PER_DIM, float),
            bits_split=get(Key.BITS_SPLIT),
            opset=parse(Key.OPSET, _int),
            min_onnxruntime=get(Key.MIN_ONNXRUNTIME),
            producer=parse(Key.PRODUCER, _json_dict),
            precision=parse(Key.PRECISION, _choice(PRECISIONS)),
            source_sha256=get(Key.SOURCE_SHA256),
            gate=parse(Key.GATE, _json_dict),
            output=parse(Key.OUTPUT, lambda s: make_head(_json_dict(s), vocab_size).spec),
            format_version=version,
        )
        info.validate(source)
        return info

    def validate(self, source: str = "the model") -> None:
        """Cross-field checks every data kind relies on (each kind checks its own fields: ``arrun.kinds.kind_of``)."""
        problems = []
        odd = [name for name, value in self.kind_fields.items() if not isinstance(value, str)
               or not name.isidentifier() or Key.KIND_FIELD.format(name) in BUILT_IN_DATA_KEYS]
        if odd:
            problems.append(f"the data kind's own fields {odd} need string values and identifier names other than "
                            "the built-in ar.data keys")
        if self.class_names and len(self.class_names) != self.num_classes:
            problems.append("class names and number of classes disagree")
        if self.unconditioned is not None and not 0 <= self.unconditioned < self.num_classes:
            problems.append(f"the unconditioned class {self.unconditioned} is not one of the {self.num_classes} classes")
        io = self.graph_io
        if io.stateful and not self.state:
            problems.append(f"a {self.graph} graph needs a state spec")
        try:
            if io.samples and not self.head.samples_in_graph:
                problems.append(f"a {self.graph} graph samples a softmax head only")
        except ValueError as e:
            problems.append(f"no output head: {e}")
        if io.samples and self.step_tokens != 1:
            problems.append(f"a {self.graph} graph rolls one element per iteration")
        if self.features and self.features.sample_rate != self.sample_rate:
            problems.append(f"the features are analysed at {self.features.sample_rate} Hz, the audio is {self.sample_rate} Hz")
        if self.window and self.step_tokens > self.window:
            problems.append(f"a step takes up to {self.step_tokens} elements but the window holds {self.window}")
        if (self.precision == "fp32") == bool(self.source_sha256):
            problems.append(f"a {self.precision} graph {'has' if self.source_sha256 else 'lacks'} a source hash")
        if not 0 <= self.start_token <= self.vocab_size:
            problems.append(f"the start token {self.start_token} is outside 0..{self.vocab_size}")
        state_bytes = sum(math.prod(s.shape) * np.dtype(s.dtype).itemsize for s in self.state)
        if state_bytes > MAX_STATE_BYTES:
            problems.append(f"the state takes {state_bytes / 2**30:.1f} GiB per sequence, more than the "
                            f"{MAX_STATE_BYTES >> 30} GiB a runtime allocates")
        if problems:
            raise SchemaError(f"inconsistent metadata in {source}: {'; '.join(problems)}; re-export it with `arexport onnx`")


def _choice(options):
    def convert(value: str) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return value
    return convert


def _name(value: str) -> str:
    """A registry name (a data kind's): a non-empty identifier such as 'image' or 'my_kind'."""
    if not value.isidentifier():
        raise ValueError(f"{value[:40]!r} is not a name")
    return value


def _kind_fields(meta: dict[str, str]) -> dict[str, str]:
    """The ar.data.<name> keys beyond the built-in ones (names that are identifiers; others are ignored like any
    unknown key) -> {name: value}, for the data kind to read."""
    prefix = Key.KIND_FIELD.format("")
    return {key.removeprefix(prefix): meta[key] for key in sorted(meta) if key.startswith(prefix)
            and key not in BUILT_IN_DATA_KEYS and key.removeprefix(prefix).isidentifier()}


def _int(value: str) -> int:
    """A metadata integer: base-10 ASCII digits, a leading '-' if negative, nothing else (Python's int() would
    also take spaces, '+' and '_', which a reader in another language need not)."""
    if not re.fullmatch(r"-?[0-9]+", value):
        raise ValueError(f"{value!r} is not a base-10 integer")
    return int(value)


def _ranged(low: int, high: int):
    def convert(value: str) -> int:
        n = _int(value)
        if not low <= n <= high:
            raise ValueError(f"{n} is not in {low}..{high}")
        return n
    return convert


def _json(kind: type):
    """A converter: JSON text -> its value, which must be of ``kind`` (str, list or dict)."""
    def convert(value: str):
        parsed = json.loads(value)
        if not isinstance(parsed, kind):
            raise ValueError(f"not a JSON {kind.__name__}")
        return parsed
    return convert


_json_str, _json_list, _json_dict = _json(str), _json(list), _json(dict)


def _json_int(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    return value


def _json_text(value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _state_specs(value: str) -> tuple[StateSpec, ...]:
    specs = []
    for item in _json_list(value):
        if not isinstance(item, dict):
            raise ValueError("a state entry is not a JSON object")
        shape = tuple(item["shape"]) if isinstance(item["shape"], list) else ()
        if not shape or shape[0] != BATCH_DIM or not all(isinstance(d, int) and 0 < d <= MAX_STATE_BYTES for d in shape[1:]):
            raise ValueError(f"state {item['name']!r} has shape {item['shape']}, expected ['{BATCH_DIM}', positive ints...]")
        if item["dtype"] not in STATE_DTYPES:
            raise ValueError(f"state {item['name']!r} has dtype {item['dtype']!r}, expected one of {', '.join(STATE_DTYPES)}")
        if not isinstance(item["in_place"], bool):
            raise ValueError(f"state {item['name']!r} has in_place {item['in_place']!r}, expected true or false")
        spec = StateSpec(_json_text(item["name"]), shape[1:], item["dtype"], float(item["init"]), item["in_place"])
        if (item["input"], item["output"]) != (spec.input, spec.output):
            raise ValueError(f"state {spec.name!r} is bound to {item['input']!r} -> {item['output']!r}, "
                             f"expected {spec.input!r} -> {spec.output!r}")
        specs.append(spec)
    return tuple(specs)
