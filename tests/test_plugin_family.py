"""A model family from outside the project goes through the unchanged command lines: the example package
``examples/ardiagrec`` (a stack of diagonal linear recurrences, its entry point ``diagrec`` in the group
``artrain.families``) is installed into a folder of its own, put on PYTHONPATH, fit for a few steps on the
built-in text, exported as step and full graphs verified against torch, sampled and scored with arrun.
No file of the project but this one names it; without the folder on the path the family is unknown.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ardiagrec"
FAMILY, SPEC = "diagrec", "ardiagrec.model:DiagonalRecurrence"
TINY = {"model": {"layers": 1, "d_model": 16, "d_state": 16, "mlp": 32}}
FAST = ["--data", "text", "--batch-size", "4", "--seq-len", "64"]
PROMPT, LENGTH = "def ", 40


def cli(tool: str, *args, site: Path | None, cwd: Path, expect: int = 0) -> subprocess.CompletedProcess:
    """``python -m tool args`` with ``site`` as the only PYTHONPATH (none when None); asserts the exit code."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    result = subprocess.run([sys.executable, "-m", tool, *map(str, args)], capture_output=True, text=True,
                            cwd=cwd, env=env, timeout=300)
    assert result.returncode == expect, f"{tool} {' '.join(map(str, args))}: exit {result.returncode}\n{result.stderr}"
    return result


def cli_json(tool: str, *args, site: Path, cwd: Path) -> dict:
    return json.loads(cli(tool, *args, "--json", site=site, cwd=cwd).stdout)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("plugin")


@pytest.fixture(scope="module")
def site(work) -> Path:
    """The example installed offline (no index, no build isolation) from a copy, so the build leaves nothing
    in the repository -> the folder it is installed in."""
    source = shutil.copytree(EXAMPLE, work / "source", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
                    "--target", target, source], check=True, capture_output=True, timeout=300)
    return target


@pytest.fixture(scope="module")
def tiny(work) -> Path:
    """A --config file of a one-layer model."""
    (work / "tiny.json").write_text(json.dumps(TINY))
    return work / "tiny.json"


@pytest.fixture(scope="module")
def trained(work, site, tiny) -> tuple[Path, dict]:
    """`artrain fit --model diagrec`, found by its entry point -> (checkpoint folder, the fit record)."""
    record = cli_json("artrain", "fit", "--model", FAMILY, *FAST, "--steps", 3, "--config", tiny,
                      "--out", work / "run", site=site, cwd=work)
    return work / "run", record


@pytest.fixture(scope="module")
def graphs(work, site, trained) -> dict[str, dict]:
    """The step and full graphs exported by `arexport onnx` -> graph -> its --json record."""
    with ThreadPoolExecutor(2) as pool:  # two processes: the exports are independent
        exports = {graph: pool.submit(cli_json, "arexport", "onnx", trained[0], f"--{graph}-graph", site=site, cwd=work)
                   for graph in ("step", "full")}
        return {graph: export.result() for graph, export in exports.items()}


@pytest.fixture(scope="module")
def held_out(work) -> Path:
    """2,000 characters of the built-in text's held-out tail, as a file of the user's."""
    from artrain.data import load_dataset

    data = load_dataset("text")
    path = work / "held.txt"
    path.write_text("".join(data.alphabet[t] for t in data.test.tokens[:2000]), encoding="utf-8")
    return path


def test_fit_finds_the_family_through_its_entry_point(trained):
    run, record = trained
    config = json.loads((run / "config.json").read_text())
    assert (record["family"], record["step"], config["family"], config["family_import"]) == (FAMILY, 3, FAMILY, SPEC)
    assert math.isfinite(record["test"]["bits_per_dim"]) and record["test"]["n_dims"] == 46505


