"""Checkpoint -> a folder onnxruntime-genai loads and runs with its own generator loop.

    arexport genai CHECKPOINT_DIR --out FOLDER [--max-length N] [--force] [--json]

The folder holds ``model.onnx`` and ``genai_config.json`` (model type ``llama``: a decoder-only model with
the Optimum names), for a family that declares ``genai`` (``ARModel.genai``: it has ``step_growing`` and the
config fields ``layers``, ``heads``, ``d_model``). The graph is the model's ``step_growing``: inputs
``input_ids`` (B, S), ``attention_mask`` (B, P + S), ``position_ids`` (B, S), ``past_key_values.{i}.key|value``
(B, heads, P, head_dim), growing by S per call; outputs ``logits`` (B, S, V) and ``present.{i}.key|value`` (B, heads,
P + S, head_dim). The attention window is applied inside the graph by mask, so up to ``--max-length``
it gives the ring-buffer step graph's distribution; the ring buffer is what runs unbounded in constant
memory, this is the interop path. Token ids are the model's, plus one: the start symbol V is
``bos_token_id`` (feed it before the prompt) and also the end and padding id, which onnxruntime-genai
requires to be an output id: the logits have V + 1 columns, the last -inf, so it is never produced and the
distribution over the V tokens is the model's.

The graph is verified before the folder appears: prefill and one-token calls through onnxruntime against
torch ``forward`` (loud ``ParityError``, as for every export). Nothing is left behind on failure.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from artrain.checkpoint import load_checkpoint
from artrain.models import ARModel
from arrun.contract.errors import UsageError
from arrun.contract.schema import LOGITS_OUTPUT, TOKEN_INPUT

from .constants import DEFAULT_MAX_LENGTH
from .export import DEFAULT_OPSET
from .tracing import trace
from .verify import TOLERANCE, ParityError, VerifyReport, comparison

MODEL_FILE, CONFIG_FILE = "model.onnx", "genai_config.json"


@dataclass(frozen=True)
class GenaiResult:
    folder: Path
    max_length: int
    report: VerifyReport

    def to_dict(self) -> dict:
        return {"folder": str(self.folder), "max_length": self.max_length, "verification": self.report.to_dict()}


class GrowingGraph(nn.Module):
    """forward(input_ids, attention_mask, position_ids, *past (key, value per layer)) -> (logits, *present)."""

    def __init__(self, model: ARModel):
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        input_ids, attention_mask, position_ids, past = inputs[0], inputs[1], inputs[2], inputs[3:]
        pairs = list(zip(past[0::2], past[1::2]))
        logits, present = self.model.step_growing(input_ids, attention_mask, position_ids, pairs)  # (B, S, V)
        never = torch.full_like(logits[..., :1], float("-inf"))  # (B, S, 1): the start symbol as end id
        return (torch.cat([logits, never], dim=-1), *(t for kv in present for t in kv))


def export_genai(checkpoint_dir: Path | str, out: Path | str, *, max_length: int = DEFAULT_MAX_LENGTH,
                 force: bool = False) -> GenaiResult:
    """Write FOLDER/model.onnx and FOLDER/genai_config.json for the checkpoint's Transformer, verified.
    UsageError for a model without a growing KV cache (or conditioned on classes) or a bad --out;
    ExportError/ParityError when export or verification fails."""
    model, config = load_checkpoint(Path(checkpoint_dir))
    if not model.genai:
        raise UsageError(f"onnxruntime-genai runs KV-cache decoders (a family declaring genai); this checkpoint is "
                         f"a {model.family} model")
    if model.config.num_classes:
        raise UsageError("onnxruntime-genai has no input for a class condition; export an unconditional model")
    if not 1 <= max_length <= 1 << 20:
        raise UsageError(f"--max-length must be in 1..{1 << 20}, got {max_length}")
    out = Path(out)
    if out.exists() and not (force and out.is_dir()):
        raise UsageError(f"{out} already exists; pass --force to replace the folder or choose another --out")
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent} does not exist; create it or choose another --out")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        proto = _to_onnx(model)
        onnx.save_model(proto, tmp / MODEL_FILE, save_as_external_data=False)
        (tmp / CONFIG_FILE).write_text(json.dumps(genai_config(model, max_length), indent=2) + "\n")
        report = verify_growing(tmp / MODEL_FILE, model, name=str(out / MODEL_FILE))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return GenaiResult(out, max_length, report)


def genai_config(model: ARModel, max_length: int) -> dict:
    c = model.config
    start = c.vocab_size  # the start symbol: an input id only
    return {
        "model": {
            "type": "llama", "vocab_size": c.vocab_size + 1, "context_length": max_length,
            "bos_token_id": start, "eos_token_id": start, "pad_token_id": start,
            "decoder": {
                "filename": MODEL_FILE, "session_options": {"log_id": "arexport", "provider_options": []},
                "head_size": c.d_model // c.heads, "hidden_size": c.d_model, "num_attention_heads": c.heads,
                "num_key_value_heads": c.heads, "num_hidden_layers": c.layers,
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           "position_ids": "position_ids", "past_key_names": "past_key_values.%d.key",
                           "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
            },
        },
        "search": {"max_length": max_length, "min_length": 0, "do_sample": False, "num_beams": 1,
                   "num_return_sequences": 1, "past_present_share_buffer": False, "temperature": 1.0,
                   "top_k": 1, "top_p": 1.0, "repetition_penalty": 1.0, "length_penalty": 1.0,
                   "early_stopping": True, "no_repeat_ngram_size": 0, "diversity_penalty": 0.0},
    }


def _names(model: ARModel) -> tuple[list[str], list[str]]:
    """Graph inputs and outputs: the step graph's token input, the mask and positions, then the KV cache under
    the names the model's state spec gives it (past_key_values.{i}.key -> present.{i}.key)."""
    specs = model.state_spec()
    return ([TOKEN_INPUT, "attention_mask", "position_ids"] + [s.input for s in specs],
            [LOGITS_OUTPUT] + [s.output for s in specs])


