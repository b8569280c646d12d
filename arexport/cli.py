"""`arexport`: thin Typer commands over ``export_onnx``, ``verify_onnx`` and ``export_genai``.

Errors become one line on stderr through ``arrun.contract.edge``, ``error: <what>; <what to do>``, and an
exit code: 2 for bad input (arguments, checkpoint, paths), 1 when export or verification fails (a parity
failure prints its full report on stdout first), 130 when interrupted. Tracebacks only with AR_DEBUG=1.
Each command checks its paths (``_check_inputs``) before it imports the worker and with it torch and onnx,
so a typo or a missing file is said at once.
"""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from artrain.checkpoint import read_config
from arrun.contract import edge
from arrun.contract.errors import UsageError
from arrun.contract.schema import GRAPH_KINDS
from arrun.contract.files import check_model_file

from .constants import DEFAULT_MAX_LENGTH, DEFAULT_OPSET, MIN_ONNXRUNTIME, SUPPORTED_OPSETS, VARIANTS

if TYPE_CHECKING:
    from .export import ExportResult

app = edge.typer_app(prog="arexport", no_args_is_help=True,
                     help="Export artrain checkpoints to self-describing ONNX graphs and verify them.")

CheckpointArg = Annotated[Path, typer.Argument(help="Checkpoint directory written by `artrain fit`.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object instead of text.")]


Graph = Enum("Graph", {kind: kind for kind in GRAPH_KINDS}, type=str)  # arexport.graphs.GRAPHS builds each


@app.command("onnx", epilog="Examples:  arexport onnx runs/digits --graph step  |  "
                             "arexport onnx runs/digits --graph full --out digits-full.onnx --json")
