"""`arexport ort`: an exported graph in onnxruntime's ORT format. arrun samples, scores and benchmarks the .ort
exactly as the .onnx (same seed, same tokens, bit for bit), the operator config lists the operators the .ort
holds, the metadata reads the same through onnxruntime and through arexport/web/ortmeta.mjs under Node, and
every refusal is one line, exit 2, with nothing left behind."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from arexport.cli import app as arexport
from arexport.ortformat import config_path, parse_config
from arrun.cli import app as arrun
from conftest import KIND, exported, exported_vocoder

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
ORTMETA = REPO / "arexport" / "web" / "ortmeta.mjs"
SUFFIX = {"image": ".png", "audio": ".wav", "text": ".txt"}  # what `arrun sample --out` writes per data kind
TINY_GRAPHS = {  # name -> (exported .onnx, data kind)
    **{f"{family}-step": (lambda f=family: exported(f, "step"), kind) for kind, family in KIND.items()},
    "pixelrnn-step": (lambda: exported("pixelrnn", "step"), "image"),
    "wavenet-chunk": (lambda: exported("wavenet", "chunk"), "audio"),
    "vocoder-step": (lambda: exported_vocoder("step"), "audio"),
    "vocoder-chunk": (lambda: exported_vocoder("chunk"), "audio"),
}
SHIPPED = {"digits-pixelcnn/step": "image", "pydoc-transformer/step": "text", "speech-vocoder/step": "audio",
           "speech-vocoder/chunk": "audio"}


def invoke(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args])


def to_ort(source: Path, folder: Path) -> Path:
    """``source`` copied into ``folder`` and converted there by `arexport ort` -> the .ort."""
    folder.mkdir(exist_ok=True)
    onnx_copy = folder / source.name
    shutil.copyfile(source, onnx_copy)
    result = invoke(arexport, "ort", onnx_copy)
    assert result.exit_code == 0, result.stderr
    return onnx_copy.with_suffix(".ort")


def sampled(model: Path, kind: str, folder: Path, *args) -> dict[str, bytes]:
    """`arrun sample MODEL --out FOLDER/s.<kind's suffix> ARGS` -> every file it wrote, name -> bytes."""
    folder.mkdir()
    result = invoke(arrun, "sample", model, "--out", folder / f"s{SUFFIX[kind]}", *args)
    assert result.exit_code == 0, result.stderr
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def sample_args(model: Path, kind: str, folder: Path, length: int) -> list:
    """Options giving the model what it needs: a prompt (text), frames (a vocoder), a length (not images)."""
    meta = ort.InferenceSession(str(model)).get_modelmeta().custom_metadata_map
    args = ["-n", "3", "--seed", "7"] + ([] if kind == "image" else ["--length", length])
    if kind == "text":
        args += ["--prompt", "ab" if "tiny" in meta["ar.data.name"] else "def "]
    if meta["ar.features"]:
        spec = json.loads(meta["ar.features"])
        frames = np.random.default_rng(0).standard_normal((length // spec["hop"] + 2, spec["n_mels"])) * 2 - 5
        np.save(folder / "frames.npy", frames.astype(np.float32))
        args += ["--features", folder / "frames.npy"]
    return args


def assert_same_samples(onnx_path: Path, kind: str, tmp_path: Path, length: int):
    ort_path = to_ort(onnx_path, tmp_path / "model")
    args = sample_args(onnx_path, kind, tmp_path, length)
    from_onnx = sampled(onnx_path, kind, tmp_path / "onnx", *args)
    from_ort = sampled(ort_path, kind, tmp_path / "ort", *args)
    assert from_onnx and from_ort == from_onnx
    reseeded = sampled(ort_path, kind, tmp_path / "reseeded", *args[:3], "8", *args[4:])
    assert reseeded != from_ort  # the samples depend on the seed: equality above says something


@pytest.mark.parametrize("name", list(TINY_GRAPHS))
def test_ort_of_a_tiny_model_samples_what_its_onnx_samples(tmp_path, name):
    make, kind = TINY_GRAPHS[name]
    assert_same_samples(make(), kind, tmp_path, length=300)


@pytest.mark.parametrize("name", list(SHIPPED))
def test_ort_of_a_shipped_graph_samples_what_its_onnx_samples(tmp_path, name):
    assert_same_samples(MODELS / f"{name}.onnx", SHIPPED[name], tmp_path, length=400)


def test_arrun_scores_benchmarks_and_describes_an_ort_file(tmp_path):
    full = exported("transformer", "full")
    ort_full = to_ort(full, tmp_path / "model")
    (tmp_path / "notes.txt").write_text("abc def. gah\nbad cab.\n")
    scores = [json.loads(invoke(arrun, "score", m, tmp_path / "notes.txt", "--json").stdout) for m in (full, ort_full)]
    assert scores[1]["bits_per_dim"] == scores[0]["bits_per_dim"] > 0
    infos = [json.loads(invoke(arrun, "info", m, "--json").stdout) for m in (full, ort_full)]
    assert {**infos[1], "path": None} == {**infos[0], "path": None}
    ort_step = to_ort(exported("transformer", "step"), tmp_path / "step")
    bench = invoke(arrun, "bench", ort_step, "--steps", 20, "--json")
    assert bench.exit_code == 0 and json.loads(bench.stdout)["steps"] == 20, bench.stderr


def ort_operators(path: Path) -> set[tuple[str, str]]:
    """(domain, op type) of every node of an ORT file, subgraphs included, read with onnxruntime's
    generated FlatBuffers classes."""
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs import AttributeType, InferenceSession

    def walk(graph):
        for i in range(graph.NodesLength()):
            node = graph.Nodes(i)
            yield (node.Domain().decode() or "ai.onnx", node.OpType().decode())
            for a in range(node.AttributesLength()):
                attribute = node.Attributes(a)
                if attribute.Type() == AttributeType.AttributeType.GRAPH:
                    yield from walk(attribute.G())

    session = InferenceSession.InferenceSession.GetRootAs(path.read_bytes(), 0)
    return set(walk(session.Model().Graph()))


@pytest.mark.parametrize("source, needed", [(lambda: exported("pixelcnn", "step"), "If"),  # the once-per-row branch
                                            (lambda: MODELS / "pydoc-transformer/step.onnx", "ScatterND")],  # ring writes
                         ids=["tiny-pixelcnn", "pydoc-transformer"])
def test_config_lists_the_operators_of_the_ort_file(tmp_path, source, needed):
    ort_path = to_ort(source(), tmp_path)
    text = config_path(ort_path).read_text()
    assert text.startswith(f"# Generated from model/s:\n# - {ort_path.name}\n")  # no temporary path in it
    listed = {(key.split(";")[0], op) for key, ops in parse_config(text).items() for op in ops}
    assert listed == ort_operators(ort_path)
    assert ("ai.onnx", needed) in listed
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ort_path.with_suffix(".onnx").name, ort_path.name,
                                                                 config_path(ort_path).name])  # no side files


def test_ortmeta_mjs_reads_the_metadata_onnxruntime_reads(tmp_path):
    if shutil.which("node") is None:
        pytest.skip("node is not installed (the JavaScript runtime's tests need it)")
    files = [to_ort(MODELS / "speech-vocoder/chunk.onnx", tmp_path / "vocoder"),
             to_ort(exported("transformer", "step"), tmp_path / "tiny")]
    driver = ("const {readOrtMetadata} = await import(process.argv[1]); const {readFileSync} = await import('fs');"
              "const out = process.argv.slice(2).map(f => readOrtMetadata(readFileSync(f)));"
              "try { readOrtMetadata(readFileSync(process.argv[2].replace(/ort$/, 'onnx'))); out.push('read an .onnx') }"
              "catch (e) { out.push(e.message) } console.log(JSON.stringify(out));")
    run = subprocess.run(["node", "--input-type=module", "-e", driver, ORTMETA.as_uri(), *map(str, files)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    *read, refusal = json.loads(run.stdout)
    for path, meta in zip(files, read):
        assert meta == ort.InferenceSession(str(path)).get_modelmeta().custom_metadata_map
        assert meta["ar.format_version"] == "6" and len(meta) > 20
    assert "not an ORT-format model" in refusal


# ---- refusals: one line, exit 2, nothing written ----------------------------------------------------

def assert_refused(args, fragment, folder: Path):
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    result = invoke(arexport, "ort", *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before  # nothing left behind


def with_metadata(source: Path, path: Path, **changes) -> Path:
    proto = onnx.load(str(source))
    props = {p.key: p.value for p in proto.metadata_props} | changes
    del proto.metadata_props[:]
    for key, value in props.items():
        if value is not None:
            proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    return path


def test_refuses_what_is_not_a_graph_of_this_contract(tmp_path):
    source = exported("pixelcnn", "step")
    (tmp_path / "garbage.onnx").write_bytes(b"not a protobuf at all")
    assert_refused([tmp_path / "garbage.onnx"], "not a loadable ONNX model", tmp_path)
    with_metadata(source, tmp_path / "v5.onnx", **{"ar.format_version": "5"})
    assert_refused([tmp_path / "v5.onnx"], "format version 5", tmp_path)
    with_metadata(source, tmp_path / "bare.onnx", **{"ar.format_version": None})
    assert_refused([tmp_path / "bare.onnx"], "does not exist in the metadata", tmp_path)
    ort_path = to_ort(source, tmp_path / "done")
    assert_refused([ort_path], "not an .onnx file", tmp_path / "done")
    assert_refused([tmp_path / "missing.onnx"], "does not exist", tmp_path)


def test_refuses_an_existing_output_without_force(tmp_path):
    ort_path = to_ort(exported("pixelcnn", "step"), tmp_path)
    onnx_path, config = ort_path.with_suffix(".onnx"), config_path(ort_path)
    assert_refused([onnx_path], "already exists; pass --force", tmp_path)
    config.unlink()  # the config alone is taken too
    (tmp_path / "other.ort").write_bytes(b"keep")
    config_path(tmp_path / "other.ort").write_bytes(b"keep")
    assert_refused([onnx_path, "--out", tmp_path / "other.ort"], "already exists", tmp_path)
    assert_refused([onnx_path, "--out", tmp_path / "x.onnx"], "does not end in .ort", tmp_path)
    assert_refused([onnx_path, "--out", tmp_path / "none" / "x.ort"], "does not exist", tmp_path)
    ort_path.unlink()
    config_path(ort_path).write_bytes(b"keep")
    assert_refused([onnx_path], "already exists", tmp_path)  # a lone config is not overwritten either
    result = invoke(arexport, "ort", onnx_path, "--out", tmp_path / "other.ort", "--force")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "other.ort").read_bytes()[4:8] == b"ORTM"
    assert config_path(tmp_path / "other.ort").read_text().startswith("# Generated from model/s:\n# - other.ort\n")


def test_refuses_a_folder_it_cannot_write(tmp_path):
    source = exported("pixelcnn", "step")
    assert_refused([source, "--out", "/proc/ar-test.ort"], "cannot write to /proc", tmp_path)
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(readonly)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only filesystem here ({mounted.stderr.decode().strip()})")
    try:
        assert_refused([source, "--out", readonly / "m.ort"], "cannot write to", readonly)
    finally:
        subprocess.run(["umount", str(readonly)], capture_output=True)
    assert os.listdir(readonly) == []


def test_refusals_come_before_torch_and_onnx(tmp_path):
    """onnxruntime's converter imports onnx, and torch where it is installed; a refusal is said before it."""
    from test_errors_before_torch import run_cli

    stale = with_metadata(exported("pixelcnn", "step"), tmp_path / "v5.onnx", **{"ar.format_version": "5"})
    for args, fragment in [(["missing.onnx"], "missing.onnx"), ([stale.name], "format version 5"),
                           ([stale.name, "--out", "x.onnx"], "does not end in .ort")]:
        code, stderr, imported = run_cli("arexport", "ort", *args, cwd=tmp_path)
        assert (code, imported) == (2, []) and fragment in stderr, stderr