def _to_onnx(model: ARModel) -> onnx.ModelProto:
    c = model.config
    B, S, P, hd = 2, 3, 4, c.d_model // c.heads
    past = [torch.zeros(B, c.heads, P, hd) for _ in range(2 * c.layers)]
    args = (torch.zeros(B, S, dtype=torch.long), torch.ones(B, P + S, dtype=torch.long),
            torch.arange(P, P + S).expand(B, S).contiguous(), *past)
    auto = torch.export.Dim.AUTO
    shapes = (({0: auto, 1: auto},) * 3 + ({0: auto, 2: auto},) * len(past),)  # one tuple: forward(*inputs)
    return trace(GrowingGraph(model), args, shapes, *_names(model), DEFAULT_OPSET, "the onnxruntime-genai graph")


def verify_growing(path: Path, model: ARModel, *, name: str, steps: int = 64, seed: int = 0) -> VerifyReport:
    """The growing-cache graph on onnxruntime vs torch ``forward``: a prompt prefilled in one call, then one
    element per call, at batch 1 and 3, over at least 2W + 1 positions (the window slides)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    c, rng = model.config, np.random.default_rng(seed)
    T, inputs, outputs = max(steps, 2 * c.window + 1), *_names(model)
    comparisons = []
    for batch in (1, 3):
        x = rng.integers(0, c.vocab_size, (batch, T), dtype=np.int64)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()  # (B, T, V)
        fed = np.concatenate([np.full((batch, 1), c.vocab_size, np.int64), x[:, :-1]], axis=1)  # (B, T)
        past = [np.zeros((batch, c.heads, 0, c.d_model // c.heads), np.float32)] * (2 * c.layers)
        got, done = [], 0
        for size in [T // 2] + [1] * (T - T // 2):  # a prefill, then one element per call
            feeds = dict(zip(inputs, [fed[:, done:done + size], np.ones((batch, done + size), np.int64),
                                      np.arange(done, done + size)[None].repeat(batch, 0), *past]))
            logits, *past = session.run(outputs, feeds)
            got.append(logits[..., :c.vocab_size])
            done += size
        comparisons.append(comparison("onnx growing vs torch forward", np.concatenate(got, axis=1), want))
    report = VerifyReport(name, model.family, "genai", TOLERANCE, tuple(comparisons))
    if not report.passed:
        worst = max(report.comparisons, key=lambda r: r.max_abs_diff)
        raise ParityError(f"{name} fails verification: {worst.line()} (tolerance {TOLERANCE:.0e}); do not ship it, "
                          "report the figures", report)
    return report
