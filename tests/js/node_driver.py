"""Python side of the JavaScript runtime's parity checks (tests/test_js_runtime.py, benchmarks/js_parity.py,
benchmarks/bench_web.py): whether Node and the pinned npm packages are here, the jobs file the Node driver
(tests/js/parity.mjs) runs, and arrun's own tokens for the same job.

A job is the dict tests/js/parity.mjs documents; ``arrun_tokens`` runs a "generate" job through arrun's
``generate`` (the loop that ships: ``Stepper`` or ``ChunkSampler``, ``head.sample``, ``sample_rngs``), so the
comparison is with what `arrun sample` does.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "js" / "parity.mjs"
WEB = ROOT / "arexport" / "web"


def missing() -> str | None:
    """Why the Node side cannot run here (no node, or the npm packages not installed), else None."""
    if shutil.which("node") is None:
        return "node is not installed (Debian: apt-get install nodejs npm)"
    if not (WEB / "node_modules" / "onnxruntime-node" / "package.json").exists():
        return "the npm packages are not installed: run `npm ci --prefix arexport/web`"
    return None


def run_jobs(jobs: list[dict], folder: Path, timeout: float = 600) -> list[dict]:
    """Run the jobs in one Node process (models loaded once) -> one result per job; RuntimeError with the
    driver's one-line error when it fails."""
    jobs_path, out_path = folder / "jobs.json", folder / "results.json"
    jobs_path.write_text(json.dumps({"jobs": jobs}))
    done = subprocess.run(["node", str(DRIVER), str(jobs_path), str(out_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"the Node driver failed: {done.stderr.strip()[-2000:]}")
    return json.loads(out_path.read_text())


def arrun_tokens(job: dict, features: np.ndarray | None = None) -> list[list[int]]:
    """arrun's tokens for a "generate" job: sequences 0..n-1 in batches of B, each row's prompt then its samples,
    from ``arrun.generate.generate`` with the job's options and seed (``features`` (F, M) for a vocoder)."""
    from arrun.generate import SampleOptions, generate, make_plan
    from arrun.outputs import Sink
    from arrun.sampling import SamplingOptions
    from arrun.session import open_model

    class Rows(Sink):
        def __init__(self):
            self.rows = []

        def end(self, tokens):
            self.rows.extend(np.asarray(row).tolist() for row in tokens)

    model = open_model(ROOT / job["model"], threads=1)
    sampling = SamplingOptions(job["temperature"], job["topK"], job["topP"])
    options = SampleOptions(num_samples=job["samples"], batch_size=job["batch"], sampling=sampling, seed=job["seed"],
                            condition=job["condition"], prompt=tuple(job["prompts"]) if job["prompts"] else "",
                            length=job["length"], features=features)
    sink = Rows()
    generate(model, make_plan(options, model.info), sampling, job["seed"], sink)
    # a batch whose prompts have one length comes back as (B, P + L) with P the run's longest prompt, left-padded
    prompts = job["prompts"] or [""]
    return [row[len(row) - len(prompts[i % len(prompts)]) - job["length"]:] for i, row in enumerate(sink.rows)]
