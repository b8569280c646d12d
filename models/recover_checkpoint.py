"""Rebuild a shipped model's checkpoint (model.safetensors + config.json) from its own exported graphs.

    python models/recover_checkpoint.py NAME [--out models/NAME]

The shipped graphs were exported from checkpoints that were not kept, and two of them cannot be retrained
bit for bit (the vocoder was resumed under another schedule; speech-wavenet's weights were carried over to a
new layout). Their weights are all in the graphs, so they are read back from there:

1. the architecture comes from models/NAME/train.json and the data the graph's metadata names (as
   `artrain fit` would build it), with every parameter set to distinct random values;
2. that model is exported through the same exporter (no verification) as step, full and, where shipped,
   chunk graphs: the exporter is deterministic, so each graph has the shipped graph's initializer names,
   and an initializer that holds a parameter (as it is, transposed, sliced or concatenated with others)
   holds the marker values in the same places;
3. every parameter element is found by its unique marker value and read from the shipped graph's
   initializer at that place.

It then proves the recovery: the recovered model, exported again, has every initializer of every shipped
graph bit for bit; and `artrain eval` on the recovered checkpoint gives the shipped bits/dim (written
into config.json's "eval"). It raises if any parameter element is not found or any initializer differs.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from arexport.export import model_info, to_onnx
from artrain.checkpoint import data_info, save_checkpoint
from artrain.data import load_dataset
from artrain.evaluate import evaluate
from artrain.options import resolve_options
from artrain.train import Trainer

GRAPHS = ("step", "full", "chunk")


def floats(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every float32 initializer of the graph (subgraphs included: a chunk graph's Loop body), flattened."""
    found = {}

    def walk(graph):
        for init in graph.initializer:
            if init.data_type == onnx.TensorProto.FLOAT:
                found[init.name] = numpy_helper.to_array(init).ravel()
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    walk(attr.g)
    walk(proto.graph)
    return found


def mark(model: torch.nn.Module) -> None:
    """Set every parameter element to a distinct value (a random permutation of a grid no two floats share)."""
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    grid = (np.random.default_rng(0).permutation(total) + 1).astype(np.float64) / (total + 1) + 0.5  # (total,) in (0.5, 1.5)
    offset = 0
    with torch.no_grad():
        for p in params:
            p.copy_(torch.from_numpy(grid[offset:offset + p.numel()].astype(np.float32)).view_as(p))
            offset += p.numel()


def recover(name: str, models: Path, out: Path) -> None:
    folder = models / name
    opts = resolve_options(None, None, folder / "train.json", {})
    data = load_dataset(opts.data, bits=opts.bits)
    trainer = Trainer(opts, out, data)
    model = trainer.model.eval()
    config = trainer.config()
    shipped = {g: onnx.load(folder / f"{g}.onnx") for g in GRAPHS if (folder / f"{g}.onnx").exists()}
    mark(model)
    # marker value -> (graph, initializer, flat index); float32 markers are distinct by construction
    where: dict[float, tuple[str, str, int]] = {}
    for graph in shipped:
        for init, values in floats(to_onnx(model, model_info(model, data_info(config), graph, 18))).items():
            for i, v in enumerate(values.tolist()):
                where.setdefault(v, (graph, init, i))
    shipped_values = {g: floats(p) for g, p in shipped.items()}
    with torch.no_grad():
        for pname, p in model.named_parameters():
            flat = p.detach().numpy().ravel()
            missing = [v for v in flat.tolist() if v not in where]
            if missing:
                raise SystemExit(f"{name}: {len(missing)} of {flat.size} elements of {pname} are in no initializer")
            recovered = [shipped_values[g][init][i] for g, init, i in (where[v] for v in flat.tolist())]
            p.copy_(torch.tensor(np.array(recovered, dtype=np.float32)).view_as(p))
    for graph, proto in shipped.items():
        again = floats(to_onnx(model, model_info(model, data_info(config), graph, 18)))
        theirs = shipped_values[graph]
        if again.keys() != theirs.keys() or any(not np.array_equal(again[k], theirs[k]) for k in theirs):
            raise SystemExit(f"{name}: the recovered model's {graph} graph differs from the shipped one")
    result = evaluate(model, data.test)
    meta = {p.key: p.value for p in shipped["full"].metadata_props}
    print(f"{name}: recovered {sum(p.numel() for p in model.parameters()):,} parameters; every initializer of "
          f"{', '.join(shipped)} equal; test {result.bits_per_dim:.9f} bits/dim (shipped graph's metadata: "
          f"{float(meta['ar.bits_per_dim']):.9f})")
    trainer.step = opts.steps
    config = trainer.config({"split": "test", **asdict(result), "data": data.name})
    save_checkpoint(out, model, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    recover(args.name, args.models, args.out or args.models / args.name)


if __name__ == "__main__":
    main()
