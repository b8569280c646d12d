"""`artrain fit --minutes` and `--size`: the schedule planned from the measured rate fits the budget (a
simulated clock drives ``Budget`` as the training loop does; one real run on a tiny model), and every
family's size presets build with the parameter counts docs/families.md declares."""
import json
import re
import time
from pathlib import Path

import pytest

from artrain.budget import EVALUATION_SHARE, EVALUATIONS, MEASURE_STEPS, SAFETY, Budget
from artrain.options import FitOptions, resolve_options, size_parameters
from arrun.contract.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


def simulate(seconds_per_step, *, minutes=1.0, evaluation=2.0, warmup=100, start_at=3.0):
    """Drive a Budget as artrain's loop does, on a clock that advances ``seconds_per_step(step)`` per step and
    ``evaluation`` per evaluation + checkpoint -> (final options, [steps evaluated at], time the run ended,
    deadline)."""
    opts = FitOptions(family="transformer", data="text", minutes=minutes, warmup=warmup)
    budget = Budget(opts, started=0.0, step=0, val_elements=20_000, batch_elements=8192)
    now, step, evaluated = start_at, 0, []  # start_at: loading the data and building the model
    budget.start(now)
    current = budget.opts
    while step < current.steps:
        now += seconds_per_step(step)
        step += 1
        current = budget.step_done(step, now)
        if budget.evaluation_due(step):
            now += evaluation
            evaluated.append(step)
            current = budget.evaluation_done(step, evaluation, now)
    return current, evaluated, now, budget.deadline


def test_a_steady_rate_fills_the_budget_with_four_evaluations():
    opts, evaluated, ended, deadline = simulate(lambda step: 0.1)
    assert ended <= deadline
    assert ended >= deadline - SAFETY * 60 - 2 * 2.0 - 0.2  # the budget is used, not wasted
    free = deadline - 3.0 - SAFETY * 60 - EVALUATIONS * 2.0
    assert opts.steps == pytest.approx(free / 0.1, rel=0.03)
    assert len(evaluated) == EVALUATIONS and evaluated[-1] == opts.steps
    assert opts.warmup == opts.steps // 10 and opts.eval_every == -(-opts.steps // EVALUATIONS)


def test_a_rate_that_halves_is_replanned_and_still_ends_in_time():
    opts, evaluated, ended, deadline = simulate(lambda step: 0.1 if step < 100 else 0.2)
    steady, *_ = simulate(lambda step: 0.1)
    assert ended <= deadline and opts.steps < steady.steps
    assert len(evaluated) <= EVALUATIONS and evaluated[-1] == opts.steps


def test_costly_evaluations_are_fewer_and_the_last_one_stays():
    """Validation passes of 20 s in a 5-minute budget: as many as fit in EVALUATION_SHARE of it (3), the last at
    the end; the steps get the rest."""
    opts, evaluated, ended, deadline = simulate(lambda step: 0.1, minutes=5, evaluation=20.0)
    assert ended <= deadline and len(evaluated) == int(EVALUATION_SHARE * 300 / 20.0) and evaluated[-1] == opts.steps
    # 1 minute: the estimate (from the training rate) let one middle pass run; once timed, none more
    opts, evaluated, ended, deadline = simulate(lambda step: 0.1, minutes=1, evaluation=20.0)
    assert ended <= deadline and len(evaluated) == 2 and evaluated[-1] == opts.steps


def test_a_budget_shorter_than_the_first_steps_stops_after_one():
    """The first step alone eats the budget: the run stops there and still ends with its checkpoint."""
    opts, evaluated, ended, deadline = simulate(lambda step: 5.0, minutes=0.1)
    assert opts.steps == 1 and evaluated == [1]


def test_the_plan_waits_for_the_measured_steps():
    budget = Budget(FitOptions(family="transformer", minutes=10), started=0.0, step=0, val_elements=1000,
                    batch_elements=1000)
    budget.start(0.0)
    for step in range(1, MEASURE_STEPS):
        assert budget.step_done(step, step * 0.1).steps > 10**9 and not budget.evaluation_due(step)
    assert budget.step_done(MEASURE_STEPS, MEASURE_STEPS * 0.1).steps < 10**9


