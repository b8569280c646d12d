"""The JavaScript runtime (arexport/web/runtime.mjs) under Node on onnxruntime-node against arrun: for every
shipped step and chunk graph (and the int8 variants, at one setting), the same sequences (seed and sequence index, or the same uniforms written to a
file) give exactly arrun's tokens, at batch 1 and 3, at temperature 1 and with a truncation (or another
temperature for the mixture head), prompts of different lengths included for text. Also the contract's
refusals in one line each: another format version, a missing key, a graph that disagrees with its metadata.
Skipped, with the reason, only where node or the npm packages are absent (.ci/setup installs both)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "js"))
import node_driver  # noqa: E402

ROOT = node_driver.ROOT
LENGTH = 256  # elements per sequence (an image is always its 64 pixels: 4 images a row instead)
PROMPTS = ["def ", "import numpy as np\n", "class Stream:\n    "]  # text rows start at different positions
pytestmark = pytest.mark.skipif(node_driver.missing() is not None, reason=str(node_driver.missing()))


def _settings(path: str) -> list[dict]:
    """Per graph: batch 1 and 3 at temperature 1, and a truncated draw at batch 3 whose uniforms Python writes."""
    from arrun.session import open_model
    info = open_model(ROOT / path).info
    plain = dict(temperature=1.0, topK=0, topP=1.0)
    if info.precision == "int8":  # the variants: the same loop on another graph, one setting
        return [dict(plain, batch=3)]
    if info.graph == "chunk":
        return [dict(plain, batch=1), dict(plain, batch=3), dict(plain, batch=3, uniforms=True)]
    if info.head.kind == "softmax":
        return [dict(plain, batch=1), dict(plain, batch=3), dict(plain, batch=3, topP=0.9, uniforms=True),
                dict(plain, batch=1, temperature=0.7, topK=8)]
    return [dict(plain, batch=1), dict(plain, batch=3), dict(plain, batch=3, temperature=0.8, uniforms=True),
            dict(plain, batch=1, temperature=0.0)]


GRAPHS = sorted(str(p.relative_to(ROOT)) for pattern in ("models/*/step.onnx", "models/*/chunk.onnx",
                                                         "models/*/step.int8.onnx")
                for p in ROOT.glob(pattern))


def _jobs(path: str, folder: Path) -> tuple[list[dict], list[np.ndarray | None]]:
    from arrun.session import open_model
    info = open_model(ROOT / path).info
    image = info.data_kind == "image"
    length = info.max_length if image else LENGTH
    jobs, features = [], []
    for n, s in enumerate(_settings(path)):
        samples = 4 * s["batch"] if image else 3 if info.data_kind == "text" else s["batch"]  # every prompt
        job = dict(kind="generate", model=path, samples=samples, length=length, seed=11 + n,
                   prompts=PROMPTS if info.data_kind == "text" else [], condition=3 if info.num_classes else None,
                   features=None, batch=s["batch"], temperature=s["temperature"], topK=s["topK"], topP=s["topP"],
                   uniforms=None)
        frames = None
        if info.features:  # any frames will do: both runtimes are fed the same
            F = -(-length // info.features.hop)
            frames = np.random.default_rng(n).normal(-4.0, 2.0, (F, info.features.n_mels)).astype(np.float32)
            (folder / f"features{n}.f32").write_bytes(frames.tobytes())
            job["features"] = dict(path=str(folder / f"features{n}.f32"), frames=F)
        if s.get("uniforms"):  # arrun's draws for sequence i, written for the JS runtime to take as given
            u = np.stack([np.random.default_rng([job["seed"], i]).random(length) for i in range(samples)])
            (folder / f"uniforms{n}.f64").write_bytes(u.astype(np.float64).tobytes())
            job["uniforms"] = str(folder / f"uniforms{n}.f64")
        jobs.append(job)
        features.append(frames)
    return jobs, features


@pytest.mark.parametrize("path", GRAPHS)
def test_js_runtime_samples_arrun_tokens(path, tmp_path):
    jobs, features = _jobs(path, tmp_path)
    results = node_driver.run_jobs(jobs, tmp_path)
    for job, frames, result in zip(jobs, features, results):
        expected = node_driver.arrun_tokens(job, frames)
        got = result["tokens"]
        assert len(got) == len(expected) == job["samples"]
        for i, (a, b) in enumerate(zip(expected, got)):
            differ = [t for t, (x, y) in enumerate(zip(a, b)) if x != y]
            assert len(a) == len(b) and not differ, (
                f"{path} {({k: job[k] for k in ('batch', 'temperature', 'topK', 'topP')})} sequence {i}: "
                f"{len(differ)} of {len(a)} elements differ, first at {differ[:1]}")


def test_js_runtime_draws_the_contract_streams(tmp_path):
    """Section 8.2's test vectors, drawn by the JS Stream, equal numpy's."""
    script = tmp_path / "streams.mjs"
    script.write_text(
        f"import {{ Stream }} from '{(ROOT / 'arexport/web/runtime.mjs').as_uri()}';\n"
        "for (const [s, i] of [[0n, 0n], [0n, 1n], [42n, 7n], [2n ** 40n + 3n, 2n ** 32n + 5n]]) {\n"
        "  const st = new Stream(s, i); console.log([0, 1, 2].map(() => st.random()).join(' '));\n}\n")
    import subprocess
    out = subprocess.run(["node", str(script)], capture_output=True, text=True, check=True).stdout.split("\n")
    for line, (seed, index) in zip(out, [(0, 0), (0, 1), (42, 7), (2**40 + 3, 2**32 + 5)]):
        assert [float(x) for x in line.split()] == np.random.default_rng([seed, index]).random(3).tolist()


def _metadata_refusal(tmp_path: Path, change) -> str:
    """Load a copy of the PixelCNN step graph whose metadata ``change`` edited -> the runtime's one-line error."""
    import subprocess

    import onnx
    model = onnx.load(ROOT / "models/digits-pixelcnn/step.onnx")
    change(model)
    path = tmp_path / "changed.onnx"
    onnx.save(model, path)
    script = tmp_path / "load.mjs"
    script.write_text(
        "import { createRequire } from 'node:module'; import { readFileSync } from 'node:fs';\n"
        f"import {{ loadModel }} from '{(ROOT / 'arexport/web/runtime.mjs').as_uri()}';\n"
        f"const ort = createRequire('{(node_driver.WEB / 'package.json').as_posix()}')('onnxruntime-node');\n"
        f"try {{ await loadModel(ort, readFileSync('{path.as_posix()}'), {{source: 'changed.onnx'}}); console.log('loaded'); }}\n"
        "catch (e) { console.log(`${e.name}: ${e.message}`); }\n")
    return subprocess.run(["node", str(script)], capture_output=True, text=True, check=True).stdout.strip()


