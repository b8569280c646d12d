"""The browser section of benchmarks/bench_web.py: the page `arexport web` writes, in headless Chromium
(onnxruntime-web 1.31.1, wasm, one thread), against arrun on the same graph in the same run.

    python benchmarks/web_browser.py [--steps N] [--repeats R] [--cold R] [--profile N]

Prints three markdown tables, every figure measured in this run:
- steps/s at batch 1 (goal: page >= 0.25x arrun): the page's own figure (elements sampled / the run's time,
  as it shows it: the JS loop, onnxruntime-web's calls, the sampler and the drawing) against arrun's
  ``generate`` (its sampling loop, onnxruntime CPU, one intra-op thread) on the same step graph: the
  Transformer generating N characters with no prompt, the PixelCNN N // 64 images of class 0 one at a time;
  rounds alternate (arrun, page, arrun, page, ...), the median of R each; also per CPU second (arrun's process
  time, the renderer process's CPU time from Chromium's Performance.getMetrics), what the figures are on a
  machine other jobs share. The page's share spent inside ``session.run`` is measured by the page itself
  (``?profile=1``), so what is left is the JS side's.
- cold start: a fresh Chromium each time (nothing cached) loads the page with ``?run=1``: ms from the
  navigation's start to model.onnx fetched, to the model ready (onnxruntime-web's 15 MB wasm fetched and
  compiled, the session created), and to the first sampled element (median of R).
- the folder `arexport web` writes per shipped graph: what a user uploads to a static host.
- where the time goes (``--profile``): onnxruntime's own profiler on the same step graph and the same
  sampling loop, onnxruntime-web's wasm build under Node (benchmarks/web_profile.mjs, the binary the page
  runs) beside the native CPU build (arrun's session with profiling on): microseconds per step in the kernels
  of each operator type, and the rest of ``model_run`` (binding the inputs, copying the outputs out).
  The profiler's own cost inflates both sides, the wasm side many times over (a Transformer step took 89 ms
  profiled against 5.5 ms unprofiled in one run): read its shares per operator, not its wasm / native ratios.
  Then V8's sampling profiler (``node --cpu-prof``) on the same loop without onnxruntime's: the CPU shares of
  the wasm kernels, onnxruntime-web's JavaScript around each call (the inputs copied into the wasm heap, the
  outputs out), the runtime's loop and samplers, and the garbage collector.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import browser  # noqa: E402  (tests/browser.py: the server and the headless Chromium the tests use)

from arexport.webpage import MODEL_FILE, ORT_FILES, write_web_page  # noqa: E402
from arrun.generate import SampleOptions, generate, make_plan  # noqa: E402
from arrun.outputs import Sink  # noqa: E402
from arrun.sampling import SamplingOptions  # noqa: E402
from arrun.session import open_model  # noqa: E402

# model -> the page's query for one batch-1 run of `steps` elements, and arrun's options for the same work
SPEED_MODELS = {
    "pydoc-transformer": (lambda steps: f"?length={steps}&prompt=&seed=0",
                          lambda steps: SampleOptions(num_samples=1, batch_size=1, length=steps)),
    "digits-pixelcnn": (lambda steps: "?class=0&per_class=1&seed=0",
                        lambda steps: SampleOptions(num_samples=max(1, steps // 64), batch_size=1, condition=0)),
}
SIZE_GRAPHS = ("step.onnx", "chunk.onnx")


def speed_table(steps: int, repeats: int, folder: Path) -> list[str]:
    rows = ["| graph (batch 1) | arrun steps/s | page steps/s | page / arrun | arrun per CPU s | page per CPU s "
            "| CPU ratio | in session.run |", "|---|---|---|---|---|---|---|---|"]
    with browser.chromium() as driver:
        for name, (query, options) in SPEED_MODELS.items():
            path = ROOT / "models" / name / "step.onnx"
            write_web_page(path, folder / name)
            model = open_model(path, threads=1)
            plan = make_plan(options(steps), model.info)
            figures = {"arrun": [], "page": [], "arrun_cpu": [], "page_cpu": [], "share": []}
            with browser.serving(folder / name) as url:
                for _ in range(repeats):
                    cpu = time.process_time()
                    stats = generate(model, plan, SamplingOptions(), 0, Sink())
                    figures["arrun"].append(stats.tokens / stats.seconds)
                    figures["arrun_cpu"].append(stats.tokens / (time.process_time() - cpu))
                    rate, per_cpu, share = _page_rate(driver, url + query(steps) + "&profile=1", steps)
                    figures["page"].append(rate)
                    figures["page_cpu"].append(per_cpu)
                    figures["share"].append(share)
            a, p, a_cpu, p_cpu, share = (statistics.median(figures[key])
                                         for key in ("arrun", "page", "arrun_cpu", "page_cpu", "share"))
            rows.append(f"| {name} step | {a:,.0f} | {p:,.0f} | {p / a:.2f}x | {a_cpu:,.0f} | {p_cpu:,.0f} | "
                        f"{p_cpu / a_cpu:.2f}x | {100 * share:.0f} % |")
    return rows


def _page_rate(driver, url: str, steps: int) -> tuple[float, float, float]:
    """Runs of the page until ``steps`` elements (its own steps and seconds summed) -> (steps/s, steps per CPU
    second of the renderer process, the share of the time inside session.run)."""
    page = browser.open_page(driver, url, until=("ready", "error"))
    driver.execute_cdp_cmd("Performance.enable", {})
    done = seconds = run_ms = cpu = 0.0
    while page["state"] != "error" and done < steps:
        before = _process_time(driver)
        driver.find_element("id", "sample").click()
        page = browser.wait_for(driver)
        cpu += _process_time(driver) - before
        done, seconds, run_ms = done + page["steps"], seconds + page["seconds"], run_ms + page["runMs"]
    if page["state"] == "error":
        raise RuntimeError(f"the page failed: {page['error']}")
    return done / seconds, done / cpu, run_ms / 1000 / seconds


def _process_time(driver) -> float:
    """CPU seconds of the page's renderer process so far (Chromium's Performance.getMetrics 'ProcessTime')."""
    metrics = driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]
    return next(m["value"] for m in metrics if m["name"] == "ProcessTime")


def cold_start_table(repeats: int, folder: Path) -> list[str]:
    rows = ["| page (fresh Chromium, ?run=1) | model.onnx fetched, ms | model ready, ms | first element, ms |",
            "|---|---|---|---|"]
    for name, (query, _) in SPEED_MODELS.items():
        fetched, ready, first = [], [], []
        with browser.serving(folder / name) as url:
            for _ in range(repeats):
                with browser.chromium() as driver:  # a new profile: nothing cached
                    page = browser.open_page(driver, url + query(16) + "&run=1")
                if page["state"] != "done":
                    raise RuntimeError(f"the {name} page failed: {page['error']}")
                fetched.append(page["fetchedMs"])
                ready.append(page["loadMs"])
                first.append(page["firstElementMs"])
        rows.append(f"| {name} | {statistics.median(fetched):,.0f} | {statistics.median(ready):,.0f} | "
                    f"{statistics.median(first):,.0f} |")
    return rows


def size_table(folder: Path) -> list[str]:
    rows = ["| graph | model MB | onnxruntime-web MB | page and runtime kB | folder MB |", "|---|---|---|---|---|"]
    for path in sorted((ROOT / "models").glob("*/*.onnx")):
        if path.name not in SIZE_GRAPHS:
            continue
        out = folder / "sizes" / f"{path.parent.name}-{path.stem}"
        out.parent.mkdir(exist_ok=True)
        page = write_web_page(path, out)
        ort = sum(page.sizes[name] for name in ORT_FILES)
        own = page.size_bytes - ort - page.sizes[MODEL_FILE]
        rows.append(f"| {path.parent.name}/{path.name} | {page.sizes[MODEL_FILE] / 1e6:.2f} | {ort / 1e6:.2f} | "
                    f"{own / 1e3:.0f} | {page.size_bytes / 1e6:.2f} |")
    return rows


def profile_table(name: str, steps: int, top: int = 6) -> list[str]:
    """onnxruntime's profile of ``steps`` sampled elements of models/NAME/step.onnx: wasm (Node) and native."""
    path = ROOT / "models" / name / "step.onnx"
    wasm = subprocess.run(["node", str(Path(__file__).with_name("web_profile.mjs")), str(path), str(steps)],
                          capture_output=True, text=True, check=True, timeout=1800).stdout.splitlines()
    done = json.loads(wasm[-1].removeprefix("AR-RESULT "))["steps"]
    web = _per_step([json.loads(line.strip().rstrip(",")) for line in wasm if line.startswith('{"cat"')], done)
    native = _per_step(*_native_profile(path, steps))
    ops = sorted(web["kernels"], key=web["kernels"].get, reverse=True)
    rows = [f"| {name} step, µs per step (profiler on) | wasm | share | native | share | wasm / native |",
            "|---|---|---|---|---|---|"]
    for label, w, n in ([("model_run", web["run"], native["run"]), ("all kernels", web["all"], native["all"]),
                         ("outside the kernels", web["run"] - web["all"], native["run"] - native["all"])]
                        + [(op, web["kernels"][op], native["kernels"].get(op, 0.0)) for op in ops[:top]]):
        rows.append(f"| {label} | {w:,.0f} | {100 * w / web['run']:.0f} % | {n:,.0f} | "
                    f"{100 * n / native['run']:.0f} % | {w / n if n else float('inf'):.1f}x |")
    return rows


