"""The spine: rolling ``step`` from ``init_state`` reproduces ``forward``; and every family is causal."""
import pytest
import torch

from artrain.models import FAMILIES, build_model
from conftest import LENGTH, TINY


def make(family: str, num_classes: int, **overrides):
    torch.manual_seed(0)
    model = build_model(family, {**TINY[family][0], "num_classes": num_classes, **overrides}).eval()
    for p in model.parameters():  # random, not near-zero, so a wrong tap shows up
        torch.nn.init.normal_(p, std=0.3)
    return model


def rollout(model, x, cond):
    """Logits (B, T, V) from T steps fed with the true previous elements (teacher forcing)."""
    B, T = x.shape
    state = model.init_state(B)
    token = torch.full((B,), model.config.vocab_size)
    outs = []
    chunked = model.step_tokens > 1  # the step takes (B, s) and returns (B, s, V): feed s = 1
    for t in range(T):
        logits, new_state = model.step(token[:, None] if chunked else token, torch.full((B,), t), state, cond)
        logits = logits[:, 0] if chunked else logits
        assert new_state.keys() == state.keys()
        assert all(new_state[k].shape == state[k].shape and new_state[k].dtype == state[k].dtype for k in state)
        outs.append(logits)
        state, token = new_state, x[:, t]
    return torch.stack(outs, dim=1)


def test_every_built_in_family_has_a_tiny_config():
    built_in = {name for name in FAMILIES if FAMILIES[name].__module__.startswith("artrain.models.")}  # not plug-ins
    assert set(TINY) == built_in


@pytest.mark.parametrize("family", list(TINY))
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("num_classes", [0, 4])
def test_step_rollout_equals_forward(family, batch, num_classes):
    model = make(family, num_classes)
    V = model.config.vocab_size
    g = torch.Generator().manual_seed(batch)
    x = torch.randint(0, V, (batch, LENGTH), generator=g)
    cond = torch.randint(0, 4, (batch,), generator=g) if num_classes else None
    with torch.no_grad():
        parallel = model.sequence_logits(x, cond)
        stepped = rollout(model, x, cond)
    assert parallel.shape == (batch, LENGTH, V)
    assert (parallel - stepped).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", list(TINY))
def test_initial_state_is_what_the_spec_declares(family):
    model = make(family, 0)
    state = model.init_state(2)
    assert list(state) == [s.name for s in model.state_spec()]
    for spec in model.state_spec():
        assert state[spec.name].shape == (2, *spec.shape) and str(state[spec.name].dtype) == f"torch.{spec.dtype}"
        assert (state[spec.name] == spec.init).all()


@pytest.mark.parametrize("family", list(TINY))
def test_larger_kernel_and_receptive_field(family):
    config = TINY[family][0]
    overrides = {key: value for key, value in (("kernel_size", 5), ("layers_per_stack", 4)) if key in
                 model_fields(family)} or {"layers": config.get("layers", 2) + 1}
    model = make(family, 0, **overrides)
    x = torch.randint(0, model.config.vocab_size, (2, LENGTH), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert (model.sequence_logits(x) - rollout(model, x, None)).abs().max().item() <= 1e-5


def model_fields(family: str) -> set[str]:
    from dataclasses import fields
    return {f.name for f in fields(FAMILIES[family].Config)}


@pytest.mark.parametrize("family", list(TINY))
def test_causal(family):
    """Changing x_t changes no logits at positions <= t (they predict x_0..x_t from x_<t)."""
    model = make(family, 3)
    V = model.config.vocab_size
    x = torch.randint(0, V, (1, LENGTH), generator=torch.Generator().manual_seed(1))
    cond = torch.tensor([2])
    with torch.no_grad():
        base = model.sequence_logits(x, cond)
        for t in range(LENGTH):
            y = x.clone()
            y[0, t] = (y[0, t] + 1) % V
            diff = (model.sequence_logits(y, cond) - base).abs().amax(dim=-1)[0]  # (T,)
            assert diff[: t + 1].max().item() == 0.0
            if t + 1 < LENGTH:
                assert diff[t + 1 :].max().item() > 0.0  # the change is seen later on