def _set(key: str, value: str | None):
    def change(model):
        kept = [p for p in model.metadata_props if p.key != key]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
        if value is not None:
            model.metadata_props.add(key=key, value=value)
    return change


def test_js_runtime_refuses_what_arrun_refuses(tmp_path):
    assert _metadata_refusal(tmp_path, _set("ar.format_version", "5")) == (
        "ContractError: changed.onnx has format version 5, this runtime reads version 6; re-export it with this "
        "version's arexport (or upgrade the runtime)")
    assert _metadata_refusal(tmp_path, _set("ar.vocab_size", None)) == (
        "ContractError: 'ar.vocab_size' does not exist in the metadata of changed.onnx; export it with `arexport onnx`")
    assert _metadata_refusal(tmp_path, _set("ar.vocab_size", " 17")).startswith(
        "ContractError: metadata 'ar.vocab_size' of changed.onnx is malformed (' 17' is not a base-10 integer)")

    assert _metadata_refusal(tmp_path, _set("ar.data.kind", "video")).startswith(
        "ContractError: metadata 'ar.data.kind' of changed.onnx is not usable here (no data kind 'video'")
    assert _metadata_refusal(tmp_path, _set("ar.data.kind", "utf8")) == (
        "ContractError: inconsistent metadata in changed.onnx: a utf8 model has 256 levels, not 17; "
        "re-export it with `arexport onnx`")

    def add_input(model):
        import onnx
        model.graph.input.append(onnx.helper.make_tensor_value_info("extra", onnx.TensorProto.INT64, ["batch"]))
    assert _metadata_refusal(tmp_path, add_input) == (
        "ContractError: the graph of changed.onnx disagrees with its metadata (unexpected inputs: extra); "
        "re-export it with `arexport onnx`")
    assert _metadata_refusal(tmp_path, _set("ar.vocab_size", "18")) == (
        "ContractError: the graph of changed.onnx disagrees with its metadata (logits has shape [batch,17], "
        "expected [B,18]); re-export it with `arexport onnx`")


