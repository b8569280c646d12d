"""Batch-invariant int8 (issue 24): each row of an int8 variant is quantized on its own, so a row's outputs are
the same bits whatever other rows share its call, in whatever order, and whatever number of elements a call
carries (a prefill chunk or one element per call).

The tiny families' variants are built here (``variants.int8_graph``, no gate: their data are not files); the
shipped ``models/*/step.int8.onnx`` are checked once re-exported at format 6, and for the text model a
chi-squared test compares the first two tokens drawn in large batches with the batch-1 distribution.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from scipy import stats

from arexport import variants
from arexport.export import set_metadata
from arrun.contract.errors import UsageError
from arrun.runtime import Stepper
from arrun.sampling import sample_categorical, softmax
from arrun.session import Model, open_model
from conftest import exported, exported_vocoder

ROOT = Path(__file__).resolve().parents[1]
STEPS = 40
SHIPPED = sorted(ROOT.glob("models/*/step.int8.onnx"))


def int8_variant(source: Path) -> Path:
    """``source``'s int8 variant beside it, with its contract (built once per session)."""
    out = source.with_name(source.stem + ".int8.onnx")
    if not out.exists():
        info = open_model(source).info
        proto = variants.int8_graph(onnx.load(source))
        sha = hashlib.sha256(source.read_bytes()).hexdigest()
        set_metadata(proto, dataclasses.replace(info, precision="int8", source_sha256=sha))
        onnx.save(proto, out)
    return out


def tiny(name: str) -> Path:
    return int8_variant(exported_vocoder() if name == "vocoder" else exported(name, "step", 3))


def row_outputs(model: Model, batch: int, at: int, others: int, steps: int = STEPS) -> np.ndarray:
    """The outputs (steps, W) of one row that follows a fixed sequence, at row ``at`` of ``batch``; the other
    rows follow random sequences (seed ``others``), each at its own position and class, with its own frames."""
    info, rng = model.info, np.random.default_rng(others)
    steps = min(steps, info.max_length or steps)
    mine = np.random.default_rng(7).integers(0, info.vocab_size, steps)  # (steps,)
    offsets = rng.integers(0, steps, batch)  # (B,) the other rows' positions run ahead of ours
    offsets[at] = 0
    condition = rng.integers(0, info.num_classes, batch) if info.num_classes else None
    features = None
    if info.features:
        features = rng.standard_normal((batch, info.features.frames(2 * steps), info.features.n_mels)).astype(np.float32)
        features[at] = np.random.default_rng(8).standard_normal(features[at].shape)
    if condition is not None:
        condition[at] = 1
    runner = Stepper(model, batch)
    runner.reset(condition, features)
    out = []
    for t in range(steps):
        tokens = rng.integers(0, info.vocab_size, batch)  # (B,)
        tokens[at] = mine[t - 1] if t else info.start_token
        position = (offsets + t) % (info.max_length or 2 * steps)  # (B,) ours is t
        out.append(runner.step(tokens, position)[at].copy())
    return np.array(out)


def assert_rows_isolated(path: Path) -> None:
    model = open_model(path)
    alone = row_outputs(model, 1, 0, 0)
    for batch, at, others in ((4, 0, 1), (4, 0, 2), (4, 3, 1), (9, 5, 3)):
        beside = row_outputs(model, batch, at, others)
        assert np.array_equal(alone, beside), (path.name, batch, at, np.abs(alone - beside).max())


@pytest.mark.parametrize("name", ["transformer", "wavenet", "pixelcnn", "pixelrnn", "vocoder"])
def test_tiny_int8_rows_cannot_see_each_other(name):
    path = tiny(name)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" not in ops  # per-row scales, no per-tensor scan
    assert_rows_isolated(path)


PROMPTS = np.random.default_rng(0).integers(0, 11, (3, 6))  # (B, S): the tiny Transformer's V = 11, S = 6
STARTS = np.array([0, 0, 2])  # (B,) rows at their own positions


def chunked(model: Model, rows: list[int], cuts: list[int]) -> np.ndarray:
    """Outputs (len(rows), S, V) of PROMPTS[rows] from STARTS[rows], fed in calls of ``cuts`` elements."""
    runner = Stepper(model, len(rows))
    runner.reset(np.array(rows))
    done, parts = 0, []
    for n in cuts:
        parts.append(runner.chunk(PROMPTS[rows, done:done + n], STARTS[rows] + done).copy())  # (B, n, V)
        done += n
    return np.concatenate(parts, axis=1)


