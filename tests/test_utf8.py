"""Text as UTF-8 bytes (data kind utf8): any file trains, scores and compresses; prompts take any character;
samples are the bytes drawn, shown decoded with U+FFFD; the pystdlib corpus keeps its held-out text out of
training."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from arrun.cli import app
from arrun.kinds.utf8 import Utf8Sink
from arrun.runtime import Stepper
from arrun.session import open_model
from artrain.data import load_dataset
from conftest import make_checkpoint

UTF8_DATA = dict(name="tiny-utf8", kind="utf8", levels=256)


def cli(*args, code=0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def utf8_model(tmp_path_factory) -> Path:
    """The tiny Transformer over bytes, random weights, exported as a step graph."""
    from arexport.export import export_onnx

    folder = tmp_path_factory.mktemp("utf8")
    _, checkpoint = make_checkpoint(folder / "ckpt", "transformer", data=UTF8_DATA, vocab_size=256)
    export_onnx(checkpoint, folder / "step.onnx", graph="step", verify=False)
    return folder / "step.onnx"


def test_a_prompt_of_any_character_is_its_utf8_bytes(utf8_model, tmp_path):
    """Greedy after the prompt '$`\\té€' (a character the pydoc alphabet lacks, a tab, 2- and 3-byte ones):
    the file holds the prompt's bytes, then the step graph's argmax rollout fed exactly those bytes."""
    prompt = "$`\té€"
    record = json.loads(cli("sample", utf8_model, "--prompt", prompt, "--temperature", "0", "--length", "12",
                            "--out", tmp_path / "s.txt", "--json").stdout)
    written = (tmp_path / "s.txt").read_bytes()
    assert written[:len(prompt.encode())] == prompt.encode() and len(written) == len(prompt.encode()) + 12
    stepper = Stepper(open_model(utf8_model), 1)
    stepper.reset(None)
    token, drawn = np.full(1, 256, np.int64), []
    for t, byte in enumerate(list(prompt.encode()) + [None] * 12):
        out = stepper.step(token, np.array([t])).argmax(axis=-1)  # (1,)
        token = np.array([byte if byte is not None else out[0]], np.int64)
        if byte is None:
            drawn.append(int(out[0]))
    assert written[len(prompt.encode()):] == bytes(drawn)
    assert record["text"] == [written.decode("utf-8", "replace")] and record["tokens"] == [list(written)]


def test_any_file_scores_and_compresses_back_byte_for_byte(utf8_model, tmp_path):
    raw = bytes(range(256)) + "naïve $x\n".encode("latin-1") + b"\xef\xbb\xbf\x00"  # not UTF-8, a BOM, a NUL
    for name in ("blob.wav", "blob.png", "blob"):  # suffixes other kinds claim are still bytes here
        (tmp_path / name).write_bytes(raw)
        assert json.loads(cli("score", utf8_model, tmp_path / name, "--json").stdout)["n_dims"] == len(raw)
    record = json.loads(cli("compress", utf8_model, tmp_path / "blob", "--chunk", "64", "--json").stdout)
    assert (record["data_kind"], record["elements"]) == ("utf8", len(raw))
    cli("decompress", utf8_model, tmp_path / "blob.arz", "--out", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == raw


def test_the_stream_shows_a_split_character_once_and_invalid_bytes_as_replacement(tmp_path):
    class Plan:
        n = 1

    shown = io.StringIO()
    sink = Utf8Sink(tmp_path / "x.txt", Plan(), shown)
    tokens = np.array([list("é€".encode()) + [0xff, ord("a")]], np.int64)  # (1, 7)
    sink.begin(range(1))
    for done in (1, 3, 4, 7):  # é split after its first byte, € after its first two
        sink.update(tokens, done)
    sink.end(tokens)
    sink.commit()
    assert shown.getvalue() == "é€\ufffda\n"
    assert (tmp_path / "x.txt").read_bytes() == bytes(tokens[0].tolist())


def test_a_text_file_trains_as_bytes_by_default(tmp_path):
    f = tmp_path / "a.py"
    f.write_bytes("x = '€'\n".encode() * 20)
    data = load_dataset(str(f))
    assert (data.kind, data.levels, data.alphabet) == ("utf8", 256, None)
    assert data.whole.tokens.tolist() == list(f.read_bytes())
    assert data.train.n_dims == len(f.read_bytes()) * 9 // 10


def test_pystdlib_holds_out_pydocs_tail_and_the_named_modules():
    from artrain import textdata

    data = load_dataset("pystdlib")
    held_out = [p.read_bytes() for p in textdata.held_out_sources()]
    assert data.kind == "utf8" and len(held_out) == len(textdata.HELD_OUT_MODULES) >= 12
    assert bytes(data.test.sequence(0).astype(np.uint8)) == textdata.pydoc_held_out()
    assert len(data.val) == 1 and bytes(data.val.tokens.astype(np.uint8)) == textdata.pydoc_held_out()
    assert [bytes(data.test.sequence(i + 1).astype(np.uint8)) for i in range(len(held_out))] == held_out
    train = bytes(data.train.tokens.astype(np.uint8))
    assert textdata.pydoc_held_out()[:2000] not in train
    for source in held_out:
        assert source[-3000:] not in train  # no copy of a held-out module is trained on
    assert data.train.n_dims > 5_000_000  # the library's sources, not only pydoc's topics