def test_js_runtime_samples_ort_files_as_their_onnx(tmp_path):
    """An ORT-format file (`arexport ort`): its metadata read from the FlatBuffer (ortmeta.mjs), sampled by the JS
    runtime with the same elements as arrun samples the .onnx."""
    import subprocess
    ort_file = tmp_path / "step.ort"
    subprocess.run([sys.executable, "-m", "arexport", "ort", str(ROOT / "models/digits-pixelcnn/step.onnx"),
                    "--out", str(ort_file)], check=True, capture_output=True)
    job = dict(kind="generate", model="models/digits-pixelcnn/step.onnx", samples=3, batch=3, length=64, seed=5,
               prompts=[], condition=7, features=None, temperature=1.0, topK=0, topP=1.0, uniforms=None)
    expected = node_driver.arrun_tokens(job)
    got = node_driver.run_jobs([dict(job, model=str(ort_file))], tmp_path)[0]["tokens"]
    assert got == expected


def test_js_runtime_on_onnxruntime_web_samples_arrun_tokens(tmp_path):
    """The same runtime on onnxruntime-web's wasm build (what the page runs), under Node: arrun's elements for
    an image (an If in the graph), text prompts of three lengths and a conditional WaveNet, batch 3."""
    from arrun.session import open_model
    jobs = []
    for name, length in (("digits-pixelcnn", 64), ("pydoc-transformer", 24), ("speech-wavenet", 48)):
        info = open_model(ROOT / f"models/{name}/step.onnx").info
        jobs.append(dict(kind="generate", model=f"models/{name}/step.onnx", backend="web", samples=3, batch=3,
                         length=length, seed=2, prompts=PROMPTS if info.data_kind == "text" else [],
                         condition=1 if info.num_classes else None, features=None, temperature=1.0, topK=0,
                         topP=1.0, uniforms=None))
    for job, result in zip(jobs, node_driver.run_jobs(jobs, tmp_path)):
        assert result["tokens"] == node_driver.arrun_tokens(job), job["model"]


def test_js_runtime_refuses_to_sample_a_full_graph(tmp_path):
    job = dict(kind="generate", model="models/digits-pixelcnn/full.onnx", samples=1, batch=1, length=64, seed=0,
               prompts=[], condition=0, features=None, temperature=1.0, topK=0, topP=1.0, uniforms=None)
    with pytest.raises(RuntimeError) as failure:
        node_driver.run_jobs([job], tmp_path)
    assert str(failure.value).endswith(
        "UsageError: models/digits-pixelcnn/full.onnx is a full graph and this call needs the step graph; "
        "export it with `arexport onnx CHECKPOINT_DIR --step-graph`")


def test_js_runtime_takes_no_condition_where_the_model_declares_an_unconditioned_class(tmp_path):
    """speech-wavenet declares ar.condition.unconditioned: a job without a condition samples arrun's elements of
    that class; digits-pixelcnn declares none and is refused without one, as arrun refuses."""
    from arrun.session import open_model
    unconditioned = open_model(ROOT / "models/speech-wavenet/step.onnx").info.unconditioned
    assert unconditioned is not None
    job = dict(kind="generate", model="models/speech-wavenet/step.onnx", samples=2, batch=2, length=64, seed=4,
               prompts=[], condition=None, features=None, temperature=1.0, topK=0, topP=1.0, uniforms=None)
    got = node_driver.run_jobs([job], tmp_path)[0]["tokens"]
    assert got == node_driver.arrun_tokens(dict(job, condition=unconditioned))
    refused = dict(job, model="models/digits-pixelcnn/step.onnx")
    with pytest.raises(RuntimeError) as failure:
        node_driver.run_jobs([refused], tmp_path)
    assert str(failure.value).endswith("UsageError: this model is conditioned on 10 classes; pass condition 0..9")
