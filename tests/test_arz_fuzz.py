"""The .arz fuzzer: >= 10,000 damaged copies of three small valid files (text, mu-law WAV, .npy images), each
refused in one line or decoded to exactly the original, within 2 s and a 1 GiB address space per process
(``arz_fuzz.py`` holds the cases and the loop; two processes share them)."""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from arrun.compress import compress
from conftest import ALPHABET, KIND, exported
from test_compress import wav

HERE = Path(__file__).parent
PARTS = 2


def _valid_files(folder: Path) -> list[list[str]]:
    """(model, .arz, original) of a text, a WAV and a .npy of a few dozen elements each."""
    rng = np.random.default_rng(7)
    (folder / "t.txt").write_text("".join(rng.choice(list(ALPHABET), 30)))
    (folder / "a.wav").write_bytes(wav(bytes(rng.integers(0, 256, 25, dtype=np.uint8)), after=b"tail", tag=7))
    np.save(folder / "x.npy", rng.integers(0, 4, (1, 5, 4)).astype(np.uint8))
    files = [(exported(KIND["text"]), folder / "t.txt", None), (exported(KIND["audio"]), folder / "a.wav", None),
             (exported(KIND["image"], "step", 3), folder / "x.npy", 1)]
    for model, path, condition in files:
        compress(model, path, out=path.with_name(path.name + ".arz"), condition=condition)
    return [[str(model), str(path) + ".arz", str(path)] for model, path, _ in files]


def test_damaged_archives_are_refused_in_one_line_or_decoded_exactly(tmp_path):
    files, start = _valid_files(tmp_path), time.perf_counter()
    runs = []
    for part in range(PARTS):
        spec = tmp_path / f"spec-{part}.json"
        spec.write_text(json.dumps({"files": files, "seed": 24, "part": part, "parts": PARTS}))
        runs.append(subprocess.Popen([sys.executable, str(HERE / "arz_fuzz.py"), str(spec)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True))
    summaries = []
    for process in runs:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        summaries.append(json.loads(out.splitlines()[-1]))
    failures = [f for s in summaries for f in s["failures"]]
    assert not failures, f"{len(failures)} failures, the first: " + "\n".join(failures[:20])
    cases = sum(s["cases"] for s in summaries)
    print(f"\narz fuzz: {cases} cases ({sum(s['refused'] for s in summaries)} refused, "
          f"{sum(s['decoded'] for s in summaries)} decoded exactly, {sum(s['full'] for s in summaries)} through "
          f"decompress) in {time.perf_counter() - start:.1f} s; slowest case "
          f"{max(s['slowest_case_s'] for s in summaries):.2f} s; peak address space {max(s['vm_peak_mib'] for s in summaries)} MiB; why refused: "
          f"{summaries[0]['reasons']}")
    assert cases >= 10_000
    assert all(s["refused"] > 0 and s["decoded"] > 0 and s["full"] > 50 for s in summaries)