CPU_GROUPS = (("wasm (onnxruntime's kernels and executor)", lambda name, url: name.startswith("wasm-function")),
              ("onnxruntime-web's JavaScript", lambda name, url: url.startswith("ort")),
              ("the runtime's loop and samplers", lambda name, url: url.endswith(".mjs")),
              ("garbage collector", lambda name, url: name == "(garbage collector)"))


def cpu_table(name: str, steps: int) -> list[str]:
    """V8's CPU profile of ``steps`` elements sampled by the runtime on onnxruntime-web (wasm) under Node."""
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(["node", "--cpu-prof", f"--cpu-prof-dir={folder}",
                        str(Path(__file__).with_name("web_profile.mjs")), str(ROOT / "models" / name / "step.onnx"),
                        str(steps), "plain"],
                       capture_output=True, check=True, timeout=1800)
        profile = json.loads(next(Path(folder).glob("*.cpuprofile")).read_text())
    frames = {node["id"]: node["callFrame"] for node in profile["nodes"]}
    shares, other = collections.Counter(), "other (loading included)"
    for sample, micros in zip(profile["samples"], profile["timeDeltas"]):
        frame = frames[sample]
        if frame["functionName"] == "(idle)":
            continue
        group = next((label for label, match in CPU_GROUPS
                      if match(frame["functionName"], frame["url"].rsplit("/", 1)[-1])), other)
        shares[group] += micros
    total = sum(shares.values())
    return [f"| {name} step on onnxruntime-web (Node, V8's CPU profile) | CPU share |", "|---|---|",
            *(f"| {label} | {100 * shares[label] / total:.0f} % |" for label in [*(g[0] for g in CPU_GROUPS), other])]


