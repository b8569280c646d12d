"""Run a family's own code once, eagerly, before it is traced: what it raises, and outputs or states that
disagree with what it declares, become one ``FamilyError`` line naming the family and what to fix.

Traced, the same faults surface as the exporter's own errors (a TorchExportError whose first line says
nothing of the cause) or not at all: a state the step returns but never declares is silently dropped from the
graph. Eagerly they are plain Python: the step of ``family 'x'`` raised, returned (2, 12) outputs where its
head is 11 wide, left out its declared state 'h', or returned the undeclared 'count'.

Example inputs are the exporter's (``graphs.EXAMPLE_BATCH`` rows at positions 0.., the start symbol, class 0,
zero feature frames, the declared initial state), so a family that passes here is traced on what it saw.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from artrain.models import ARModel, FamilyError, check_outputs, family_advice, family_call
from arrun.contract.schema import GRAPH_IO, ModelInfo

BATCH = 2    # as graphs.EXAMPLE_BATCH
LENGTH = 3   # a full graph's example length (when the model does not fix it)


def check_family(model: ARModel, info: ModelInfo) -> None:
    """The ``info.graph`` graph's member of ``model`` (step for step and chunk graphs, sequence_logits for the
    full graph) run once on example inputs; FamilyError when it raises or returns what it does not declare."""
    with torch.no_grad():
        if GRAPH_IO[info.graph].stateful:
            _check_step(model, info)
        else:
            _check_full(model, info)


def _check_step(model: ARModel, info: ModelInfo) -> None:
    B, family = BATCH, model.family
    tokens = (B, min(2, info.step_tokens)) if info.step_tokens > 1 else (B,)
    token = torch.full(tokens, info.start_token, dtype=torch.long)  # (B,) or (B, s)
    pos = torch.arange(B, dtype=torch.long)  # (B,) rows at their own positions
    cond = torch.zeros(B, dtype=torch.long) if info.num_classes else None
    local = {}
    if info.features:
        with family_call(model, "frame_vectors"):
            local["features"] = model.frame_vectors(torch.zeros(B, info.features.n_mels))  # (B, D)
    with family_call(model, "state_spec"):
        state = model.init_state(B)
    with family_call(model, "step"):
        returned = model.step(token, pos, dict(state), cond, **local)
    if not (isinstance(returned, tuple) and len(returned) == 2 and isinstance(returned[1], Mapping)):
        raise FamilyError(f"family {family!r} step returned {_describe(returned)}, not (outputs, new_state); return "
                          f"a tensor and a dict of the states; {family_advice(model)}")
    check_outputs(model, "step", returned[0], tuple(token.shape))  # (B, W), or (B, s, W) a prefill
    new_state = returned[1]
    declared = {s.name: s for s in info.state}
    missing = [name for name in declared if name not in new_state]
    extra = [str(name) for name in new_state if name not in declared]
    if missing:
        raise FamilyError(f"family {family!r} step did not return the state {', '.join(map(repr, missing))} its "
                          f"state_spec() declares (it returned {_names(new_state)}); return every declared state "
                          f"under its name; {family_advice(model)}")
    if extra:
        raise FamilyError(f"family {family!r} step returned the state {', '.join(map(repr, extra))} its state_spec() "
                          f"does not declare; declare it in state_spec() or stop returning it; {family_advice(model)}")
    for name, spec in declared.items():
        _check_state(model, name, new_state[name], (B, *spec.shape), spec.dtype)


def _check_full(model: ARModel, info: ModelInfo) -> None:
    B, T = BATCH, model.fixed_length or min(LENGTH, info.max_length or LENGTH)
    x = torch.zeros(B, T, dtype=torch.long)  # (B, T)
    cond = torch.zeros(B, dtype=torch.long) if info.num_classes else None
    local = {"features": torch.zeros(B, info.features.frames(T), info.features.n_mels)} if info.features else {}
    with family_call(model, "sequence_logits"):
        check_outputs(model, "sequence_logits", model.sequence_logits(x, cond, **local), (B, T))  # (B, T, W)


def _check_state(model: ARModel, name: str, value, shape: tuple, dtype: str) -> None:
    """The new state ``name`` must keep the shape (B, ...) and dtype ``state_spec()`` declares."""
    got = f"{tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}" if isinstance(value, torch.Tensor) \
        else _describe(value)
    if got != f"{shape} {dtype}":
        raise FamilyError(f"family {model.family!r} step returned the state {name!r} as {got} at batch {shape[0]}; "
                          f"its state_spec() declares {shape} {dtype}; keep each state's shape and dtype; "
                          f"{family_advice(model)}")


def _describe(value) -> str:
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    return f"a {type(value).__name__}"


def _names(state: Mapping) -> str:
    return ", ".join(map(repr, map(str, state))) or "no state"