@pytest.mark.parametrize("graph", ["step", "full"])
def test_both_graphs_are_exported_and_verified_against_torch(graphs, trained, graph):
    record = graphs[graph]
    report = record["verification"]
    assert (record["family"], record["graph"], report["passed"]) == (FAMILY, graph, True)
    assert report["max_abs_diff"] <= report["tolerance"] == 1e-4
    checked = {c["what"] for c in report["comparisons"]}
    assert f"onnx {graph} vs torch forward" in checked and {c["batch"] for c in report["comparisons"]} == {1, 3}
    if graph == "step":  # the recurrent state, declared by the family, is what the graph threads through
        assert record["inputs"] == ["input_ids", "in.h.0"] and record["outputs"] == ["logits", "out.h.0"]
        assert {"onnx step vs torch step", "onnx greedy vs torch greedy"} <= checked
    assert (trained[0] / f"{graph}.onnx").is_file()


def test_arrun_samples_text_from_the_alphabet(work, site, trained, graphs):
    alphabet = json.loads((trained[0] / "config.json").read_text())["data"]["alphabet"]
    record = cli_json("arrun", "sample", trained[0] / "step.onnx", "--prompt", PROMPT, "--length", LENGTH,
                      "--seed", 0, site=None, cwd=work)  # arrun needs neither torch nor the plug-in
    (text,) = record["text"]
    assert (record["family"], record["length"]) == (FAMILY, LENGTH)
    assert text.startswith(PROMPT) and len(text) == len(PROMPT) + LENGTH and set(text) <= set(alphabet)


def test_arrun_scores_as_artrain_eval(work, site, trained, graphs, held_out):
    reference = cli_json("artrain", "eval", trained[0], "--data", held_out, site=site, cwd=work)
    for graph in ("full", "step"):
        scored = cli_json("arrun", "score", trained[0] / f"{graph}.onnx", held_out, site=None, cwd=work)
        assert scored["n_dims"] == reference["n_dims"] == 2000
        assert math.isfinite(scored["bits_per_dim"])
        assert scored["bits_per_dim"] == pytest.approx(reference["bits_per_dim"], abs=1e-4), graph


def test_a_module_class_spec_names_the_family_too(work, site, tiny):
    record = cli_json("artrain", "fit", "--model", SPEC, *FAST, "--steps", 1, "--config", tiny,
                      "--out", work / "by-spec", site=site, cwd=work)
    config = json.loads((work / "by-spec" / "config.json").read_text())
    assert (config["family"], config["family_import"]) == (FAMILY, SPEC)
    assert record["step"] == 1 and math.isfinite(record["test"]["bits_per_dim"])


def test_without_the_package_the_family_is_unknown(work):
    result = cli("artrain", "fit", "--model", FAMILY, "--data", "text", "--steps", 1, "--out", work / "none",
                 site=None, cwd=work, expect=2)
    assert result.stderr.count("\n") == 1 and f"unknown model family '{FAMILY}'" in result.stderr
    assert all(name in result.stderr for name in ("pixelcnn", "pixelrnn", "transformer", "wavenet"))
    assert not (work / "none").exists()


def test_the_step_rollout_equals_forward(site, monkeypatch):
    """The contract's invariant, in torch: stepping from the declared initial state gives forward's logits."""
    import torch

    monkeypatch.syspath_prepend(str(site))
    from ardiagrec.model import DiagonalRecurrence

    torch.manual_seed(0)
    model = DiagonalRecurrence(DiagonalRecurrence.Config(vocab_size=11, num_classes=2, layers=2, d_model=16,
                                                         d_state=12, mlp=24)).eval()
    x, cond = torch.randint(0, 11, (3, 200)), torch.tensor([0, 1, 1])
    state, token, rolled = model.init_state(3), torch.full((3,), 11), []
    with torch.no_grad():
        for t in range(x.shape[1]):
            logits, state = model.step(token, torch.tensor(t), state, cond)  # (3, V)
            rolled.append(logits)
            token = x[:, t]
        torch.testing.assert_close(torch.stack(rolled, dim=1), model(x, cond), atol=1e-5, rtol=0)


def test_no_code_of_the_project_names_the_family():
    """Only the example and this test know the family: every other file but prose (.md) is free of its name."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    ours = {"tests/test_plugin_family.py"}
    naming = [name for name in listed if not name.startswith("examples/") and name not in ours
              and not name.endswith(".md") and (ROOT / name).is_file()
              and FAMILY.encode() in (ROOT / name).read_bytes().lower()]
    assert naming == []