def onnx_command(
    checkpoint_dir: CheckpointArg,
    graph: Annotated[Optional[Graph], typer.Option("--graph", help="step: one element per call with explicit state (for "
                                                   "generation); full: the parallel graph over a whole sequence (for scoring); "
                                                   "chunk: the step rolled N times in one graph, sampling inside it (WaveNet: "
                                                   "fastest generation).", show_default=False)] = None,
    step_graph: Annotated[bool, typer.Option("--step-graph", help="Same as --graph step.")] = False,
    full_graph: Annotated[bool, typer.Option("--full-graph", help="Same as --graph full.")] = False,
    chunk_graph: Annotated[bool, typer.Option("--chunk-graph", help="Same as --graph chunk.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output file; default CHECKPOINT_DIR/<graph>.onnx.", show_default=False)] = None,
    opset: Annotated[int, typer.Option("--opset", help=f"ONNX opset, {SUPPORTED_OPSETS[0]}..{SUPPORTED_OPSETS[-1]}; opset 18 loads on onnxruntime >= {MIN_ONNXRUNTIME[18]}.")] = DEFAULT_OPSET,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Prove parity with the eager model before the file is written.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Export a checkpoint's model as an ONNX step, full or chunk graph, verified by default."""
    def work() -> ExportResult:
        chosen = ([graph.value] if graph else []) + [
            kind for kind, flag in (("step", step_graph), ("full", full_graph), ("chunk", chunk_graph)) if flag]
        if len(chosen) != 1:
            raise UsageError("choose exactly one graph kind; pass --graph step|full|chunk (or its alias "
                             "--step-graph, --full-graph or --chunk-graph)")
        _check_inputs(checkpoint_dir)
        from .export import export_onnx
        return _reporting_parity(lambda: export_onnx(checkpoint_dir, out, graph=chosen[0], opset=opset, force=force,
                                                     verify=verify), as_json)
    result = edge.run(work)
    typer.echo(json.dumps(result.to_dict()) if as_json else "\n".join(_export_lines(result)))


@app.command("quantize", epilog="Examples:  arexport quantize models/digits-pixelcnn/step.onnx runs/digits-pixelcnn "
                                  "--precision int8  |  arexport quantize runs/x/step.onnx runs/x --precision fp16 --json")
def quantize_command(
    source: Annotated[Path, typer.Argument(help="The fp32 step or full graph written by `arexport onnx`.", show_default=False)],
    checkpoint_dir: CheckpointArg,
    precision: Annotated[str, typer.Option("--precision", help="int8 (for CPU: dynamic quantization) or fp16 (for GPU).",
                                           show_default=False)],
    out: Annotated[Optional[Path], typer.Option("--out", help="Output file; default beside SOURCE: step.int8.onnx, ...", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write an int8 or fp16 variant of an exported graph, only if its validation bits/dim is within
    1 % (int8) or 0.1 % (fp16, which must also keep 64 greedy tokens but for near-ties) of the fp32 graph's."""
    def work():
        if precision not in VARIANTS:
            raise UsageError(f"unknown precision {precision!r}; choose int8 or fp16 (the exported graph is fp32)")
        _check_inputs(checkpoint_dir, source)
        from .variants import make_variant
        return make_variant(source, checkpoint_dir, precision, out, force=force)
    result = edge.run(work)
    from .variants import NEAR_TIE, TOLERANCE
    gate = result.gate
    lines = [f"wrote {result.path} ({result.size_bytes / 1e6:.2f} MB, {100 * result.size_bytes / result.source_bytes:.0f} % "
             f"of the fp32 graph): {result.info.family} {result.info.graph} graph at {precision}, onnxruntime >= "
             f"{result.info.min_onnxruntime}, in {result.seconds:.1f} s",
             f"  gate passed: {gate['bits_per_dim']:.4f} bits/dim on the {gate['split']} split vs fp32 "
             f"{gate['reference_bits_per_dim']:.4f} ({100 * gate['relative_change']:+.3f} %, at most "
             f"+{100 * TOLERANCE[precision]:g} %)"]
    if "greedy_steps" in gate:
        ties = gate["greedy_near_ties"]
        lines.append(f"  greedy tokens identical over {gate['greedy_steps']} steps at batch {gate['greedy_batch']}"
                     + (f", but for {ties} of the fp32 graph's near-ties (within {NEAR_TIE:g} nats)" if ties else ""))
    typer.echo(json.dumps(result.to_dict()) if as_json else "\n".join(lines))


@app.command("genai", epilog="Example:  arexport genai runs/pydoc-transformer --out pydoc-genai")
def genai_command(
    checkpoint_dir: CheckpointArg,
    out: Annotated[Path, typer.Option("--out", help="Output folder (model.onnx and genai_config.json).", show_default=False)],
    max_length: Annotated[int, typer.Option("--max-length", help="Most positions onnxruntime-genai generates (its KV cache grows to this).")] = DEFAULT_MAX_LENGTH,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Export a Transformer checkpoint as a folder onnxruntime-genai runs (growing KV cache), verified."""
    def work():
        _check_inputs(checkpoint_dir)
        from .genai import export_genai
        return _reporting_parity(lambda: export_genai(checkpoint_dir, out, max_length=max_length, force=force),
                                 as_json)
    result = edge.run(work)
    from .genai import CONFIG_FILE, MODEL_FILE
    lines = [f"wrote {result.folder}/{{{MODEL_FILE},{CONFIG_FILE}}}: onnxruntime-genai model type llama, "
             f"max length {result.max_length}", *result.report.lines()]
    typer.echo(json.dumps(result.to_dict()) if as_json else "\n".join(lines))


@app.command("ort", epilog="Examples:  arexport ort models/digits-pixelcnn/step.onnx  |  "
                           "arexport ort runs/x/step.onnx --out phone/x.ort --force --json")
def ort_command(
    model: Annotated[Path, typer.Argument(help="The exported .onnx graph (step, full or chunk, any precision).", show_default=False)],
    out: Annotated[Optional[Path], typer.Option("--out", help="Output .ort file; default MODEL.ort beside MODEL.onnx. Its "
                                                "operator config is written beside it as NAME.required_operators.config.",
                                                show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing .ort and config.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Convert an exported graph to onnxruntime's ORT format (mobile and reduced-size builds), with the
    required_operators.config such a build takes; the metadata carries over, checked."""
    def work():
        check_model_file(Path(model))
        from .ortformat import convert_to_ort
        return convert_to_ort(model, out, force=force)
    result = edge.run(work)
    operators = sum(len(ops) for ops in result.operators.values())
    lines = [f"wrote {result.path} ({result.ort_bytes / 1e6:.2f} MB; the .onnx: {result.onnx_bytes / 1e6:.2f} MB): "
             f"{result.info.family} {result.info.graph} graph at {result.info.precision}, metadata carried over",
             f"wrote {result.config}: {operators} operator types in {len(result.operators)} opsets "
             "(onnxruntime's build.py --minimal_build --include_ops_by_config takes it)"]
    typer.echo(json.dumps(result.to_dict()) if as_json else "\n".join(lines))


@app.command("verify", epilog="Example:  arexport verify runs/digits/step.onnx runs/digits")
def verify_command(
    model: Annotated[Path, typer.Argument(help="The exported .onnx file.", show_default=False)],
    checkpoint_dir: CheckpointArg,
    as_json: JsonOption = False,
) -> None:
    """Check an exported file and prove its parity with the checkpoint it came from."""
    def work():
        _check_inputs(checkpoint_dir, model)
        from .verify import verify_onnx
        return _reporting_parity(lambda: verify_onnx(model, checkpoint_dir), as_json)
    report = edge.run(work)
    lines = [f"{model}: {report.family} {report.graph} graph", *report.lines()]
    typer.echo(json.dumps(report.to_dict()) if as_json else "\n".join(lines))


@app.command("web", epilog="Examples:  arexport web models/digits-pixelcnn/step.onnx --out digits-page  |  "
                             "arexport web models/speech-vocoder/chunk.onnx --out vocoder-page --force --json")
def web_command(
    model: Annotated[Path, typer.Argument(help="The step or chunk graph to sample in the browser.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Output folder: the page, the model and onnxruntime-web's wasm "
                                      "files, for any static file server.", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing page folder.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write a static page that samples MODEL in the browser (onnxruntime-web, wasm, one thread), offline."""
    def work():
        from .webpage import write_web_page
        return write_web_page(model, out, force=force)
    page = edge.run(work)
    from .webpage import MODEL_FILE
    lines = [f"wrote {page.folder}/ ({len(page.sizes)} files, {page.size_bytes / 1e6:.1f} MB, the model "
             f"{page.sizes[MODEL_FILE] / 1e6:.1f} MB): a page sampling the {page.info.family} {page.info.graph} graph "
             f"({page.info.data_kind})",
             f"  try it: python -m http.server --bind 127.0.0.1 --directory {page.folder} 8000, then open "
             "http://127.0.0.1:8000/"]
    typer.echo(json.dumps(page.to_dict()) if as_json else "\n".join(lines))


def _export_lines(result: ExportResult) -> list[str]:
    info = result.info
    lines = [f"wrote {result.path} ({result.size_bytes / 1e6:.2f} MB): {info.family} {info.graph} graph, opset "
             f"{info.opset}, IR {result.ir_version}, onnxruntime >= {info.min_onnxruntime}, exported in {result.export_seconds:.1f} s",
             f"  inputs:  {_names(info.input_names())}", f"  outputs: {_names(info.output_names())}"]
    return lines + (result.report.lines() if result.report else ["not verified (--no-verify)"])


def _names(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 6 else f"{', '.join(names[:4])}, ..., {names[-1]} ({len(names)} in all)"


def _check_inputs(checkpoint_dir: Path, graph: Path | None = None) -> None:
    """The checks that need neither torch nor onnx, made first: ``graph`` (the .onnx read) is a readable file
    and the checkpoint's config.json reads. UsageError otherwise; the worker checks everything else."""
    if graph is not None:
        check_model_file(Path(graph))
    read_config(checkpoint_dir)


def _reporting_parity(work, as_json: bool):
    """``work()``, printing a parity failure's full report on stdout before the edge prints the error."""
    from .verify import ParityError

    try:
        return work()
    except ParityError as e:
        typer.echo(json.dumps(e.report.to_dict()) if as_json else "\n".join(e.report.lines()))
        raise


def main() -> None:
    app()


if __name__ == "__main__":
    main()
