"""The small things a newcomer met (issue 27, item 5), each through the CLI on the tiny models: --out FILE writes
the file only, a text model refuses a suffix of another kind, several text samples on one stream are told apart,
`arrun info FOLDER` lists its graphs and the commands that take each, a missing input says "does not exist"."""
import json
import shutil
import wave

import numpy as np
import pytest
from typer.testing import CliRunner

from arrun.cli import app
from conftest import KIND, SAMPLE_RATE, exported, exported_vocoder


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_out_file_does_not_stream_to_stdout(tmp_path):
    result = invoke("sample", exported(KIND["text"]), "-n", 3, "--length", 30, "--out", tmp_path / "t.txt")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert [len((tmp_path / f"t-00{i}.txt").read_text()) for i in range(3)] == [30, 30, 30]


@pytest.mark.parametrize("name,kind", [("x.png", "image"), ("x.wav", "audio"), ("x.NPY", "image")])
def test_text_model_refuses_another_kinds_suffix(tmp_path, name, kind):
    result = invoke("sample", exported(KIND["text"]), "--length", 5, "--out", tmp_path / name)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert f"is for {kind} data and this model writes text; give a name ending in .txt" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("batch", [1, 3], ids=["streamed", "batched"])
def test_several_text_samples_are_told_apart(batch):
    """Each of several samples on stdout follows a line '--- sample i of n ---' (the tiny alphabet has no '-',
    and a sample may hold blank lines); one sample stands alone."""
    model = exported(KIND["text"])
    texts = json.loads(invoke("sample", model, "-n", 3, "--length", 40, "--json").stdout)["text"]
    result = invoke("sample", model, "-n", 3, "--length", 40, "--batch-size", batch)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "".join(f"--- sample {i + 1} of 3 ---\n{text}\n" for i, text in enumerate(texts))
    one = invoke("sample", model, "--length", 40)
    assert one.stdout == texts[0] + "\n"


def test_info_folder_lists_graphs_and_their_commands(tmp_path):
    for name, path in [("step.onnx", exported(KIND["text"])), ("full.onnx", exported(KIND["text"], "full")),
                       ("chunk.onnx", exported_vocoder("chunk"))]:
        shutil.copy(path, tmp_path / name)
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    (tmp_path / "notes.txt").write_text("not listed")
    record = json.loads(invoke("info", tmp_path, "--json").stdout)
    rows = {g["file"]: (g["graph"], g["commands"]) for g in record["graphs"]}
    assert rows == {"broken.onnx": (None, []), "chunk.onnx": ("chunk", ["sample", "bench", "vocode"]),
                    "full.onnx": ("full", ["score"]),
                    "step.onnx": ("step", ["sample", "score", "bench", "compress", "decompress"])}
    assert record["graphs"][0]["error"]
    table = invoke("info", tmp_path).stdout.splitlines()
    assert table[0].split() == ["file", "graph", "precision", "commands"] and len(table) == 5
    assert table[4].split() == ["step.onnx", "step", "fp32", "sample,", "score,", "bench,", "compress,", "decompress"]
    refused = invoke("sample", tmp_path)  # a command that takes one graph points to the listing
    assert refused.exit_code == 2 and f"`arrun info {tmp_path}` lists them" in refused.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("info", empty)
    assert result.exit_code == 2 and "holds no .onnx or .ort files" in result.stderr


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_missing_input_does_not_exist(tmp_path, command):
    missing = tmp_path / ("gone.arz" if command == "decompress" else "gone.txt")
    result = invoke(command, exported(KIND["text"]), missing)
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {missing} does not exist; give ")
    assert result.stderr.count("\n") == 1


def test_wavenet_declares_its_receptive_field(tmp_path):
    """The exported WaveNet says how far back it sees (kernel 2, dilations 1, 2, 4: 1 + 2 + 4 past inputs and
    its own, R = 8), and its full graph, scored in overlapping pieces of R, gives what the step rollout gives;
    the vocoder, scored whole, says 0."""
    full = exported(KIND["audio"], "full")
    assert json.loads(invoke("info", full, "--json").stdout)["receptive_field"] == 8
    assert json.loads(invoke("info", exported_vocoder(), "--json").stdout)["receptive_field"] == 0
    samples = np.random.default_rng(3).integers(-20000, 20000, 100).astype("<i2")
    path = tmp_path / "a.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(samples.tobytes())
    by_graph = {g: json.loads(invoke("score", exported(KIND["audio"], g), path, "--json").stdout)
                for g in ("full", "step")}
    assert (by_graph["full"]["n_chunks"], by_graph["step"]["n_chunks"]) == (13, 1)  # ceil(100 / 8) pieces
    assert by_graph["full"]["bits_per_dim"] == pytest.approx(by_graph["step"]["bits_per_dim"], rel=1e-5)
