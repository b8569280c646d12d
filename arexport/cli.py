"""`arexport`: thin Typer commands over ``export_onnx`` and ``verify_onnx``.

Errors become one line on stderr, ``error: <what>; <what to do>``, and an exit code: 2 for bad input
(arguments, checkpoint, paths), 1 when export or verification fails. Tracebacks only with AR_DEBUG=1.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from artrain.errors import ArtrainError, UsageError

from .errors import first_line
from .export import DEFAULT_OPSET, MIN_ONNXRUNTIME, SUPPORTED_OPSETS, ExportResult, export_onnx
from .verify import ParityError, verify_onnx

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Export artrain checkpoints to self-describing ONNX graphs and verify them.")

CheckpointArg = Annotated[Path, typer.Argument(help="Checkpoint directory written by `artrain fit`.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object instead of text.")]


@app.command("onnx")
def onnx_command(
    checkpoint_dir: CheckpointArg,
    step_graph: Annotated[bool, typer.Option("--step-graph", help="Export the single-step graph with explicit state (for generation).")] = False,
    full_graph: Annotated[bool, typer.Option("--full-graph", help="Export the parallel graph over a whole sequence (for scoring).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output file; default CHECKPOINT_DIR/step.onnx or CHECKPOINT_DIR/full.onnx.", show_default=False)] = None,
    opset: Annotated[int, typer.Option("--opset", help=f"ONNX opset, {SUPPORTED_OPSETS[0]}..{SUPPORTED_OPSETS[-1]}; opset 18 loads on onnxruntime >= {MIN_ONNXRUNTIME[18]}.")] = DEFAULT_OPSET,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Prove parity with the eager model before the file is written.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Export a checkpoint's model as an ONNX step graph or full graph, verified by default."""
    with _errors(as_json):
        if step_graph == full_graph:
            raise UsageError("choose exactly one graph kind; pass --step-graph or --full-graph")
        result = export_onnx(checkpoint_dir, out, graph="step" if step_graph else "full", opset=opset,
                             force=force, verify=verify)
        typer.echo(json.dumps(result.to_dict()) if as_json else "\n".join(_export_lines(result)))


@app.command("verify")
def verify_command(
    model: Annotated[Path, typer.Argument(help="The exported .onnx file.", show_default=False)],
    checkpoint_dir: CheckpointArg,
    as_json: JsonOption = False,
) -> None:
    """Check an exported file and prove its parity with the checkpoint it came from."""
    with _errors(as_json):
        report = verify_onnx(model, checkpoint_dir)
        lines = [f"{model}: {report.family} {report.graph} graph", *report.lines()]
        typer.echo(json.dumps(report.to_dict()) if as_json else "\n".join(lines))


def _export_lines(result: ExportResult) -> list[str]:
    info = result.info
    lines = [f"wrote {result.path} ({result.size_bytes / 1e6:.2f} MB): {info.family} {info.graph} graph, opset "
             f"{info.opset}, IR {result.ir_version}, onnxruntime >= {info.min_onnxruntime}, exported in {result.export_seconds:.1f} s",
             f"  inputs:  {_names(info.input_names())}", f"  outputs: {_names(info.output_names())}"]
    return lines + (result.report.lines() if result.report else ["not verified (--no-verify)"])


def _names(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 6 else f"{', '.join(names[:4])}, ..., {names[-1]} ({len(names)} in all)"


@contextlib.contextmanager
def _errors(as_json: bool):
    """Domain errors -> 'error: ...' on stderr and their exit code (a parity failure prints its full
    report on stdout first); anything else is a bug (exit 1)."""
    if os.environ.get("AR_DEBUG") == "1":
        yield
        return
    try:
        yield
    except ArtrainError as e:
        if isinstance(e, ParityError):
            typer.echo(json.dumps(e.report.to_dict()) if as_json else "\n".join(e.report.lines()))
        typer.echo(f"error: {' '.join(str(e).split())}", err=True)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("error: interrupted; nothing was written", err=True)
        raise typer.Exit(130) from None
    except Exception as e:
        typer.echo(f"error: unexpected {type(e).__name__}: {first_line(e)}; rerun with AR_DEBUG=1 and report the "
                   "traceback", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
