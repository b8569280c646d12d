"""How long artrain and arexport take to report a typo or a missing path, and to print their help.

    python benchmarks/bench_cli_latency.py [--root DIR ...] [--runs 5] [--json]

Each command runs as ``python -m artrain ...`` or ``python -m arexport ...`` in a fresh process, from an
empty temporary folder (so every path it names is missing) with ``PYTHONPATH=DIR``, so the tree measured
is DIR's, not the installed one; the figure is the median wall time over ``--runs`` runs, start to exit.
Given several ``--root``, the runs alternate between them, so a busy machine slows each tree alike. To
compare a commit with the working tree, side by side:

    mkdir -p /tmp/before && git archive e9d0b40 | tar -x -C /tmp/before
    .venv/bin/python benchmarks/bench_cli_latency.py --root /tmp/before --root .

The error commands must exit 2 after one ``error:`` line; help exits 0. A command that exits otherwise is
reported (its figure would time something else).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (tool, arguments, expected exit code)
COMMANDS = [
    ("artrain", ["fit", "--model", "nosuch"], 2),
    ("artrain", ["fit", "--data", "/no/such/path"], 2),
    ("artrain", ["eval", "missing-dir"], 2),
    ("arexport", ["onnx", "missing-dir", "--step-graph"], 2),
    ("arexport", ["verify", "missing.onnx", "missing-dir"], 2),
    ("arexport", ["quantize", "missing.onnx", "dir", "--precision", "int8"], 2),
    ("artrain", ["--help"], 0),
    ("artrain", ["eval", "--help"], 0),
    ("artrain", ["fit", "--help"], 0),
    ("arexport", ["--help"], 0),
    ("arexport", ["onnx", "--help"], 0),
]


def time_command(roots: list[Path], tool: str, args: list[str], runs: int) -> list[dict]:
    """Per root: the median and all wall times (s) of ``python -m tool args`` run ``runs`` times (the roots
    taking turns), and the exit codes seen."""
    times = {root: [] for root in roots}
    codes = {root: set() for root in roots}
    with tempfile.TemporaryDirectory() as cwd:
        for _ in range(runs):
            for root in roots:
                env = {**os.environ, "PYTHONPATH": str(root.resolve())}
                env.pop("AR_DEBUG", None)
                start = time.perf_counter()
                proc = subprocess.run([sys.executable, "-m", tool, *args], cwd=cwd, env=env, capture_output=True)
                times[root].append(time.perf_counter() - start)
                codes[root].add(proc.returncode)
    return [{"root": str(root), "command": " ".join([tool, *args]), "median_s": statistics.median(times[root]),
             "times_s": [round(t, 3) for t in times[root]], "exit_codes": sorted(codes[root])} for root in roots]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, action="append",
                        help="source tree to measure; repeat to compare trees (default: this checkout)")
    parser.add_argument("--runs", type=int, default=5, help="runs per command (the median is reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per command")
    args = parser.parse_args()
    roots = args.root or [Path(__file__).resolve().parent.parent]
    print(f"median of {args.runs} runs, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; columns: "
          + ", ".join(str(root.resolve()) for root in roots), file=sys.stderr)
    for tool, argv, expected in COMMANDS:
        rows = time_command(roots, tool, argv, args.runs)
        for row in rows:
            row["unexpected_exit"] = row["exit_codes"] != [expected]
        if args.json:
            print("\n".join(json.dumps(row) for row in rows), flush=True)
        else:
            cells = "  ".join(f"{row['median_s']:6.2f} s" + ("!" if row["unexpected_exit"] else " ") for row in rows)
            print(f"{cells}  {rows[0]['command']}", flush=True)
    if not args.json:
        print("(!: the command exited with another code than expected, so its figure times something else)",
              file=sys.stderr)


if __name__ == "__main__":
    main()
