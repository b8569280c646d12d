"""The family's own contract checks, in torch alone: the step rollout equals the parallel forward, the scan
equals the recurrence at a length far past its training windows, and a prediction never sees its element."""
import torch

from ardiagrec.model import DiagonalRecurrence, DiagonalRecurrenceConfig, linear_scan, scan_levels

VOCAB, CLASSES = 11, 3


def tiny(num_classes: int = 0) -> DiagonalRecurrence:
    """A random model whose weights are large enough (std 0.3) that a wrong tap shows in the logits."""
    torch.manual_seed(0)
    model = DiagonalRecurrence(DiagonalRecurrenceConfig(vocab_size=VOCAB, num_classes=num_classes, layers=2,
                                                        d_model=16, d_state=12, mlp=24)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("decay_logit"):
                p.uniform_(-2.0, 8.0)  # decays from 0.1 to A_MAX: short and long memories
            else:
                torch.nn.init.normal_(p, std=0.3)
    return model


@torch.no_grad()
def test_the_step_rollout_equals_forward():
    model = tiny(CLASSES)
    x, cond = torch.randint(0, VOCAB, (3, 300)), torch.tensor([0, 2, 1])
    state, token, rolled = model.init_state(3), torch.full((3,), VOCAB), []
    for t in range(x.shape[1]):
        logits, state = model.step(token, torch.tensor(t), state, cond)  # (3, V)
        rolled.append(logits)
        token = x[:, t]
    torch.testing.assert_close(torch.stack(rolled, dim=1), model(x, cond), atol=1e-5, rtol=0)


def test_the_scan_is_the_recurrence_far_past_the_training_length():
    a = torch.linspace(0.1, 0.9995, 8)  # (N,)
    noise = torch.randn(2, 8192, 8, generator=torch.Generator().manual_seed(0))  # (B, T, N)
    b = noise * torch.sqrt(1 - a * a)  # scaled as the model scales it: h_t of unit variance
    h, exact = torch.zeros(2, 8, dtype=torch.float64), []
    for t in range(b.shape[1]):
        h = a.double() * h + b[:, t].double()
        exact.append(h)
    scanned = linear_scan(a, b, scan_levels(b.shape[1]))
    torch.testing.assert_close(scanned.double(), torch.stack(exact, dim=1), atol=1e-5, rtol=0)


@torch.no_grad()
def test_a_prediction_depends_only_on_earlier_elements():
    model = tiny()
    x = torch.randint(0, VOCAB, (1, 40))
    changed = x.clone()
    changed[0, 25] = (x[0, 25] + 1) % VOCAB
    before, after = model(x), model(changed)
    assert torch.equal(before[:, :26], after[:, :26])  # logits up to t = 25 predict x_25 from x_<25
    assert not torch.allclose(before[:, 26:], after[:, 26:])
