"""A family that breaks the protocol, exported from Python (``export_model``): one FamilyError naming the family,
the member and what to fix, chained to the family's own exception (what AR_DEBUG=1 shows), and no file. The
command lines' side (one line, exit code, nothing left) is in the hostile table (``hostile_cases.FAMILY_CASES``)."""
from __future__ import annotations

import pytest
import torch

import broken_families
from arexport import DataInfo, export_model
from arexport.verify import ExportError
from artrain.models import FamilyError
from broken_families import ALPHABET
from tiny_family import Decay, DecayConfig

DATA = DataInfo("my-text.txt", "text", len(ALPHABET), alphabet=ALPHABET)


def _model(cls):
    torch.manual_seed(0)
    return cls(DecayConfig(vocab_size=len(ALPHABET)))


@pytest.mark.parametrize("name, said", [
    ("StepRaises", "family 'broken_step_raises' raised ValueError in step: the decay factor is not set"),
    ("StepWrongShape", "family 'broken_step_shape' step returned outputs of shape (2, 12) for inputs (2,); "
                       "expected (2, 11)"),
    ("StateNotReturned", "family 'broken_state_missing' step did not return the state 'h' its state_spec() "
                         "declares (it returned 'hidden')"),
    ("StateUndeclared", "family 'broken_state_undeclared' step returned the state 'count' its state_spec() does "
                        "not declare"),
])
@pytest.mark.parametrize("verify", [True, False])
def test_a_broken_step_is_named_before_anything_is_written(name, said, verify, tmp_path):
    with pytest.raises(FamilyError) as e:
        export_model(_model(getattr(broken_families, name)), DATA, tmp_path / "step.onnx", verify=verify)
    message = str(e.value)
    assert message.startswith(said) and "\n" not in message and e.value.exit_code == 1
    assert message.endswith(f"fix the family (broken_families:{name}; docs/families.md)")
    assert list(tmp_path.iterdir()) == []


def test_the_family_s_own_exception_is_kept_for_ar_debug(tmp_path):
    with pytest.raises(FamilyError) as e:
        export_model(_model(broken_families.StepRaises), DATA, tmp_path / "step.onnx")
    assert isinstance(e.value.__cause__, ValueError) and str(e.value.__cause__) == "the decay factor is not set"


def test_a_sound_family_passes_the_probe(tmp_path):
    """The probe refuses faults, not families: the same Decay without them exports (unverified: quick)."""
    result = export_model(_model(Decay), DATA, tmp_path / "step.onnx", verify=False)
    assert result.path.is_file() and [s.name for s in result.info.state] == ["h"]


class DataDependent(Decay):
    """A step that branches on a tensor's value: it runs eagerly (the probe passes) but cannot be traced."""
    family = "broken_data_dependent"

    def step(self, token, pos, state, cond=None):
        if token.sum().item() > 3:
            return super().step(token, pos, state, cond)
        return super().step(token, pos, state, cond)


def test_an_untraceable_step_says_why_without_colour_codes(tmp_path):
    with pytest.raises(ExportError) as e:
        export_model(_model(DataDependent), DATA, tmp_path / "step.onnx", verify=False)
    message = str(e.value)
    assert "could not export the broken_data_dependent step graph (" in message  # the innermost cause, named
    assert "data-dependent" in message and "TorchExportError" not in message
    assert "invariant 7" in message and "\x1b" not in message and "step 1/3" not in message
    assert list(tmp_path.iterdir()) == []
