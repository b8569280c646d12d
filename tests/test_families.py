"""Families from outside ``artrain.models``: named as ``package.module:Class`` or found through the
entry-point group ``artrain.families``, stored in a checkpoint so it loads again without retyping, and
refused in one line when the name, the module or the class is wrong."""
from __future__ import annotations

import sys
from dataclasses import asdict
from importlib.metadata import EntryPoint

import pytest
import torch

from artrain.checkpoint import DataInfo, load_checkpoint, read_config, save_checkpoint
from artrain.models import FAMILIES, build_model, checkpoint_family, config_keys, family_class

from tiny_family import Decay

SPEC = "tiny_family:Decay"
TEXT = DataInfo("tiny-text", "text", 11, alphabet="abcdefgh .\n")


def test_a_spec_imports_the_class_and_registers_it_under_its_family():
    assert family_class(SPEC) is Decay
    assert family_class("decay") is Decay
    assert "decay" in FAMILIES and "decay" in config_keys()
    assert isinstance(build_model(SPEC, {"vocab_size": 5}), Decay)


@pytest.mark.parametrize("name, says", [
    ("nosuch", "unknown model family 'nosuch'; choose one of pixelcnn"),
    ("tests/tiny_family.py:Decay", "is not package.module:Class (an installed module, not a file path)"),
    ("no_such_module:Decay", "cannot import no_such_module"),
    ("tiny_family:DecayConfig", "is not an ARModel subclass with its own `family` name"),
    ("tiny_family:DECAY", "is not an ARModel subclass"),
])
def test_bad_family_names_are_one_line_errors(name, says):
    with pytest.raises(ValueError) as e:
        family_class(name)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_spec_may_not_take_a_built_in_name(monkeypatch):
    class Impostor(Decay):
        family = "transformer"
    monkeypatch.setattr("tiny_family.Impostor", Impostor, raising=False)
    with pytest.raises(ValueError, match="has the family name 'transformer' of artrain.models.transformer"):
        family_class("tiny_family:Impostor")
    assert FAMILIES["transformer"].__module__ == "artrain.models.transformer"


def test_a_checkpoint_of_an_imported_family_loads_without_the_spec(tmp_path):
    model = build_model(SPEC, {"vocab_size": 11})
    save_checkpoint(tmp_path, model, {"format_version": 1, "family": SPEC, "model": asdict(model.config),
                                      "data": asdict(TEXT), "train": {}, "step": 0, "eval": None})
    config = read_config(tmp_path)
    assert (config["family"], config["family_import"]) == ("decay", SPEC)
    loaded, _ = load_checkpoint(tmp_path)
    assert type(loaded) is Decay
    x = torch.randint(0, 11, (2, 7))
    torch.testing.assert_close(loaded(x), model(x))


def test_a_built_in_checkpoint_stores_only_the_name(tmp_path):
    model = build_model("transformer", {"vocab_size": 11, "layers": 1, "d_model": 8, "heads": 2})
    save_checkpoint(tmp_path, model, {"format_version": 1, "family": "transformer", "model": asdict(model.config),
                                      "data": asdict(TEXT), "train": {}, "step": 0, "eval": None})
    assert "family_import" not in read_config(tmp_path)


def test_a_checkpoint_whose_import_disagrees_with_its_family_is_refused():
    with pytest.raises(ValueError, match="tiny_family:Decay is the family 'decay', not 'linrec'"):
        checkpoint_family({"family": "linrec", "family_import": SPEC})


def _entry_points(monkeypatch, **targets):
    points = [EntryPoint(name, value, "artrain.families") for name, value in targets.items()]
    monkeypatch.setattr("arrun.contract.registry.entry_points",
                        lambda group: [p for p in points if p.group == group])


def test_an_entry_point_family_is_found_by_name(monkeypatch):
    _entry_points(monkeypatch, decay2=SPEC)
    Decay2 = type("Decay2", (Decay,), {"family": "decay2", "__module__": "tiny_family"})
    monkeypatch.setattr("tiny_family.Decay", Decay2)
    assert "decay2" in FAMILIES.names()
    assert family_class("decay2") is Decay2


@pytest.mark.parametrize("value, says", [
    ("tiny_family:DecayConfig", "is <class 'tiny_family.DecayConfig'>, not an ARModel subclass"),
    (SPEC, "loads a class whose family is 'decay'; name the entry point after the class's family"),
])
def test_a_bad_entry_point_is_refused(monkeypatch, value, says):
    _entry_points(monkeypatch, wrong=value)
    with pytest.raises(ValueError) as e:
        family_class("wrong")
    assert says in str(e.value)


def test_a_spec_never_imports_a_file_from_the_working_directory(tmp_path, monkeypatch):
    """`python -m` puts the working directory first on sys.path; a spec (or a checkpoint's family_import) naming
    a module that lies there is not imported from it."""
    (tmp_path / "planted_family.py").write_text("raise SystemExit('planted code ran')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "path", ["", *sys.path])  # as `python -m` and `python -c` have it
    with pytest.raises(ValueError, match="cannot import planted_family"):
        family_class("planted_family:Model")