def test_tiny_int8_prefill_equals_one_element_per_call():
    """The Transformer takes chunks: a prompt in one call, in uneven chunks and one element per call quantize
    each element alike, so they differ only where the fp32 graph itself does: its float products (attention,
    layer norm) round differently for another number of elements, by a float32 ulp or two (up to 3.6e-7
    here; the per-tensor scale moved probabilities by up to 0.0028 on the shipped model). A row's chunk is
    the same bits alone or beside others."""
    fp32, int8 = open_model(exported("transformer", "step", 3)), open_model(tiny("transformer"))
    S = int8.info.step_tokens
    assert (S, int8.info.vocab_size) == PROMPTS.shape[1:] + (11,)
    for model in (fp32, int8):
        whole = chunked(model, [0, 1, 2], [S])
        for cuts in ([1] * S, [2, S - 2]):
            assert np.abs(whole - chunked(model, [0, 1, 2], cuts)).max() <= 1e-6
    whole = chunked(int8, [0, 1, 2], [S])
    for row in range(3):
        assert np.array_equal(chunked(int8, [row], [S])[0], whole[row])
        assert np.array_equal(chunked(int8, [row], [2, S - 2])[0], chunked(int8, [2, row, 0], [2, S - 2])[1])


def shipped(path: Path) -> Model:
    try:
        model = open_model(path)
    except UsageError as e:
        pytest.skip(f"{path.parent.name} is not re-exported at format 6 yet ({e})")
    if "DynamicQuantizeLinear" in {n.op_type for n in onnx.load(path).graph.node}:
        pytest.skip(f"{path} is the per-tensor variant; remake it with `arexport quantize` (issue 24)")
    return model


@pytest.mark.parametrize("path", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_shipped_int8_rows_cannot_see_each_other(path):
    shipped(path)
    assert_rows_isolated(path)


DRAWS, BATCH, CONTEXT = 20_000, 1_000, 64  # a row's KV ring: 1 MB; half the rows draw, half are other streams


def test_shipped_text_int8_draws_like_batch_one():
    """The first two tokens of 20,000 samples, drawn 500 at a time beside 500 other streams (64 random
    characters in, going on with random characters), against the batch-1 distribution."""
    p_values = first_tokens_p_values(shipped(ROOT / "models/pydoc-transformer/step.int8.onnx"))
    assert min(p_values) > 0.01, p_values


def first_tokens_p_values(model: Model) -> list[float]:
    """Chi-squared p-values of the first and second tokens of DRAWS samples against batch 1's distribution
    (the first token's: one call's softmax; the second's: the mixture over first tokens, one call each)."""
    info, rng = model.info, np.random.default_rng(0)
    one = Stepper(model, 1)
    one.reset()
    start = np.full((1, 1), info.start_token)
    first = softmax(one.chunk(start, np.zeros(1, np.int64))[:, 0])[0]  # (V,)
    second = np.zeros(info.vocab_size)
    for token in np.flatnonzero(first > 1e-6):
        one.reset()
        logits = one.chunk(np.array([[info.start_token, token]]), np.zeros(1, np.int64))[0, 1]  # (V,)
        second += first[token] * softmax(logits[None])[0]
    drawing, others = np.arange(BATCH // 2), np.arange(BATCH // 2, BATCH)  # (B/2,) each
    runner = Stepper(model, BATCH)
    runner.reset()
    tokens = rng.integers(0, info.vocab_size, (BATCH, CONTEXT))  # (B, CONTEXT): the drawing rows restart below
    runner.chunk(tokens, np.zeros(BATCH, np.int64))
    position = np.full(BATCH, CONTEXT)  # (B,) the other streams' positions
    drawn = np.zeros((2, info.vocab_size), np.int64)
    for _ in range(DRAWS // len(drawing)):
        runner.reset_rows(drawing)
        x = rng.integers(0, info.vocab_size, BATCH)  # (B,)
        x[drawing], position[drawing] = info.start_token, 0
        for counts in drawn:  # first token, then second
            logits = runner.step(x, position)  # (B, V)
            x[drawing] = sample_categorical(logits[drawing], rng.random(len(drawing)))
            x[others] = rng.integers(0, info.vocab_size, len(others))
            counts += np.bincount(x[drawing], minlength=info.vocab_size)
            position += 1
    return [chi_squared(counts, expected) for counts, expected in zip(drawn, (first, second))]


def chi_squared(counts: np.ndarray, expected: np.ndarray) -> float:
    """The p-value of ``counts`` against probabilities ``expected``, the cells expecting fewer than 5 pooled."""
    wanted = expected * counts.sum()
    small = wanted < 5
    observed = np.append(counts[~small], counts[small].sum())
    wanted = np.append(wanted[~small], wanted[small].sum())
    if wanted[-1] < 5:  # pooled into the largest cell instead
        observed[np.argmax(wanted[:-1])] += observed[-1]
        wanted[np.argmax(wanted[:-1])] += wanted[-1]
        observed, wanted = observed[:-1], wanted[:-1]
    return float(stats.chisquare(observed, wanted * observed.sum() / wanted.sum()).pvalue)
