"""The JavaScript runtime (arexport/web/runtime.mjs) against arrun on the same graphs, in one run (issue 26).

    python benchmarks/bench_web.py [--steps N] [--repeats R] [--models NAME ...] [--no-node] [--no-browser]
                                   [--browser-steps N] [--cold R] [--profile N]

Node (onnxruntime-node, the native CPU provider, one intra-op thread; arrun likewise, its defaults):
- "sample": the sampling loop that ships on each side at batch 1, temperature 1 (arrun's ``generate``:
  IO binding, numpy sampler, feedback; the JS runtime's ``Model.generate``: preallocated outputs, the same
  sampler in JS, feedback), N elements (an image model: N // 64 images), the model loaded beforehand;
- "step": the step call alone, token 0 fed back, N calls (arrun's ``Stepper.step``, the runtime's ``Model.step``);
- a chunk graph where the model has one: its sampling loop (1,024 elements drawn in the graph per call).
Rounds alternate (arrun, Node, arrun, Node, ...) R times; the table gives each side's median steps/s and
the ratio Node / arrun (the goal: >= 0.8), by the wall clock and by each process's CPU time (steps per CPU
second: what the figures are on a machine other jobs share). Needs node and `npm ci --prefix arexport/web`.

The browser (onnxruntime-web, wasm, one thread, headless Chromium): the page `arexport web` writes against
arrun on the Transformer and PixelCNN step graphs, batch 1 (the goal: >= 0.25x), the page's cold start, the
page folder's size per shipped graph, and (--profile) onnxruntime's profiler wasm against native; each table
is described in benchmarks/web_browser.py. Needs Chromium, chromedriver and selenium besides.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "js"))
import node_driver  # noqa: E402

from arrun.generate import SampleOptions, generate, make_plan  # noqa: E402
from arrun.outputs import Sink  # noqa: E402
from arrun.runtime import Stepper  # noqa: E402
from arrun.sampling import SamplingOptions  # noqa: E402
from arrun.session import open_model  # noqa: E402

ROOT = node_driver.ROOT
MODELS = ("pydoc-transformer", "speech-wavenet", "speech16-wavenet", "digits-pixelcnn", "digits-pixelrnn")


# ---------------------------------------------------------------- Node ----------------------------------------

def _sample_job(path: str, info, steps: int) -> dict:
    image = bool(info.max_length)
    return dict(kind="generate", model=path, samples=max(1, steps // info.max_length) if image else 1, batch=1,
                length=info.max_length if image else steps, temperature=1.0, topK=0, topP=1.0, prompts=[],
                condition=0 if info.num_classes else None, features=None, uniforms=None, seed=0)


def _arrun_sample(model, job: dict) -> tuple[float, float]:
    """arrun's generate on the job -> elements per second, per CPU second."""
    options = SampleOptions(num_samples=job["samples"], batch_size=1, seed=0, condition=job["condition"],
                            length=job["length"])
    plan = make_plan(options, model.info)
    cpu = time.process_time()
    stats = generate(model, plan, SamplingOptions(), 0, Sink())
    return stats.tokens / stats.seconds, stats.tokens / (time.process_time() - cpu)


def _arrun_step(model, steps: int) -> tuple[float, float]:
    """Stepper.step alone, token 0 fed back, positions wrapping at max_length -> calls per second, per CPU second."""
    stepper, info = Stepper(model, 1), model.info
    stepper.reset(np.zeros(1, np.int64) if info.num_classes else None)
    tokens, position = np.full(1, info.start_token, np.int64), np.zeros(1, np.int64)
    start, cpu = time.perf_counter(), time.process_time()
    for t in range(steps):
        position[0] = t % info.max_length if info.max_length else t
        stepper.step(tokens, position)
        tokens[0] = 0
    return steps / (time.perf_counter() - start), steps / (time.process_time() - cpu)


def node_table(names: list[str], steps: int, repeats: int, folder: Path) -> list[str]:
    rows = ["| graph | state KiB/row | loop | arrun steps/s | JS (Node) steps/s | ratio | arrun per CPU s | JS per CPU s "
            "| CPU ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        for graph in ("step", "chunk"):
            path = f"models/{name}/{graph}.onnx"
            if (ROOT / path).exists():
                rows += _node_rows(path, steps, repeats, folder)
    return rows


def _node_rows(path: str, steps: int, repeats: int, folder: Path) -> list[str]:
    """The sampling loop (and, for a step graph, the step call alone) of both runtimes on one graph."""
    model = open_model(ROOT / path, threads=1)
    state_kib = sum(np.prod(s.shape) * np.dtype(s.dtype).itemsize for s in model.info.state) / 1024
    sample = _sample_job(path, model.info, steps)
    bench = dict(kind="bench", model=path, batch=1, steps=steps, repeats=1,
                 condition=0 if model.info.num_classes else None)
    loops = ("sample", "step") if model.info.graph == "step" else ("sample",)
    figures = {(loop, side): [] for loop in loops for side in ("arrun", "node")}
    for _ in range(repeats):
        figures["sample", "arrun"].append(_arrun_sample(model, sample))
        result = node_driver.run_jobs([sample], folder)[0]
        elements = sum(len(t) for t in result["tokens"])
        figures["sample", "node"].append((elements / result["seconds"], elements / result["cpu_seconds"]))
        if "step" in loops:
            figures["step", "arrun"].append(_arrun_step(model, steps))
            result = node_driver.run_jobs([bench], folder)[0]
            figures["step", "node"].append((result["steps_per_second"][0], result["cpu_steps_per_second"][0]))
    rows = []
    for loop in loops:
        (a, a_cpu), (n, n_cpu) = ([statistics.median(f[i] for f in figures[loop, side]) for i in (0, 1)]
                                  for side in ("arrun", "node"))
        rows.append(f"| {path.removeprefix('models/')} | {state_kib:,.0f} | {loop} | {a:,.0f} | {n:,.0f} | {n / a:.2f}x "
                    f"| {a_cpu:,.0f} | {n_cpu:,.0f} | {n_cpu / a_cpu:.2f}x |")
    return rows


# ---------------------------------------------------------------- Browser -------------------------------------
# The page in headless Chromium: benchmarks/web_browser.py (driving Chromium through tests/browser.py, as the tests do).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import web_browser  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="elements (steps) per round")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds per side")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="shipped models (their step.onnx)")
    parser.add_argument("--node", action=argparse.BooleanOptionalAction, default=True, help="the Node section")
    parser.add_argument("--browser", action=argparse.BooleanOptionalAction, default=True, help="the browser section")
    parser.add_argument("--browser-steps", type=int, default=1000, help="elements per round of the page and arrun")
    parser.add_argument("--cold", type=int, default=3, help="fresh-browser page loads for the cold start")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="profile N sampled elements per browser model, wasm against native (0: no)")
    args = parser.parse_args()
    if args.node:
        if (reason := node_driver.missing()) is not None:
            sys.exit(f"bench_web: {reason}")
        with tempfile.TemporaryDirectory() as folder:
            print("\n".join(node_table(args.models, args.steps, args.repeats, Path(folder))))
    if args.browser:
        print("\n".join(["", *web_browser.browser_tables(args.browser_steps, args.repeats, args.cold, args.profile)]))


if __name__ == "__main__":
    main()
