"""Unbounded text generation on a step graph with a ring-buffer KV cache, and onnxruntime-genai beside arrun.

    python benchmarks/bench_text.py [--model models/pydoc-transformer/step.onnx] [--checkpoint runs/pydoc-transformer]
                                    [--tokens 100000]

Prints a markdown table, each figure measured in this run (CPU, batch 1, one intra-op thread):
- constant speed and memory: two fresh processes sample 1,000 and ``--tokens`` characters through
  ``generate`` (the loop ``arrun sample`` runs, text streamed to /dev/null); tokens/s over the first and
  the last 1,000 tokens of the long run, and each process's peak RSS (goal: within 10 %);
- prefill vs decode: ``arrun bench`` of the step graph: prompt characters/s (four full chunks per call
  sequence) against sampled characters/s (goal >= 5x);
- arrun vs onnxruntime-genai (only with ``--checkpoint``: the folder is exported from it with
  ``arexport genai``): greedy decoding of the same 1,000 tokens after the same prompt ids, tokens/s of each
  (goal >= 1.0x). The two are timed alternately, three rounds, best of each.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from arrun.commands import bench
from arrun.generate import Plan, generate
from arrun.kinds.text import TextSink
from arrun.runtime import Stepper, prefill
from arrun.sampling import SamplingOptions
from arrun.session import open_model

WINDOW_TOKENS = 1000  # tokens per speed window (first and last)


def child(model_path: str, tokens: int) -> None:
    """Sample ``tokens`` characters streamed to /dev/null; print JSON {first, last tokens/s, rss_mb}."""
    model = open_model(Path(model_path), threads=1)
    plan = Plan(None, np.zeros(0, np.int64), tokens, 1, 1, False)
    stamps = np.zeros(tokens + 1)
    with open(os.devnull, "w") as devnull:
        sink = TextSink(None, model.info, plan, devnull)
        stamps[0] = time.perf_counter()
        generate(model, plan, SamplingOptions(), 0, sink, lambda done: stamps.__setitem__(done, time.perf_counter()))
    n = min(WINDOW_TOKENS, tokens)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"first": n / (stamps[n] - stamps[0]), "last": n / (stamps[-1] - stamps[-1 - n]), "rss_mb": rss_mb}))


def run_child(model: Path, tokens: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(tokens), "--model", str(model)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def genai_vs_arrun(model_path: Path, checkpoint: Path, tokens: int = 1000, rounds: int = 3) -> dict:
    import onnxruntime_genai as og

    from arexport.genai import export_genai

    folder = Path(tempfile.mkdtemp(prefix="genai-")) / "model"
    export_genai(checkpoint, folder, max_length=tokens + 64)
    config_path = folder / "genai_config.json"
    config = json.loads(config_path.read_text())
    config["model"]["decoder"]["session_options"] |= {"intra_op_num_threads": 1, "inter_op_num_threads": 1}
    config_path.write_text(json.dumps(config))
    genai_model = og.Model(str(folder))
    runtime = open_model(model_path, threads=1)
    info = runtime.info
    prompt = np.array([[info.start_token] + [info.alphabet.index(c) for c in "The "]], np.int64)  # (1, 5)

    def genai_run() -> tuple[float, list[int]]:
        params = og.GeneratorParams(genai_model)
        params.set_search_options(max_length=prompt.shape[1] + tokens, do_sample=False)
        generator = og.Generator(genai_model, params)
        generator.append_tokens(prompt.astype(np.int32))
        out, start = [], time.perf_counter()
        while not generator.is_done():
            generator.generate_next_token()
            out.append(int(generator.get_next_tokens()[0]))
        return tokens / (time.perf_counter() - start), out

    def arrun_run() -> tuple[float, list[int]]:
        stepper = Stepper(runtime, 1)
        stepper.reset()
        start = time.perf_counter()
        logits = prefill(stepper, prompt, np.zeros(1, np.int64))[:, -1]
        out = [int(logits.argmax())]
        for t in range(prompt.shape[1], prompt.shape[1] + tokens - 1):
            out.append(int(stepper.step(np.array(out[-1:], np.int64), np.array([t])).argmax()))
        return tokens / (time.perf_counter() - start), out

    best = {"genai": 0.0, "arrun": 0.0}
    for _ in range(rounds):
        (g, g_tokens), (a, a_tokens) = genai_run(), arrun_run()
        best = {"genai": max(best["genai"], g), "arrun": max(best["arrun"], a)}
    return {**best, "same_tokens": g_tokens == a_tokens}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=Path("models/pydoc-transformer/step.onnx"))
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(str(args.model), args.child)
        return
    short, long = run_child(args.model, WINDOW_TOKENS), run_child(args.model, args.tokens)
    record = bench(args.model, batch_size=1, steps=600)
    rows = [
        ("tokens/s, first 1,000 of the long run", f"{long['first']:,.0f}"),
        (f"tokens/s, last 1,000 of {args.tokens:,}", f"{long['last']:,.0f} ({long['last'] / long['first']:.2f}x the first)"),
        ("peak RSS, 1,000 tokens", f"{short['rss_mb']:.1f} MB"),
        (f"peak RSS, {args.tokens:,} tokens", f"{long['rss_mb']:.1f} MB ({long['rss_mb'] / short['rss_mb']:.3f}x)"),
        ("decode (arrun bench), characters/s", f"{record['tokens_per_s']:,.0f}"),
        ("prefill (arrun bench), characters/s", f"{record['prefill_tokens_per_s']:,.0f} "
                                                f"({record['prefill_vs_decode']:.1f}x decode)"),
    ]
    if args.checkpoint is not None:
        vs = genai_vs_arrun(args.model, args.checkpoint)
        rows += [("onnxruntime-genai 0.18 greedy, tokens/s", f"{vs['genai']:,.0f}"),
                 ("arrun greedy (same tokens: " + ("yes" if vs["same_tokens"] else "NO") + "), tokens/s",
                  f"{vs['arrun']:,.0f} ({vs['arrun'] / vs['genai']:.2f}x genai)")]
    print(f"`{args.model}`, CPU, batch 1, one thread\n\n| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
