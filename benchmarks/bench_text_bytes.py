"""A text model on pystdlib's held-out text against xz -9e, side by side on the same bytes.

    python benchmarks/bench_text_bytes.py MODEL_DIR [--json FILE]

MODEL_DIR holds ``step.onnx`` (and ``full.onnx`` when exported; scoring uses it, else the step graph) of a
model of any text kind. Two figures, each against xz -9e (Python's lzma, preset 9 | PRESET_EXTREME) on the
same bytes:
  * held-out pydoc: the last 10 % of pydoc's topics (``artrain.textdata.pydoc_held_out``), in bits per byte:
    the model's score, xz of those bytes alone, and xz given the training text (size(xz(train + held-out)) -
    size(xz(train)));
  * the held-out standard-library modules (``HELD_OUT_MODULES``), each compressed alone by `arrun compress`
    (``arrun.api.compress``; each round trip checked byte for byte) and by xz: the totals in bytes.
A character model refuses a file with a character outside its alphabet: that module is counted as refused.
"""
from __future__ import annotations

import argparse
import json
import lzma
from pathlib import Path

from arrun import api
from arrun.contract.errors import UsageError
from artrain.textdata import held_out_sources, pydoc_held_out, pydoc_text


def xz(data: bytes) -> int:
    return len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    step = args.model_dir / "step.onnx"
    scorer = args.model_dir / "full.onnx" if (args.model_dir / "full.onnx").exists() else step

    held = pydoc_held_out()
    text = pydoc_text()
    train = text[:len(text) * 9 // 10].encode("utf-8")
    scored = api.score(scorer, held)
    pydoc = {"bytes": len(held), "model_bits_per_unit": scored["bits_per_dim"], "unit": scored["unit"],
             "model_bits_per_byte": scored["bits_per_dim"] * scored["n_dims"] / len(held),
             "xz_bits_per_byte": 8 * xz(held) / len(held),
             "xz_given_train_bits_per_byte": 8 * (xz(train + held) - xz(train)) / len(held)}

    model = api.load(step)
    modules = []
    for path in held_out_sources():
        raw = path.read_bytes()
        try:
            blob = api.compress(model, raw)
        except UsageError as e:
            modules.append({"module": path.name, "bytes": len(raw), "xz": xz(raw), "model": None, "refused": str(e)})
            continue
        assert api.decompress(model, blob) == raw, path.name
        modules.append({"module": path.name, "bytes": len(raw), "xz": xz(raw), "model": len(blob)})
    coded = [m for m in modules if m["model"] is not None]
    totals = {"modules": len(modules), "refused": len(modules) - len(coded), "bytes": sum(m["bytes"] for m in coded),
              "model": sum(m["model"] for m in coded), "xz": sum(m["xz"] for m in coded)}

    print(f"held-out pydoc ({pydoc['bytes']:,} bytes): model {pydoc['model_bits_per_byte']:.3f} bits/byte, "
          f"xz -9e {pydoc['xz_bits_per_byte']:.3f}, xz -9e given the training text {pydoc['xz_given_train_bits_per_byte']:.3f}")
    print("| module | bytes | arrun compress | xz -9e |\n|---|---|---|---|")
    for m in modules:
        print(f"| {m['module']} | {m['bytes']:,} | {m['model']:,} | {m['xz']:,} |" if m["model"] is not None
              else f"| {m['module']} | {m['bytes']:,} | refused | {m['xz']:,} |")
    print(f"| total of the {len(coded)} coded | {totals['bytes']:,} | {totals['model']:,} | {totals['xz']:,} |")
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model_dir), "pydoc": pydoc, "modules": modules,
                                         "totals": totals}, indent=2) + "\n")


if __name__ == "__main__":
    main()
