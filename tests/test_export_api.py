"""Export without artrain: ``arexport.export_model`` takes a model of a family from outside the project
(``tiny_family.Decay``, never trained, no checkpoint directory) and a data description, writes the verified
self-describing graph `arexport onnx` writes, and the unchanged arrun samples and scores it."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from arexport import DataInfo, ExportResult, export_model
from arrun.commands import sample, score
from arrun.contract.errors import UsageError
from arrun.generate import SampleOptions
from arrun.session import open_model

from tiny_family import Decay, DecayConfig

ALPHABET = "abcdefgh .\n"
TEXT = DataInfo("my-text.txt", "text", len(ALPHABET), alphabet=ALPHABET)


@pytest.fixture(scope="module")
def decay():
    torch.manual_seed(0)
    model = Decay(DecayConfig(vocab_size=len(ALPHABET), dim=8))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)  # far from uniform, so a wrong tap shows
    return model.eval()


@pytest.mark.parametrize("graph", ["step", "full"])
def test_export_model_writes_a_verified_graph_arrun_runs(tmp_path, decay, graph):
    result = export_model(decay, TEXT, tmp_path / f"{graph}.onnx", graph=graph, bits_per_dim=2.5, bits_split="test")
    assert isinstance(result, ExportResult) and result.report.passed and result.report.max_abs_diff < 1e-4
    assert (result.info.family, result.info.graph, result.info.data_name) == ("decay", graph, "my-text.txt")
    model = open_model(result.path)
    assert (model.info.bits_per_dim, model.info.bits_split) == (2.5, "test")
    assert model.info.input_names()[0] == "input_ids" and model.info.uses_position is False

    text = "abc defg.\nhhh aaa bcd\n" * 3
    (tmp_path / "t.txt").write_text(text)
    got = score(result.path, tmp_path / "t.txt")
    x = torch.tensor([[ALPHABET.index(c) for c in text]])
    with torch.no_grad():
        nats = torch.nn.functional.cross_entropy(decay(x)[0], x[0], reduction="sum").item()
    assert got["n_dims"] == len(text) and got["graph"] == graph
    assert got["bits_per_dim"] == pytest.approx(nats / len(text) / math.log(2), abs=1e-4)


def test_exported_model_samples_with_the_unchanged_arrun(tmp_path, decay):
    path = export_model(decay, TEXT, tmp_path / "step.onnx").path
    runs = []
    for _ in range(2):
        stream = io.StringIO()
        sample(path, options=SampleOptions(length=40, seed=7), stream=stream)
        runs.append(stream.getvalue())
    assert runs[0] == runs[1] and len(runs[0]) >= 40 and set(runs[0]) <= set(ALPHABET)


@pytest.mark.parametrize("args, says", [
    (("not a model", TEXT), "export_model takes an ARModel"),
    (("MODEL", {"name": "x", "kind": "text"}), "takes its data as an arexport.DataInfo, not dict"),
    (("MODEL", DataInfo("x", "text", 5, alphabet="abcde")), "the data description has 5 levels but its decay model 11"),
    (("MODEL", TEXT, "chunk"), "a chunk graph rolls the one-element step of a sequence model of any length"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, decay, args, says):
    model, data, *graph = args
    with pytest.raises(UsageError) as e:
        export_model(decay if model == "MODEL" else model, data, tmp_path / "x.onnx", graph=(graph or ["step"])[0])
    assert says in str(e.value) and "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_every_graph_kind_of_the_contract_has_one_builder():
    from arexport.graphs import GRAPHS
    from arrun.contract.schema import GRAPH_IO
    assert list(GRAPHS) == list(GRAPH_IO) == ["step", "full", "chunk"]


class DecayInChunks(Decay):
    """The same family, declaring the chunk graph too: a step that ignores the position still rolls from one."""
    family = "decay_in_chunks"
    graph_kinds = ("step", "full", "chunk")


def test_a_chunk_graph_of_a_step_without_position_samples_as_the_step_graph(tmp_path, decay):
    model = DecayInChunks(decay.config)
    model.load_state_dict(decay.state_dict())
    texts = []
    for graph in ("step", "chunk"):
        path = export_model(model.eval(), TEXT, tmp_path / f"{graph}.onnx", graph=graph).path
        stream = io.StringIO()
        sample(path, options=SampleOptions(length=60, seed=3), stream=stream)
        texts.append(stream.getvalue())
    assert texts[0] == texts[1] and len(texts[0]) >= 60


def _ring(cls):
    from tiny_family import RingConfig
    torch.manual_seed(0)
    model = cls(RingConfig(vocab_size=len(ALPHABET), dim=8, span=5))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return model.eval()


def test_a_ring_written_by_one_scatter_is_declared_in_place_after_the_proof(tmp_path):
    """The scatter reads nothing but the ring it writes: the structure allows one buffer, onnxruntime's aliased
    rollout equals the separate one, so the metadata says in_place and the report says so per state."""
    from tiny_family import Ring
    result = export_model(_ring(Ring), TEXT, tmp_path / "ring.onnx")
    assert [(v.name, v.in_place, v.reason) for v in result.report.in_place] == [("ring", True, "")]
    assert open_model(result.path).info.state[0].in_place is True
    assert list(result.to_dict()["verification"]["in_place"]) == [{"name": "ring", "in_place": True, "reason": ""}]
    assert any(c.what == "onnx rows joining vs forward" and c.batch == 3 for c in result.report.comparisons)


@pytest.mark.parametrize("cls, reason", [
    ("RingReadLate", "reads in.ring without the scatter depending on it"),
    ("Decay", "out.h is a Add node, not a ScatterElements/ScatterND"),
])
def test_a_state_the_structure_does_not_allow_keeps_two_buffers_and_says_why(tmp_path, cls, reason):
    import tiny_family
    model = _ring(getattr(tiny_family, cls)) if cls.startswith("Ring") else Decay(DecayConfig(vocab_size=len(ALPHABET)))
    result = export_model(model.eval(), TEXT, tmp_path / "x.onnx")
    (verdict,) = result.report.in_place
    assert not verdict.in_place and reason in verdict.reason
    assert open_model(result.path).info.state[0].in_place is False


def test_an_aliased_rollout_that_differs_fails_loudly_and_writes_nothing(tmp_path, monkeypatch):
    """A structural candidate whose aliased rollout differs from the separate one is an error, not a quiet
    two-buffer state: the graph is not what its structure says."""
    from arexport import inplace
    from arexport.verify import ExportError
    from tiny_family import Ring
    real = inplace.roll

    def corrupted(*args, alias=frozenset(), **kwargs):
        out = real(*args, alias=alias, **kwargs)
        if alias:
            out[-1][0] = out[-1][0] + 1e-6
        return out
    monkeypatch.setattr(inplace, "roll", corrupted)
    with pytest.raises(ExportError) as e:
        export_model(_ring(Ring), TEXT, tmp_path / "ring.onnx")
    assert "fails the in-place proof" in str(e.value) and "logits at call" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_a_file_declaring_a_state_in_place_that_is_not_is_refused(tmp_path):
    import onnx

    from arexport.verify import ExportError, verify_onnx
    from tiny_family import RingReadLate
    model = _ring(RingReadLate)
    path = export_model(model, TEXT, tmp_path / "late.onnx").path
    proto = onnx.load(path)
    for prop in proto.metadata_props:
        if prop.key == "ar.state":
            prop.value = prop.value.replace('"in_place": false', '"in_place": true')
    onnx.save(proto, tmp_path / "lying.onnx")
    with pytest.raises(ExportError) as e:
        verify_onnx(tmp_path / "lying.onnx", model)
    assert "declares state 'ring' in place but it is not" in str(e.value)
