"""Every shipped graph in onnxruntime's ORT format (`arexport ort`): operators and file sizes, as a markdown table.

    python benchmarks/ort_sizes.py [--models models]

Per graph (models/*/*.onnx: step, full, chunk and their int8 and fp16 variants): the distinct operator types
and the node count of the .onnx (If branches included), the same of the .ort that onnxruntime's converter
writes (optimized at level 'all' for the CPU: fused operators, constants folded), the operator types its
required_operators.config lists, and both file sizes. Then the operators one reduced build needs to run
every shipped graph (the union of the configs), and the size of a reduced build as onnxruntime documents it.
Nothing is written under models/: the .ort files go to a temporary folder.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import onnx

from arexport.ortformat import convert_to_ort, ort_nodes

# onnxruntime's own figures, the only ones it published: "ONNX Runtime 1.13.1 Android library file size", in
# https://onnxruntime.ai/docs/tutorials/mobile/ (docs/tutorials/mobile/index.md) until the reduced 'mobile'
# packages were dropped in 1.19 (microsoft/onnxruntime pull request 21605, which removed the table). The
# 'mobile' package is a minimal build (ORT format only) with a reduced operator set chosen for common mobile
# models, wider than any one model's config; a per-model custom build is listed there as "coming soon".
DOCUMENTED_BUILDS = [("arm64", "onnxruntime-android (full build, every operator)", "12.2 MB"),
                     ("arm64", "onnxruntime-mobile (minimal build, reduced operators)", "3.2 MB"),
                     ("arm32", "onnxruntime-android (full build, every operator)", "8.4 MB"),
                     ("arm32", "onnxruntime-mobile (minimal build, reduced operators)", "2.3 MB")]
DOCUMENTED_SOURCE = ("ONNX Runtime 1.13.1, https://onnxruntime.ai/docs/tutorials/mobile/; the table was removed "
                     "with the mobile packages in 1.19, microsoft/onnxruntime#21605")


def onnx_nodes(graph: onnx.GraphProto) -> list[tuple[str, str]]:
    """(domain, operator type) of every node of ``graph`` and of its subgraphs ('ai.onnx' for the default domain)."""
    nodes = []
    for node in graph.node:
        nodes.append((node.domain or "ai.onnx", node.op_type))
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                nodes += onnx_nodes(attribute.g)
    return nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path(__file__).resolve().parent.parent / "models")
    args = parser.parse_args()
    graphs = sorted(args.models.glob("*/*.onnx"))
    if not graphs:
        sys.exit(f"error: no .onnx graphs under {args.models}; give the shipped models folder with --models")
    print("| graph | .onnx ops (types / nodes) | .ort ops (types / nodes) | config types | .onnx | .ort | .ort/.onnx |")
    print("|---|---|---|---|---|---|---|")
    union: set[tuple[str, str]] = set()
    with tempfile.TemporaryDirectory(prefix="ort-sizes-") as tmp:
        for i, graph in enumerate(graphs):
            result = convert_to_ort(graph, Path(tmp) / f"{i}.ort")
            before, after = onnx_nodes(onnx.load(str(graph)).graph), ort_nodes(result.path)
            listed = {(key.split(";")[0], op) for key, ops in result.operators.items() for op in ops}
            union |= listed
            print(f"| {graph.parent.name}/{graph.name} | {len(set(before))} / {len(before)} | "
                  f"{len(set(after))} / {len(after)} | {len(listed)} | {result.onnx_bytes / 1e6:.2f} MB | "
                  f"{result.ort_bytes / 1e6:.2f} MB | {result.ort_bytes / result.onnx_bytes:.2f} |")
    print(f"\nOne reduced build for all {len(graphs)} graphs needs {len(union)} operator types: "
          + ", ".join(f"{op}" + ("" if domain == "ai.onnx" else f" ({domain})") for domain, op in sorted(union)) + ".")
    print(f"\nReduced builds as onnxruntime documents them ({DOCUMENTED_SOURCE}):\n")
    print("| architecture | package | library size |\n|---|---|---|")
    for row in DOCUMENTED_BUILDS:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
