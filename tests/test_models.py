"""The spine: rolling ``step`` from ``init_state`` reproduces ``forward``; and every family is causal."""
import pytest
import torch

from artrain.models import build_model

TINY = {
    "wavenet": dict(vocab_size=11, stacks=2, layers_per_stack=3, residual_channels=8, skip_channels=12),
    "pixelcnn": dict(vocab_size=11, height=5, width=4, layers=4, channels=8),
    "transformer": dict(vocab_size=11, max_len=20, layers=2, d_model=16, heads=2),
}
LENGTH = 20  # pixelcnn: 5 x 4 image


def make(family: str, num_classes: int, **overrides):
    torch.manual_seed(0)
    model = build_model(family, {**TINY[family], "num_classes": num_classes, **overrides}).eval()
    for p in model.parameters():  # random, not near-zero, so a wrong tap shows up
        torch.nn.init.normal_(p, std=0.3)
    return model


def rollout(model, x, cond):
    """Logits (B, T, V) from T steps fed with the true previous elements (teacher forcing)."""
    B, T = x.shape
    state = model.init_state(B)
    token = torch.full((B,), model.config.vocab_size)
    outs = []
    for t in range(T):
        logits, new_state = model.step(token, torch.tensor(t), state, cond)
        assert new_state.keys() == state.keys()
        assert all(new_state[k].shape == state[k].shape for k in state)
        outs.append(logits)
        state, token = new_state, x[:, t]
    return torch.stack(outs, dim=1)


@pytest.mark.parametrize("family", list(TINY))
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("num_classes", [0, 4])
def test_step_rollout_equals_forward(family, batch, num_classes):
    model = make(family, num_classes)
    g = torch.Generator().manual_seed(batch)
    x = torch.randint(0, 11, (batch, LENGTH), generator=g)
    cond = torch.randint(0, 4, (batch,), generator=g) if num_classes else None
    with torch.no_grad():
        parallel = model.sequence_logits(x, cond)
        stepped = rollout(model, x, cond)
    assert parallel.shape == (batch, LENGTH, 11)
    assert (parallel - stepped).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", list(TINY))
def test_larger_kernel_and_receptive_field(family):
    overrides = {"pixelcnn": dict(kernel_size=5, layers=3), "wavenet": dict(layers_per_stack=4),
                 "transformer": dict(layers=3)}[family]
    model = make(family, 0, **overrides)
    x = torch.randint(0, 11, (2, LENGTH), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert (model.sequence_logits(x) - rollout(model, x, None)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", list(TINY))
def test_causal(family):
    """Changing x_t changes no logits at positions <= t (they predict x_0..x_t from x_<t)."""
    model = make(family, 3)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 11, (1, LENGTH), generator=g)
    cond = torch.tensor([2])
    with torch.no_grad():
        base = model.sequence_logits(x, cond)
        for t in range(LENGTH):
            y = x.clone()
            y[0, t] = (y[0, t] + 1) % 11
            diff = (model.sequence_logits(y, cond) - base).abs().amax(dim=-1)[0]  # (T,)
            assert diff[: t + 1].max().item() == 0.0
            if t + 1 < LENGTH:
                assert diff[t + 1 :].max().item() > 0.0  # the change is seen later on
