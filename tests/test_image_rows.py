"""The image families with a position per row: a batch whose rows start at different steps gives each row
what ``forward`` gives it, and the exported step writes its one-slot states with one ScatterND (or
ScatterElements) on the state input, after every read of it (the structure arexport's in-place proof
starts from)."""
from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest
import torch

from arexport import inplace

from artrain.models import build_model
from conftest import LENGTH, TINY

IMAGES = ("pixelcnn", "pixelrnn")
OFFSETS = (0, 3, 4, 9, 1, 6)  # row b starts its image at step OFFSETS[b]: columns 0, 3, 0, 1, 1, 2 of a 4-wide image
IN_PLACE = {"pixelcnn": ("row",), "pixelrnn": ("h", "c")}  # the states written one slot per step


def make(family: str, num_classes: int, mixtures: int):
    torch.manual_seed(0)
    config = {**TINY[family][0], "num_classes": num_classes, "mixtures": mixtures}
    model = build_model(family, config).eval()
    for p in model.parameters():  # random, not near-zero, so a wrong tap shows up
        torch.nn.init.normal_(p, std=0.3)
    return model


def staggered_rollout(step, init_state, x: torch.Tensor, cond, offsets) -> torch.Tensor:
    """Each row b runs images back to back, the first starting at step offsets[b] - T (so it is mid-image when
    the batch starts) and the one compared starting at step offsets[b]; its state is reset to the initial state
    whenever it starts an image. -> the compared image's outputs (B, T, W)."""
    B, T = x.shape
    start = x.new_tensor(offsets)  # (B,)
    state = init_state(B)
    outs = torch.zeros(B, T, 0)
    for t in range(max(offsets) + T):
        pos = (t - start) % T  # (B,)
        fresh = init_state(B)
        state = {k: torch.where((pos == 0).view(B, *[1] * (v.dim() - 1)), fresh[k], v) for k, v in state.items()}
        previous = x.gather(1, ((pos - 1) % T)[:, None])[:, 0]  # (B,): the image's pixel pos - 1
        token = torch.where(pos == 0, x.new_full((B,), 10_000), previous)  # garbage at pos 0: the step ignores it
        logits, state = step(token, pos, state, cond)
        if outs.shape[-1] == 0:
            outs = torch.full((B, T, logits.shape[-1]), float("nan"))
        mine = (t >= start) & (t < start + T)  # (B,): the compared image
        rows = mine.nonzero()[:, 0]
        outs[rows, pos[rows]] = logits[rows]
    return outs


@pytest.mark.parametrize("family", IMAGES)
@pytest.mark.parametrize("num_classes, mixtures", [(0, 0), (4, 0), (4, 2), (0, 2)])
def test_rows_at_different_positions_equal_forward(family, num_classes, mixtures):
    model = make(family, num_classes, mixtures)
    B = len(OFFSETS)
    g = torch.Generator().manual_seed(num_classes + mixtures)
    x = torch.randint(0, model.config.vocab_size, (B, LENGTH), generator=g)
    cond = torch.randint(0, num_classes, (B,), generator=g) if num_classes else None
    with torch.no_grad():
        parallel = model.sequence_logits(x, cond)
        stepped = staggered_rollout(model.step, model.init_state, x, cond, OFFSETS)
    assert (parallel - stepped).abs().max().item() <= 1e-5


class Step(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.names = model, [s.name for s in model.state_spec()]

    def forward(self, *inputs):  # token, pos, cond, *state
        token, pos, cond, *state = inputs
        logits, new = self.model.step(token, pos, dict(zip(self.names, state)), cond)
        return (logits, *(new[n] for n in self.names))


def export_step(model) -> onnx.ModelProto:
    from arexport.tracing import trace
    names = [s.name for s in model.state_spec()]
    B, batch = 3, torch.export.Dim("batch", min=1, max=4096)
    state = model.init_state(B)
    args = (torch.zeros(B, dtype=torch.long), torch.zeros(B, dtype=torch.long), torch.zeros(B, dtype=torch.long),
            *state.values())
    return trace(Step(model), args, (({0: batch},) * len(args),), ["input_ids", "position", "condition",
                 *(f"in.{n}" for n in names)], ["logits", *(f"out.{n}" for n in names)], 18, "the step")


@pytest.mark.parametrize("family", IMAGES)
def test_the_exported_step_writes_its_rings_in_place_and_equals_forward_per_row(family):
    model = make(family, 4, 0)
    proto = export_step(model)
    for name in IN_PLACE[family]:
        assert inplace.state_structure(proto.graph, name) == (True, ""), name
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [s.name for s in model.state_spec()]

    def step(token, pos, state, cond):
        feeds = {"input_ids": token.numpy(), "position": pos.numpy(), "condition": cond.numpy(),
                 **{f"in.{n}": state[n].numpy() for n in names}}
        logits, *new = session.run(None, feeds)
        return torch.from_numpy(logits), dict(zip(names, map(torch.from_numpy, new)))

    B = len(OFFSETS)
    g = torch.Generator().manual_seed(7)
    x = torch.randint(0, model.config.vocab_size, (B, LENGTH), generator=g)
    cond = torch.randint(0, 4, (B,), generator=g)
    with torch.no_grad():
        parallel = model.sequence_logits(x, cond)
    stepped = staggered_rollout(step, model.init_state, x, cond, OFFSETS)
    assert (parallel - stepped).abs().max().item() <= 1e-5
