"""A data kind from outside the project: a toy 'bytes' kind (any file as its bytes 0..255, samples written
as raw bytes, records of a size its own metadata field ``ar.data.record_size`` gives), registered in
``arrun.kinds.DATA_KINDS`` here, serves `arrun info`, `sample`, `score`, `compress` and `decompress` on a
model whose metadata names it, with no file of the project naming it."""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from arrun.cli import app
from arrun.contract.codecs import read_bytes
from arrun.kinds import DATA_KINDS, DataKind, Framed
from arrun.outputs import Sink, output_paths, write_files
from arrun.runtime import Stepper
from arrun.score import score
from arrun.session import open_model
from conftest import make_checkpoint


class BytesKind(DataKind):
    """Any file as its bytes; a model of 256 levels; samples as raw bytes, one file each, of one record
    (``ar.data.record_size`` bytes) by default."""
    name, unit, expected = "bytes", "byte", "any file"
    layout_format = "bytes"

    def problems(self, info):
        problems = [] if info.vocab_size == 256 else [f"a bytes model has 256 levels, not {info.vocab_size}"]
        if not info.kind_fields.get("record_size", "").isdigit():
            problems.append("a bytes model needs ar.data.record_size, a number of bytes")
        return problems

    def describe(self, info):
        return "raw bytes"

    def fields(self, info):
        return {"record_size": int(info.kind_fields["record_size"])}

    def default_length_of(self, info):
        return int(info.kind_fields["record_size"])

    def sink(self, out, info, plan, stream):
        return BytesSink(out or Path("samples.bin"), plan)

    def read(self, path, info):
        return [np.frombuffer(read_bytes(path), np.uint8).astype(np.int64)]

    def frame(self, raw, path, info):
        return Framed(np.frombuffer(raw, np.uint8).astype(np.int64), b"", b"", {"format": "bytes"})

    def unframe(self, elements, layout, info):
        return elements.astype(np.uint8).tobytes()


class BytesSink(Sink):
    def __init__(self, out, plan):
        self.paths, self.samples = output_paths(out, plan.n), []

    def end(self, tokens):
        self.samples.extend(row.astype(np.uint8).tobytes() for row in tokens)

    def commit(self):
        write_files(dict(zip(self.paths, self.samples)))
        return list(self.paths)


def cli(*args, code=0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.stderr
    return result


@pytest.fixture(scope="module")
def bytes_model(tmp_path_factory) -> Path:
    """The tiny WaveNet trained (at random) on 'bytes' data, exported as a step graph."""
    from arexport.export import export_onnx

    DATA_KINDS.register("bytes", BytesKind())  # what a plug-in's entry point does when the name is looked up
    folder = tmp_path_factory.mktemp("bytes")
    data = dict(name="tiny-bytes", kind="bytes", levels=256, kind_fields={"record_size": "12"})
    _, checkpoint = make_checkpoint(folder / "ckpt", "wavenet", data=data)
    export_onnx(checkpoint, folder / "step.onnx", graph="step", verify=False)
    return folder / "step.onnx"


def test_info_names_the_plugged_in_kind_and_its_field(bytes_model):
    record = json.loads(cli("info", bytes_model, "--json").stdout)
    assert (record["data_kind"], record["decoding"], record["bits_unit"]) == ("bytes", "raw bytes", "byte")
    assert record["record_size"] == 12


def test_default_length_is_the_kinds_field(bytes_model, tmp_path):
    cli("sample", bytes_model, "-n", "2", "--out", tmp_path / "r.bin")
    assert [len((tmp_path / f"r-00{i}.bin").read_bytes()) for i in range(2)] == [12, 12]


def test_greedy_sample_writes_the_models_bytes(bytes_model, tmp_path):
    """At temperature 0 the file holds the argmax rollout of the step graph, byte for byte."""
    cli("sample", bytes_model, "--temperature", "0", "--length", "30", "--out", tmp_path / "s.bin")
    stepper = Stepper(open_model(bytes_model), 1)
    stepper.reset(None)
    token, expected = np.full(1, stepper.info.start_token, np.int64), []
    for t in range(30):
        token = stepper.step(token, np.array([t])).argmax(axis=-1).astype(np.int64)  # (1,)
        expected.append(int(token[0]))
    assert (tmp_path / "s.bin").read_bytes() == bytes(expected)


def test_sample_is_seeded_and_score_reads_the_file(bytes_model, tmp_path):
    for name in ("a.bin", "b.bin"):
        cli("sample", bytes_model, "--seed", "7", "--length", "40", "--out", tmp_path / name)
    raw = (tmp_path / "a.bin").read_bytes()
    assert len(raw) == 40 and raw == (tmp_path / "b.bin").read_bytes()
    record = json.loads(cli("score", bytes_model, tmp_path / "a.bin", "--json").stdout)
    direct = score(open_model(bytes_model), [np.frombuffer(raw, np.uint8).astype(np.int64)], None)
    assert (record["unit"], record["n_dims"]) == ("byte", 40)
    assert record["bits_per_dim"] == pytest.approx(direct["bits_per_dim"], rel=1e-12)


def test_compress_round_trips_through_the_kinds_framing(bytes_model, tmp_path):
    original = np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes()
    (tmp_path / "x.bin").write_bytes(original)
    record = json.loads(cli("compress", bytes_model, tmp_path / "x.bin", "--chunk", "64", "--json").stdout)
    assert (record["data_kind"], record["elements"], record["chunk"]) == ("bytes", 300, 64)
    cli("decompress", bytes_model, tmp_path / "x.bin.arz", "--out", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == original


def _edited(model: Path, out: Path, key: str, value: str | None) -> Path:
    """A copy of ``model`` with metadata ``key`` set to ``value`` (None: removed)."""
    proto = onnx.load(model)
    props = [(p.key, p.value) for p in proto.metadata_props if p.key != key] + ([(key, value)] if value else [])
    onnx.helper.set_model_props(proto, dict(props))
    onnx.save(proto, out)
    return out


@pytest.mark.parametrize("key,value,words", [
    ("ar.data.kind", "nosuch", ["unknown data kind 'nosuch'", "arrun.data_kinds"]),
    ("ar.data.record_size", None, ["needs ar.data.record_size"])])
def test_unknown_kind_or_missing_field_is_one_line(bytes_model, tmp_path, key, value, words):
    result = cli("info", _edited(bytes_model, tmp_path / "m.onnx", key, value), code=2)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert all(w in result.stderr for w in words), result.stderr
