"""`artrain fit --init CHECKPOINT`: a new run that starts from a checkpoint's weights (its family, size and
data reading), on new data of the same kind; what cannot be fine-tuned is refused in one line."""
import json
from pathlib import Path

import pytest

from arrun.contract.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
TINY = {"size": "tiny", "batch_size": 2, "seq_len": 16, "steps": 2}


def quiet(msg):
    pass


@pytest.fixture(scope="module")
def bytes_checkpoint(tmp_path_factory) -> Path:
    from artrain.commands import fit

    folder = tmp_path_factory.mktemp("init")
    data = folder / "first.py"
    data.write_bytes((ROOT / "artrain" / "budget.py").read_bytes())
    fit(family="transformer", data=str(data), out=folder / "run", log=quiet, flags=TINY)
    return folder / "run"


def test_a_fine_tuning_run_starts_from_the_checkpoints_weights_on_new_data(bytes_checkpoint, tmp_path):
    from artrain.checkpoint import read_safetensors
    from artrain.commands import fit

    data = tmp_path / "second.py"
    data.write_bytes((ROOT / "artrain" / "train.py").read_bytes())
    # a learning rate of 1e-30 leaves every fp32 weight where it started: the run's weights are the init's
    fit(data=str(data), init=bytes_checkpoint, out=tmp_path / "tuned", log=quiet, flags={"steps": 1, "lr": 1e-30})
    start, tuned = (read_safetensors(p / "model.safetensors") for p in (bytes_checkpoint, tmp_path / "tuned"))
    assert start.keys() == tuned.keys() and all(tuned[k].equal(v) for k, v in start.items())
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    ours = json.loads((bytes_checkpoint / "config.json").read_text())
    assert config["model"] == ours["model"] and config["data"]["kind"] == "utf8"
    assert config["train"]["init"] == str(bytes_checkpoint.resolve()) and config["train"]["data"] == str(data)
    # without --init the same run starts from random weights
    fit(family="transformer", data=str(data), out=tmp_path / "fresh", log=quiet,
        flags={**TINY, "steps": 1, "lr": 1e-30})
    fresh = read_safetensors(tmp_path / "fresh" / "model.safetensors")
    assert not all(fresh[k].equal(v) for k, v in start.items())


def test_a_fine_tuning_run_keeps_its_start_when_training_only_made_it_worse(bytes_checkpoint, tmp_path, monkeypatch):
    """The --init weights are validated first (step 0) and kept when every later pass scores worse; the
    default learning rate is a tenth of the checkpoint's."""
    import artrain.train as train
    from artrain.checkpoint import read_safetensors
    from artrain.commands import fit
    from artrain.evaluate import evaluate

    passes = []

    def worse_every_time(model, split, **kw):
        passes.append(1)
        score = evaluate(model, split, **kw)
        return type(score)(**{**score.__dict__, "bits_per_dim": float(len(passes))})

    monkeypatch.setattr(train, "evaluate", worse_every_time)
    data = tmp_path / "second.py"
    data.write_bytes((ROOT / "artrain" / "train.py").read_bytes())
    record = fit(data=str(data), init=bytes_checkpoint, out=tmp_path / "tuned", log=quiet,
                 flags={"steps": 4, "eval_every": 2})
    events = [json.loads(line) for line in (tmp_path / "tuned" / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "val"] == [0, 2, 4]
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    ours = json.loads((bytes_checkpoint / "config.json").read_text())
    assert record["step"] == config["step"] == 0 and config["train"]["lr"] == ours["train"]["lr"] / 10
    start, tuned = (read_safetensors(p / "model.safetensors") for p in (bytes_checkpoint, tmp_path / "tuned"))
    assert all(tuned[k].equal(v) for k, v in start.items())
    resume = read_safetensors(tmp_path / "tuned" / "trainer.safetensors")  # a resume goes on from step 4
    assert not all(resume[f"model.{k}"].equal(v) for k, v in start.items())


@pytest.mark.parametrize("given, said", [
    (dict(family="wavenet"), "holds a transformer model, not wavenet; drop --model"),
    (dict(flags={"size": "small"}), "sets the model's size and output head; drop --size and --output"),
    (dict(resume=Path("runs/x")), "--init starts a new run from a checkpoint's weights and --resume continues"),
    (dict(data="digits"), "has vocab_size 256 where this run's data and options give 17"),
])
def test_what_cannot_be_fine_tuned_is_refused(bytes_checkpoint, tmp_path, given, said):
    from artrain.commands import fit

    args = {"data": str(ROOT / "artrain" / "train.py"), "out": tmp_path / "tuned", **given}
    with pytest.raises(UsageError, match=said.replace("(", r"\(")):
        fit(init=bytes_checkpoint, log=quiet, **args)
    assert not (tmp_path / "tuned" / "model.safetensors").exists()


def test_a_character_alphabet_checkpoint_is_refused(tmp_path):
    from artrain.commands import fit

    data = tmp_path / "t.txt"
    data.write_text("abc def ghi\n" * 400)
    fit(family="transformer", data=str(data), out=tmp_path / "chars", log=quiet,
        flags={**TINY, "text_as": "characters"})
    with pytest.raises(UsageError, match="reads text as characters of its own alphabet; start from a model trained on bytes"):
        fit(init=tmp_path / "chars", data=str(data), out=tmp_path / "tuned", log=quiet)


def test_a_graph_or_weights_file_given_as_the_checkpoint_names_its_folder(bytes_checkpoint, tmp_path):
    from artrain.commands import fit

    weights = bytes_checkpoint / "model.safetensors"
    with pytest.raises(UsageError, match=f"is a file, not a checkpoint directory; give the folder that holds its "
                                         rf"config.json \({bytes_checkpoint}\)"):
        fit(init=weights, data=str(ROOT / "artrain" / "train.py"), out=tmp_path / "tuned", log=quiet)