def _native_profile(path: Path, steps: int) -> tuple[list[dict], int]:
    """arrun's generate of about ``steps`` elements (whole images) on a session with onnxruntime's profiler on
    -> (the profile's events, the elements sampled)."""
    import onnxruntime as ort

    model = open_model(path, threads=1)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.enable_profiling = 1, 1, True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = str(Path(folder) / "native")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        model, info = dataclasses.replace(model, session=session), model.info
        length = min(steps, info.max_length or steps)
        plan = make_plan(SampleOptions(num_samples=max(1, steps // length), batch_size=1,
                                       length=None if info.max_length else length,
                                       condition=0 if info.num_classes else None), info)
        stats = generate(model, plan, SamplingOptions(), 0, Sink())
        return json.loads(Path(model.session.end_profiling()).read_text()), stats.tokens


def _per_step(events: list[dict], steps: int) -> dict:
    """Profile events -> µs per step: model_run, all kernels, and kernels by operator type."""
    kernels, run = collections.Counter(), 0.0
    for event in events:
        if event.get("name") == "model_run":
            run += event["dur"]
        elif event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernels[event["args"]["op_name"]] += event["dur"]
    return {"run": run / steps, "all": sum(kernels.values()) / steps,
            "kernels": {op: us / steps for op, us in kernels.items()}}


def browser_tables(steps: int, repeats: int, cold: int, profile: int = 0) -> list[str]:
    """The tables (module docstring), or one line saying what is missing."""
    if (reason := browser.missing()) is not None:
        return [f"browser section skipped: {reason}"]
    with tempfile.TemporaryDirectory() as folder:
        tables = [*speed_table(steps, repeats, Path(folder)), "", *cold_start_table(cold, Path(folder)), "",
                  *size_table(Path(folder))]
    for name in SPEED_MODELS if profile else ():
        tables += ["", *profile_table(name, profile), "", *cpu_table(name, 3 * profile)]
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="elements per round of each side")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds per side")
    parser.add_argument("--cold", type=int, default=3, help="fresh-browser page loads for the cold start")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile N sampled elements per model with onnxruntime's profiler (0: no)")
    args = parser.parse_args()
    print("\n".join(browser_tables(args.steps, args.repeats, args.cold, args.profile)))


if __name__ == "__main__":
    main()
