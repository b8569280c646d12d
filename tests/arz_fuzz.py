"""The .arz fuzzer's cases and the loop that runs them, in a process of its own (``test_arz_fuzz.py`` starts it).

``mutations(raw, seed)`` turns one valid .arz into a few thousand damaged ones, deterministically: every single
bit flipped, several bits flipped at once, every truncation, bytes appended, inserted and deleted, the framing's
own numbers (version, header length, payload words) set to extremes, and header rewrites: each JSON field (and
each field of the layout) set to extremes, dropped, or joined by a stranger, repacked with ``container.pack``
(the same preset dictionary), so that the rewritten header parses and the checks behind it are reached.

Run as ``python tests/arz_fuzz.py SPEC.json`` (torch-free; the address space is capped before any case, so a header that
makes arrun allocate what it claims fails the run with MemoryError rather than swapping). Every case must be
refused with a one-line ``ARError`` or decode to exactly the original bytes, each within ``CASE_SECONDS``; every
``FULL_EVERY``-th case also goes through the ``decompress`` worker into a folder that must stay empty on refusal.
Prints one JSON summary line.
"""
from __future__ import annotations

import collections
import json
import re
import resource
import signal
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from arrun.compress import check_archive, decode, decompress
from arrun.compress.container import CONTAINER_VERSION, HEADER_DICTIONARY, MAGIC, pack, unpack
from arrun.compress.workers import _open  # the model opened as decompress opens it, once per file
from arrun.contract.errors import ARError

ADDRESS_SPACE = 1 << 30  # bytes: the loop peaks near 250 MiB (numpy, onnxruntime, the tiny models); a bomb takes more
CASE_SECONDS = 2.0
FULL_EVERY = 97          # cases also run through the decompress worker and its output folder
INT_EXTREMES = [0, -1, 1, 2, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, -2**63,
                10**30, 1 << 30]
OTHER_EXTREMES = [None, True, False, 1.5, float("nan"), float("inf"), "", "x" * 100_000, "\ud800", "AAAA", "A",
                  "====", [], [0], [[[[[]]]]], {}, {"format": "npy"}, [2**63, 20], [1, -20], [0, 5, 4], [1, 5, 4],
                  "<u8", "<i8", "|b1", "<f8", "<U1000000000", "V1073741824", "(1000000000,)i1", "text", "wav", "npy"]


REASONS: collections.Counter = collections.Counter()  # why cases were refused, for the summary


class CaseTimeout(Exception):
    pass


def mutations(raw: bytes, seed: int):
    """Yield (label, damaged bytes) for one valid .arz ``raw``; the same ``seed`` gives the same cases."""
    rng = np.random.default_rng(seed)
    for bit in range(8 * len(raw)):  # every single bit
        yield "flip1", _flip(raw, [bit])
    for _ in range(600):
        yield "flipN", _flip(raw, rng.integers(0, 8 * len(raw), rng.integers(2, 9)))
    for end in range(len(raw)):
        yield "truncate", raw[:end]
    for extra in (b"\0", b"\0" * 4, b"\xff" * 4, b"\0" * 8, rng.bytes(64)):
        yield "append", raw + extra
    for _ in range(500):
        at, k = int(rng.integers(0, len(raw) + 1)), int(rng.integers(1, 9))
        yield "insert", raw[:at] + rng.bytes(k) + raw[at:]
        yield "delete", raw[:at] + raw[at + k:]
    yield from _framing(raw)
    yield from _header_rewrites(raw, rng)