def test_a_real_run_writes_its_checkpoint_within_the_budget(tmp_path):
    from artrain.commands import fit

    data = tmp_path / "code.py"
    data.write_bytes((ROOT / "artrain" / "train.py").read_bytes() * 3)
    started = time.time()
    record = fit(family="transformer", data=str(data), out=tmp_path / "run", log=lambda msg: None,
                 flags={"minutes": 0.25, "size": "tiny", "batch_size": 4, "seq_len": 32})
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    last_val = max(e["time"] for e in events if e["event"] == "val")
    assert last_val - started <= 15 + 3  # the budget, and a step's worth of jitter on a loaded machine
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    best = min((e for e in events if e["event"] == "val"), key=lambda e: (e["bits_per_dim"], e["step"]))
    assert config["step"] == record["step"] == best["step"] >= MEASURE_STEPS  # the best validation is kept
    assert config["data"]["kind"] == "utf8" and config["model"]["vocab_size"] == 256


def test_a_budgeted_run_that_overfits_keeps_its_best_weights_and_resumes_from_its_last_step(tmp_path, monkeypatch):
    import artrain.train as train
    from artrain.checkpoint import read_safetensors
    from artrain.commands import fit
    from artrain.evaluate import evaluate

    data = tmp_path / "code.py"
    data.write_bytes((ROOT / "artrain" / "train.py").read_bytes())
    passes = []  # the weights at every evaluation: the validations, then the test

    def worse_every_time(model, split, **kw):  # the score rises with every pass, as when overfitting
        passes.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        score = evaluate(model, split, **kw)
        return type(score)(**{**score.__dict__, "bits_per_dim": float(len(passes))})

    monkeypatch.setattr(train, "evaluate", worse_every_time)
    record = fit(family="transformer", data=str(data), out=tmp_path / "run", log=lambda msg: None,
                 flags={"minutes": 0.4, "size": "tiny", "batch_size": 2, "seq_len": 16})
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    vals = [e for e in events if e["event"] == "val"]
    assert len(vals) == len(passes) - 1 >= 2
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["step"] == record["step"] == vals[0]["step"] < vals[-1]["step"]
    kept = read_safetensors(tmp_path / "run" / "model.safetensors")
    assert all(kept[k].equal(v) and passes[-1][k].equal(v) for k, v in passes[0].items())  # tested: the best
    resume = read_safetensors(tmp_path / "run" / "trainer.safetensors")
    assert all(resume[f"model.{k}"].equal(v) for k, v in passes[-2].items())  # a resume goes on from the last


def declared_counts() -> dict[str, dict[str, int]]:
    """docs/families.md's table of presets: | family | tiny | small | base | with counts like 133,184."""
    section = (ROOT / "docs" / "families.md").read_text().split("### Size presets", 1)[1]
    rows = re.findall(r"^\| `(\w+)` \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|", section, re.M)
    return {family: dict(zip(("tiny", "small", "base"), (int(c.replace(",", "")) for c in counts)))
            for family, *counts in rows}


def test_every_preset_builds_with_its_declared_parameter_count():
    declared = declared_counts()
    assert set(declared) == {"transformer", "wavenet", "pixelcnn", "pixelrnn"}
    built = size_parameters()
    assert {family: built[family] for family in declared} == declared


def test_size_overrides_the_kinds_defaults_and_the_config_file_overrides_size(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("x" * 100)
    assert resolve_options("transformer", str(text), None, {"size": "base"}).model["d_model"] == 256
    (tmp_path / "c.json").write_text(json.dumps({"size": "base", "model": {"d_model": 64}}))
    assert resolve_options("transformer", str(text), tmp_path / "c.json", {}).model["d_model"] == 64
    with pytest.raises(UsageError, match="--size must be one of tiny, small, base"):
        resolve_options("transformer", str(text), None, {"size": "huge"})
