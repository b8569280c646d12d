"""docs/python-api.md's examples run as written: every ```python block in order, in one namespace, from a
temporary folder that links the shipped models (so the files the examples write land there)."""
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python-api.md"


def examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_page_shows_every_function():
    code = "".join(examples())
    for call in ("api.load(", "api.sample(", "api.score(", "api.compress(", "api.decompress("):
        assert call in code, call


def test_the_examples_run_and_say_what_they_claim(tmp_path, monkeypatch, capsys):
    (tmp_path / "models").symlink_to(ROOT / "models")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(examples()):
        exec(compile(block, f"{DOC.name} block {i + 1}", "exec"), namespace)
    shown = capsys.readouterr().out
    assert "no-such-notes.txt does not exist" in shown  # the refusal the page prints
    assert (tmp_path / "sevens.png").stat().st_size > 0 and (tmp_path / "sentence.txt.arz").stat().st_size > 0


def test_the_api_gives_what_the_commands_give(tmp_path):
    """score and compress of a str equal the command workers on the same text in a file."""
    from arrun import api, commands
    from arrun.compress.workers import compress as compress_file

    text = "The while statement is used for repeated execution.\n"
    (tmp_path / "t.txt").write_text(text)
    step = ROOT / "models/pydoc-transformer/step.onnx"
    assert api.score(step, text)["bits_per_dim"] == commands.score(step, tmp_path / "t.txt")["bits_per_dim"]
    record = compress_file(step, tmp_path / "t.txt")
    blob = api.compress(step, text.encode())
    assert len(blob) == record["output_bytes"]
    assert api.decompress(step, (tmp_path / "t.txt.arz").read_bytes()) == text.encode()
    tokens = api.sample(step, prompt="x", length=5, seed=3)["tokens"][0]
    assert np.array_equal(tokens, commands.sample(step, options=commands.SampleOptions(
        prompt="x", length=5, seed=3))["tokens"][0])
