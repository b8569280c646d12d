"""arrun's samplers: property tests (hypothesis) on pure numpy functions; no model needed."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from arrun.contract.errors import UsageError
from arrun.sampling import (SamplingOptions, sample, sample_argmax, sample_categorical, sample_rngs, softmax,
                            top_k_filter, top_p_filter)

# Logits drawn from a few integer levels so that ties are common.
tied = st.integers(1, 6).flatmap(lambda b: st.integers(2, 12).flatmap(
    lambda v: arrays(np.float32, (b, v), elements=st.integers(-3, 3).map(float))))
smooth = st.integers(1, 6).flatmap(lambda b: st.integers(2, 12).flatmap(
    lambda v: arrays(np.float32, (b, v), elements=st.floats(-8, 8, width=32))))
logits_any = st.one_of(tied, smooth)


@settings(max_examples=200, deadline=None)
@given(logits_any, st.integers(1, 14))
def test_top_k_keeps_exactly_k_of_the_largest(logits, k):
    out = top_k_filter(logits, k)
    kept = np.isfinite(out)
    assert (kept.sum(axis=1) == min(k, logits.shape[1])).all()
    assert (out[kept] == logits[kept]).all()
    for row, keep in zip(logits, kept):
        if not keep.all():  # every kept logit is >= every dropped one (ties may fall either side)
            assert row[keep].min() >= row[~keep].max()


@settings(max_examples=200, deadline=None)
@given(logits_any, st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_set_with_mass_p(logits, p):
    probs = softmax(logits)
    kept = np.isfinite(top_p_filter(logits, p))
    for row, keep in zip(probs, kept):
        mass = row[keep].sum()
        assert mass >= p * (1 - 1e-9)
        assert row[keep].min() >= row[~keep].max(initial=0)  # the most likely ones
        # smallest: without its least likely member the set falls short of p
        assert mass - row[keep].min() < p * (1 + 1e-9) or keep.sum() == 1


@settings(max_examples=100, deadline=None)
@given(smooth)
def test_temperature_to_zero_is_argmax(logits):
    top2 = np.sort(logits, axis=1)[:, -2:]
    gap = top2[:, 1] - top2[:, 0]
    # With a unique maximum, a temperature well below the gap puts (almost) all mass on it.
    rows = gap > 1e-3
    cold = SamplingOptions(temperature=float(gap[rows].min()) / 100 if rows.any() else 1e-5)
    got = sample(logits, cold, sample_rngs(0, range(len(logits))))
    greedy = sample(logits, SamplingOptions(temperature=0), [])
    assert (greedy == sample_argmax(logits)).all()
    assert (got[rows] == greedy[rows]).all()


@settings(max_examples=200, deadline=None)
@given(logits_any, st.integers(0, 14), st.floats(0.05, 1.0), st.floats(0, 1, exclude_max=True))
def test_draws_never_pick_a_filtered_element(logits, k, p, u):
    x = top_p_filter(top_k_filter(logits, k), p)
    token = sample_categorical(x, np.full(len(x), u))
    assert np.isfinite(x[np.arange(len(x)), token]).all()


def test_categorical_is_the_inverse_cdf():
    logits = np.log(np.array([[0.1, 0.0, 0.2, 0.7]], np.float32) + 1e-30)
    edges = {0.0: 0, 0.0999: 0, 0.1001: 2, 0.2999: 2, 0.3001: 3, 0.999999: 3}
    for u, want in edges.items():
        assert sample_categorical(logits, np.array([u]))[0] == want


def test_each_sample_has_its_own_generator():
    logits = np.zeros((4, 50), np.float32)
    together = sample(logits, SamplingOptions(), sample_rngs(7, range(4)))
    alone = [sample(logits[i:i + 1], SamplingOptions(), sample_rngs(7, [i]))[0] for i in range(4)]
    assert together.tolist() == alone
    assert sample(logits, SamplingOptions(), sample_rngs(8, range(4))).tolist() != together.tolist()


@pytest.mark.parametrize("options", [SamplingOptions(temperature=-0.1), SamplingOptions(temperature=float("nan")),
                                     SamplingOptions(top_k=-1), SamplingOptions(top_p=0.0),
                                     SamplingOptions(top_p=1.5)])
def test_bad_options_are_usage_errors(options):
    with pytest.raises(UsageError):
        options.validate()
