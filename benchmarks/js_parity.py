"""How often the JavaScript runtime's samplers (arexport/web/sampling.mjs, under Node) draw another element than
arrun's on the same outputs and the same uniform, over N draws (issue 26: float64 on both sides).

    python benchmarks/js_parity.py [--draws 100000] [--seed 0]

The outputs are real: each shipped step graph (PixelCNN V = 17, Transformer V = 103, WaveNet V = 256, the 16-bit
WaveNet's mixture of 10 logistics) rolled by arrun's Stepper at batch 50 with arrun's sampler feeding back, a
quarter of the draws each. Each row is drawn under one of the settings (softmax: T = 1; top-p 0.9; top-k 8 at
T = 0.7; T = 1.3. mixture: T = 1; T = 0.8) with one uniform, by arrun (``head.sample``) and by the JS runtime
(``sampleHead``). Printed: the differences per graph and setting and in all; then how far a last-ulp
difference of exp could reach: Math.exp (V8) against numpy's exp on every exponent of the T = 1 softmax rows
(how many differ, by how many ulps), the draws whose pick changes when the inverse CDF is summed from V8's
exps instead of numpy's, and the smallest distance of a draw's target from a CDF edge (relative to the total).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "js"))
import node_driver  # noqa: E402

from arrun.runtime import Stepper  # noqa: E402
from arrun.sampling import SamplingOptions, sample_rngs  # noqa: E402
from arrun.session import open_model  # noqa: E402

ROOT = node_driver.ROOT
GRAPHS = ("digits-pixelcnn", "pydoc-transformer", "speech-wavenet", "speech16-wavenet")
SOFTMAX_SETTINGS = (SamplingOptions(), SamplingOptions(top_p=0.9), SamplingOptions(0.7, 8), SamplingOptions(1.3))
MIXTURE_SETTINGS = (SamplingOptions(), SamplingOptions(0.8))
BATCH = 50


class Given:
    """A generator that hands out one given uniform: arrun's samplers call ``random()`` once per row."""

    def __init__(self, u: float):
        self.u = u

    def random(self) -> float:
        return self.u


def collect(name: str, rows: int) -> tuple[object, np.ndarray]:
    """``rows`` output rows (rows, W) float32 of the shipped step graph, sampled as arrun samples (seed 0)."""
    model = open_model(ROOT / f"models/{name}/step.onnx", threads=1)
    info, stepper = model.info, Stepper(model, BATCH)
    condition = np.arange(BATCH, dtype=np.int64) % info.num_classes if info.num_classes else None
    rngs, out, t = sample_rngs(0, range(BATCH)), [], 0
    tokens = np.full(BATCH, info.start_token, np.int64)
    while len(out) * BATCH < rows:
        if t == 0:
            stepper.reset(condition)
            tokens[:] = info.start_token
        outputs = stepper.step(tokens, np.full(BATCH, t, np.int64))  # (B, W)
        out.append(outputs.copy())
        tokens = info.head.sample(outputs, SamplingOptions(), rngs)
        t = (t + 1) % info.max_length if info.max_length else t + 1
    return info, np.concatenate(out)[:rows]


def ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| in units in the last place of float64 (same-sign finite values)."""
    return np.abs(a.view(np.int64) - b.view(np.int64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the uniforms")
    args = parser.parse_args()
    if (reason := node_driver.missing()) is not None:
        sys.exit(f"js_parity: {reason}")
    rng = np.random.default_rng(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="js-parity-"))
    jobs, groups, exponents = [], [], []
    for name in GRAPHS:
        info, outputs = collect(name, args.draws // len(GRAPHS))
        settings = SOFTMAX_SETTINGS if info.head.kind == "softmax" else MIXTURE_SETTINGS
        for s, options in enumerate(settings):
            rows = outputs[s::len(settings)]
            u = rng.random(len(rows))
            stem = folder / f"{name}-{s}"
            rows.tofile(f"{stem}.f32")
            u.tofile(f"{stem}.u.f64")
            jobs.append(dict(kind="samplers", logits=f"{stem}.f32", rows=len(rows), width=info.output_width,
                             uniforms=f"{stem}.u.f64", head=info.head.spec, levels=info.vocab_size,
                             temperature=options.temperature, topK=options.top_k, topP=options.top_p,
                             out=f"{stem}.js.i32"))
            groups.append((name, options, info.head, rows, u))
            if info.head.kind == "softmax" and options == SamplingOptions():
                exponents.append((rows, u))
    x = np.concatenate([(r.astype(np.float64) - r.max(axis=1, keepdims=True)).ravel() for r, _ in exponents])
    x.tofile(folder / "exp.in.f64")
    jobs.append(dict(kind="exp", **{"in": str(folder / "exp.in.f64")}, out=str(folder / "exp.out.f64")))
    node_driver.run_jobs(jobs, folder)

    total = differ = 0
    print("| graph | setting | draws | differences |\n|---|---|---|---|")
    for (name, options, head, rows, u), job in zip(groups, jobs):
        arrun = head.sample(rows, options, [Given(v) for v in u])
        js = np.fromfile(job["out"], np.int32)
        n = int((arrun != js).sum())
        total, differ = total + len(rows), differ + n
        setting = f"T={options.temperature:g} top-k={options.top_k} top-p={options.top_p:g}"
        print(f"| {name} | {setting} | {len(rows):,} | {n} |")
    print(f"| all | | {total:,} | {differ} |\n")

    v8 = np.fromfile(folder / "exp.out.f64", np.float64)
    npe = np.exp(x)
    d = ulps(v8, npe)
    print(f"exp: {int((d > 0).sum()):,} of {len(x):,} exponents differ between V8's Math.exp and numpy's "
          f"(at most {int(d.max())} ulp)")
    flips, margins, at = 0, [], 0
    for rows, u in exponents:  # the T = 1 inverse CDF summed from each side's exps
        n, V = rows.shape
        e_np, e_v8 = npe[at:at + n * V].reshape(n, V), v8[at:at + n * V].reshape(n, V)
        at += n * V
        picks = []
        for e in (e_np, e_v8):
            cdf = np.cumsum(e, axis=1)
            target = np.minimum(u * cdf[:, -1], np.nextafter(cdf[:, -1], 0))
            picks.append((cdf <= target[:, None]).sum(axis=1))
            margins.append((np.abs(cdf - target[:, None]).min(axis=1) / cdf[:, -1]))
        flips += int((picks[0] != picks[1]).sum())
    margin = np.concatenate(margins)
    print(f"inverse CDF from V8's exps vs numpy's: {flips} of {len(margin) // 2:,} T = 1 draws pick another element; "
          f"the closest target lies {margin.min():.2e} of the total from a CDF edge "
          f"({int((margin < 1e-12).sum() // 2)} draws within 1e-12)")


if __name__ == "__main__":
    main()