def _flip(raw: bytes, bits) -> bytes:
    out = bytearray(raw)
    for bit in bits:
        out[int(bit) // 8] ^= 1 << (int(bit) % 8)
    return bytes(out)


def _framing(raw: bytes):
    """The version, header length and payload word count set to extremes."""
    size = struct.unpack_from("<I", raw, 8)[0]
    for value in (0, 2, 2**31, 2**32 - 1):
        yield "version", raw[:4] + struct.pack("<I", value) + raw[8:]
    for value in (0, 1, size - 1, size + 1, size + 8, 2**31, 2**32 - 1):
        yield "header-length", raw[:8] + struct.pack("<I", value) + raw[12:]
    for value in (0, 1, 2**30, 2**62, 2**64 - 1, (len(raw) - 20 - size) // 4 - 1):
        yield "payload-words", raw[:12 + size] + struct.pack("<Q", value) + raw[20 + size:]


def _header_rewrites(raw: bytes, rng):
    """Each header field (and layout field) set to each extreme, dropped, or beside a stranger; repacked."""
    header, words = unpack(raw, Path("valid.arz"))
    values = INT_EXTREMES + OTHER_EXTREMES
    for key in sorted(header):
        for value in values:
            yield f"header:{key}", pack({**header, key: value}, words)
        yield f"drop:{key}", pack({k: v for k, v in header.items() if k != key}, words)
    for key in sorted(header["layout"]):
        for value in values:
            yield f"layout:{key}", pack({**header, "layout": {**header["layout"], key: value}}, words)
    yield "stranger", pack({**header, "stranger": [1, {"x": None}]}, words)
    yield "deep", _pack_text(json.dumps(header)[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}", words)
    yield "not-a-dict", _pack_text("[" + json.dumps(header) + "]", words)
    yield "not-json", _pack_text(json.dumps(header)[:-1], words)
    for _ in range(300):  # two fields at once, and payload words set to extremes
        a, b = rng.choice(sorted(header), 2, replace=False)
        pair = {**header, a: values[rng.integers(len(values))], b: values[rng.integers(len(values))]}
        yield "header-pair", pack(pair, words)
        changed = words.copy()
        changed[rng.integers(len(words))] = rng.choice([0, 0xFFFFFFFF, rng.integers(2**32)])
        yield "payload-word", pack(header, np.concatenate([changed, changed[:rng.integers(3)]]))


def _pack_text(text: str, words: np.ndarray) -> bytes:
    """An .arz whose header is ``text`` verbatim (what json.dumps would not write)."""
    packer = zlib.compressobj(9, zdict=HEADER_DICTIONARY)
    head = packer.compress(text.encode("utf-8", "surrogatepass")) + packer.flush()
    return b"".join([MAGIC, struct.pack("<II", CONTAINER_VERSION, len(head)), head, struct.pack("<Q", len(words)),
                     words.astype("<u4").tobytes()])


def run(spec: dict) -> dict:
    """Every case of every file in ``spec`` (model, archive, original), this part's share of them -> summary."""
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    signal.signal(signal.SIGALRM, _timeout)
    counts = {"cases": 0, "refused": 0, "decoded": 0, "full": 0}
    failures, slowest, start = [], 0.0, time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="arz-fuzz-"))
    for model_path, archive, original in spec["files"]:
        model, raw, want = _open(Path(model_path), "fuzz"), Path(archive).read_bytes(), Path(original).read_bytes()
        if _case(model, raw, want) != "decoded":  # the undamaged file itself
            failures.append(f"{Path(archive).name} itself: {_case(model, raw, want)}")
        for i, (label, damaged) in enumerate(mutations(raw, spec["seed"])):
            if i % spec["parts"] != spec["part"]:
                continue
            t = time.perf_counter()
            outcome = _case(model, damaged, want)
            if i % FULL_EVERY == 0 and outcome in ("refused", "decoded"):
                outcome = _full(Path(model_path), damaged, want, folder) or outcome
                counts["full"] += 1
            slowest = max(slowest, time.perf_counter() - t)
            counts["cases"] += 1
            if outcome in ("refused", "decoded"):
                counts[outcome] += 1
            else:
                failures.append(f"{Path(archive).name} case {i} ({label}): {outcome}")
    return {**counts, "reasons": dict(REASONS.most_common(12)), "failures": failures, "vm_peak_mib": _vm_peak_mib(), "slowest_case_s": slowest, "seconds": time.perf_counter() - start}


def _case(model, damaged: bytes, want: bytes) -> str:
    """'refused', 'decoded', or what went wrong."""
    name = Path("damaged.arz")
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        header, words = unpack(damaged, name)
        check_archive(model, header, name)
        got = decode(model, header, words, name)
    except ARError as e:
        if not _one_line(str(e)):
            return f"not one line: {str(e)[:300]!r}"
        message = re.sub(r"\d+", "N", str(e))
        REASONS[message.split("(")[1].split(")")[0] if "(" in message else message[:40]] += 1
        return "refused"
    except Exception as e:  # MemoryError past the address cap, CaseTimeout, and anything else: all failures
        return f"{type(e).__name__}: {str(e)[:200]!r}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return "decoded" if got == want else f"decoded to other bytes ({len(got)} of {len(want)})"


def _full(model_path: Path, damaged: bytes, want: bytes, folder: Path) -> str | None:
    """The decompress worker on the case: None when it refused leaving the folder as it was (or wrote ``want``)."""
    archive, out = folder / "case.arz", folder / "out.bin"
    archive.write_bytes(damaged)
    try:
        decompress(model_path, archive, out=out)
    except ARError:
        left = sorted(p.name for p in folder.iterdir())
        return None if left == ["case.arz"] else f"refused and left {left}"
    finally:
        archive.unlink()
    wrote = out.read_bytes()
    out.unlink()
    return None if wrote == want else "decompress wrote other bytes"


def _one_line(message: str) -> bool:
    return bool(message) and "\n" not in message and "\r" not in message and "; " in message


def _vm_peak_mib() -> int:
    """The most address space this process has held (Linux), MiB."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmPeak:")[1].split()[0]) // 1024


def _timeout(signum, frame):
    raise CaseTimeout(f"over {CASE_SECONDS} s")


if __name__ == "__main__":
    print(json.dumps(run(json.loads(Path(sys.argv[1]).read_text()))))
