"""artrain and arexport check arguments and paths before they import torch (or onnx), so a typo or a
missing path is reported at once: each command below runs in a fresh interpreter, and the test asserts
its one error line and exit code and that neither torch nor onnx was imported. The time it saves is
measured by benchmarks/bench_cli_latency.py, not here."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "onnx", "onnxscript")
# Runs the tool's command line as its console script does, then prints which heavy modules were imported.
WRAPPER = """
import importlib, json, sys
tool, sys.argv = sys.argv[1], sys.argv[1:]
try:
    importlib.import_module(tool + ".cli").main()
finally:
    print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
""".format(heavy=HEAVY)


def run_cli(tool: str, *args: str, cwd: Path) -> tuple[int, str, list[str]]:
    """-> (exit code, stderr, the heavy modules imported) of ``tool args`` in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", WRAPPER, tool, *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    *_, imported = proc.stdout.strip().splitlines()
    return proc.returncode, proc.stderr, json.loads(imported)


ERRORS = [  # (tool, arguments, what the error line names)
    ("artrain", ["fit", "--model", "nosuch"], "nosuch"),
    ("artrain", ["fit", "--data", "/no/such/path"], "/no/such/path"),
    ("artrain", ["fit", "--model", "pixelcnn", "--config", "missing.json"], "missing.json"),
    ("artrain", ["fit", "--model", "pixelcnn", "--steps", "0"], "--steps"),
    ("artrain", ["fit", "--resume", "missing-dir"], "missing-dir"),
    ("artrain", ["eval", "missing-dir"], "missing-dir"),
    ("arexport", ["onnx", "missing-dir", "--step-graph"], "missing-dir"),
    ("arexport", ["onnx", "missing-dir"], "graph"),
    ("arexport", ["verify", "missing.onnx", "missing-dir"], "missing.onnx"),
    ("arexport", ["quantize", "missing.onnx", "dir", "--precision", "int8"], "missing.onnx"),
    ("arexport", ["quantize", "missing.onnx", "dir", "--precision", "int4"], "int4"),
    ("arexport", ["genai", "missing-dir", "--out", "x"], "missing-dir"),
]


@pytest.mark.parametrize("tool, args, named", ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_a_bad_argument_is_reported_before_torch_loads(tmp_path, tool, args, named):
    code, stderr, imported = run_cli(tool, *args, cwd=tmp_path)
    assert code == 2, stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and named in stderr, stderr
    assert imported == [], f"`{tool} {' '.join(args)}` imported {imported} before its error"
    assert list(tmp_path.iterdir()) == []  # and wrote nothing


@pytest.mark.parametrize("tool, args", [("artrain", ["--help"]), ("artrain", ["eval", "--help"]),
                                        ("arexport", ["--help"]), ("arexport", ["onnx", "--help"]),
                                        ("arexport", ["verify", "--help"]), ("arexport", ["quantize", "--help"])])
def test_help_does_not_import_torch(tmp_path, tool, args):
    code, stderr, imported = run_cli(tool, *args, cwd=tmp_path)
    assert (code, imported) == (0, []), stderr


def test_a_valid_name_still_reaches_the_family_registry(tmp_path):
    """The cheap check lets through what only the registry can judge: package.module:Class is imported
    (torch with it) and refused there, in one line."""
    code, stderr, imported = run_cli("artrain", "fit", "--model", "nosuch.module:Model", cwd=tmp_path)
    assert code == 2 and stderr.startswith("error: ") and "nosuch.module" in stderr, stderr
    assert "torch" in imported


def test_the_names_known_without_torch_are_the_registry_s():
    """``family_names`` lists the families from the package's files and the entry points, importing none;
    it must give the names the registry gives once every family is imported (a module of artrain.models
    that is not a family, or a family named unlike its module, breaks this)."""
    code = ("from artrain.options import family_names; cheap = family_names(); "
            "from artrain.models import FAMILIES; print(cheap == FAMILIES.names(), cheap, FAMILIES.names())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("True"), out.stdout + out.stderr
