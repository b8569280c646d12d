"""The ``arrun`` command line: thin Typer commands over the workers in ``commands.py``.

Library code raises ``contract.errors.ARError``; only ``contract.edge.run`` turns it into one
``error: ...`` line on stderr and an exit code (1 runtime, 2 usage, 130 interrupted). AR_DEBUG=1 shows the
traceback instead.
"""
from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .contract import edge

app = edge.typer_app(prog="arrun", no_args_is_help=True,
                     help="Sample, score and benchmark exported autoregressive models on onnxruntime (no torch).")


class Provider(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class Unknown(str, Enum):
    error = "error"
    skip = "skip"
    replace = "replace"


UnknownOpt = Annotated[Unknown, typer.Option(
    help="Text characters outside the model's alphabet: error, skip them, or replace them with a space.")]
ModelArg = Annotated[Path, typer.Argument(help="The .onnx file written by `arexport onnx` (or its .ort from `arexport ort`).",
                                          show_default=False)]
ProviderOpt = Annotated[Provider, typer.Option(help="Where to run: cpu, or cuda (needs `pip install .[gpu]`).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


@app.command(epilog="Examples:  arrun sample models/digits-pixelcnn/step.onnx -n 8 --out digits.png  |  "
                     "arrun sample models/speech-wavenet/step.onnx --condition seven --out - | aplay  |  "
                     "arrun sample models/pydoc-transformer/step.onnx --prompt 'The ' --temperature 0.8")
def sample(
    model: ModelArg,
    provider: ProviderOpt = Provider.cpu,
    num_samples: Annotated[Optional[int], typer.Option(
        "-n", "--num-samples",
        help="Samples to generate (per class when the model is conditional, has no unconditioned class and "
             "--condition is not given; "
             "default: one per prompt, or 1).", show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        help="Samples run together (default: all of them, up to 64).")] = None,
    temperature: Annotated[float, typer.Option(
        help="Divide the logits by this; 0 picks the most likely element (greedy).")] = 1.0,
    top_k: Annotated[int, typer.Option(help="Sample only among the k most likely elements (0: all).")] = 0,
    top_p: Annotated[float, typer.Option(
        help="Sample only among the most likely elements holding this probability mass (1: all).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed; sample i draws from its own generator seeded by (seed, i).")] = 0,
    condition: Annotated[Optional[str], typer.Option(
        help="Class (or word) of a conditional model, by id or name (`arrun info` lists them); a model with an unconditioned class uses it when this is not given.")] = None,
    prompt: Annotated[Optional[list[str]], typer.Option(
        help="Text the sample starts with (text models); repeat it for prompts of different lengths in one batch, "
             "sample i starting with prompt i mod their number.", show_default=False)] = None,
    prompts: Annotated[Optional[Path], typer.Option(
        help="A UTF-8 text file of prompts, one per line (as --prompt repeated).", show_default=False)] = None,
    unknown: UnknownOpt = Unknown.error,
    length: Annotated[Optional[int], typer.Option(
        help="Elements to generate (text and audio; default: the rest of the context, or 1 s of audio).")] = None,
    features: Annotated[Optional[Path], typer.Option(
        help="A vocoder's input: a .npy of log-mel frames (frames, mel bins) of the model's analysis; the samples "
             "are what they describe (hop samples per frame).")] = None,
    threads: Annotated[int, typer.Option(help="CPU threads per step (0: one per core).")] = 1,
    out: Annotated[Optional[Path], typer.Option(
        help="Output file: .png (+ .npy) for images (default samples.png), .wav for audio (default samples.wav), "
             "a text file for text (default: stdout only); - for stdout; a device or FIFO is written through.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Generate samples: a PNG grid and .npy for images, WAV files for audio, text on stdout. Takes the step
    graph, or a chunk graph (audio, sampled inside the graph: temperature 1, no top-k or top-p)."""
    from .commands import sample as work
    from .generate import SampleOptions
    from .sampling import SamplingOptions

    text = "" if not prompt else prompt[0] if len(prompt) == 1 else tuple(prompt)  # one prompt, or several
    options = SampleOptions(num_samples, batch_size, SamplingOptions(temperature, top_k, top_p), seed, condition,
                            text, length, unknown.value)
    stream = None if json_out or out not in (None, Path("-")) else sys.stdout  # --out FILE: the file only
    record = edge.run(lambda: work(model, options=options, provider=provider.value, threads=threads, out=out,
                                   stream=stream, progress=sys.stderr.isatty(), features=features, prompts=prompts))
    _report(record, json_out)


def _report(record: dict, json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(record))
        return
    files = ", ".join(record["files"]) or "stdout"
    rtf = f", real-time factor {record['real_time_factor']:.2f}" if "real_time_factor" in record else ""
    typer.echo(f"{record['num_samples']} sample(s) of {record['length']} to {files}: {record['steps']} steps in "
               f"{record['seconds']:.2f} s ({record['steps_per_s'] or 0:,.0f} steps/s{rtf})", err=True)


@app.command(epilog="Examples:  arrun vocode models/speech-vocoder/chunk.onnx hello.wav --out resynth.wav  |  "
                     "arrun vocode models/speech-vocoder/chunk.onnx hello.wav --out - | aplay")
def vocode(
    model: ModelArg,
    wav: Annotated[Path, typer.Argument(help="A PCM or mu-law WAV file: any sample rate and channels.",
                                        show_default=False)],
    provider: ProviderOpt = Provider.cpu,
    seed: Annotated[int, typer.Option(help="Seed of the sampling.")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads (0: one per core).")] = 1,
    out: Annotated[Optional[Path], typer.Option(
        help="Output WAV (default vocoded.wav); - streams it to stdout as it is made; a device or FIFO is written "
             "through.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Resynthesise a WAV with a vocoder: its log-mel features (computed as at training) turned back into audio
    by the model, as fast as the model goes (the real-time factor is printed)."""
    from .commands import vocode as work

    record = edge.run(lambda: work(model, wav, seed=seed, provider=provider.value, threads=threads, out=out,
                                   progress=sys.stderr.isatty() and out != Path("-")))
    _report(record, json_out)


@app.command(epilog="Examples:  arrun info models/pydoc-transformer/step.onnx  |  "
                     "arrun info models/digits-pixelcnn/full.onnx --json  |  arrun info models/speech-wavenet")
def info(model: ModelArg, json_out: JsonOpt = False) -> None:
    """Describe a model: family, graph, data and decoding, state, I/O names, versions, recorded bits/dim. Given a
    folder: its graph files and the commands that take each."""
    from .commands import info as work

    record = edge.run(lambda: work(model))
    if json_out:
        typer.echo(json.dumps(record))
        return
    if "graphs" in record:  # a folder: one row per graph file
        rows = [(g["file"], g["graph"] or "-", g["precision"] or "-", ", ".join(g["commands"]) or g["error"])
                for g in record["graphs"]]
        widths = [max(len(r[c]) for r in rows + [("file", "graph", "precision", "")]) for c in range(3)]
        for row in [("file", "graph", "precision", "commands")] + rows:
            typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
        return
    for key, value in record.items():
        if key == "state":
            value = "; ".join(f"{s['name']} {s['shape']} {s['dtype']}{' in place' * s['in_place']}"
                              for s in value) or "none"
        elif isinstance(value, (list, dict)):
            value = json.dumps(value)
        elif key == "alphabet" and value:
            value = repr(value)
        typer.echo(f"{key:>16}: {value}")


@app.command(epilog="Examples:  arrun score models/digits-pixelcnn/full.onnx sevens.npy --condition 7  |  "
                     "arrun score models/speech-wavenet/full.onnx words/ --json  (class subfolders)  |  "
                     "arrun score models/pydoc-transformer/full.onnx notes.txt --unknown skip")
def score(
    model: ModelArg,
    data: Annotated[Path, typer.Argument(
        help="Images (.npy of levels, PNG or a folder of PNGs), audio (WAV or a folder of WAVs) or a UTF-8 text file.",
        show_default=False)],
    condition: Annotated[Optional[str], typer.Option(
        help="Class to score under, by id or name (conditional models; optional where the model has an unconditioned class; a folder's class subfolders give their own).")] = None,
    unknown: UnknownOpt = Unknown.error,
    json_out: JsonOpt = False,
) -> None:
    """Negative log-likelihood of DATA in bits per dimension (and nats), scored like `artrain eval`."""
    from .commands import score as work

    record = edge.run(lambda: work(model, data, condition=condition, unknown=unknown.value))
    if json_out:
        typer.echo(json.dumps(record))
    else:
        typer.echo(f"{record['bits_per_dim']:.4f} bits/dim (bits per {record['unit']}), {record['nats_per_dim']:.4f} nats/dim over "
                   f"{record['n_dims']:,} dims ({record['n_sequences']} sequences, {record['graph']} graph)")


@app.command(epilog="Examples:  arrun bench models/speech-wavenet/step.onnx --steps 2000  |  "
                     "arrun bench models/pydoc-transformer/step.onnx --batch-size 16 --json")
def bench(
    model: ModelArg,
    provider: ProviderOpt = Provider.cpu,
    batch_size: Annotated[int, typer.Option(help="Samples per step.")] = 1,
    steps: Annotated[int, typer.Option(help="Timed steps of each loop (after a warm-up).")] = 600,
    json_out: JsonOpt = False,
) -> None:
    """Steps/s and per-step latency of the sampling loop, and the bare session.run rate beside it."""
    from .commands import bench as work

    record = edge.run(lambda: work(model, provider=provider.value, batch_size=batch_size, steps=steps))
    if json_out:
        typer.echo(json.dumps(record))
    else:
        r = record
        typer.echo(f"sampling loop: {r['steps_per_s']:,.0f} steps/s ({r['tokens_per_s']:,.0f} tokens/s), "
                   f"latency p50 {r['p50_ms']:.3f} ms, p90 {r['p90_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms\n"
                   f"bare session.run: {r['bare_steps_per_s']:,.0f} steps/s; the loop reaches "
                   f"{100 * r['loop_vs_bare']:.0f} % of it ({r['provider']}, batch {r['batch_size']})")
        if "real_time_factor" in r:
            typer.echo(f"real-time factor {r['real_time_factor']:.2f} (seconds of compute per second of audio; "
                       "below 1 is faster than real time)")


@app.command(epilog="Examples:  arrun compress models/pydoc-transformer/step.onnx notes.txt  "
                     "(writes notes.txt.arz)  |  arrun compress models/speech-wavenet/step.onnx seven.wav --condition seven --out seven.arz  |  "
                     "arrun compress models/digits-pixelcnn/step.onnx sevens.npy --condition 7 --json")
def compress(
    model: Annotated[Path, typer.Argument(
        help="The step graph (.onnx) written by `arexport onnx`.", show_default=False)],
    data: Annotated[Path, typer.Argument(
        help="The file: UTF-8 text of the model's alphabet (text), a mono WAV at the model's rate (audio: mu-law, or "
             "16-bit as arrun sample writes it, for a mu-law model; 16-bit PCM for a 16-bit one), a .npy of integer "
             "images (N, H, W) (images).",
        show_default=False)],
    out: Annotated[Optional[Path], typer.Option(
        help="The compressed file, ending in .arz (default: DATA.arz, which must not exist yet); - for "
             "stdout.")] = None,
    condition: Annotated[Optional[str], typer.Option(
        help="Class to code under, by id or name (conditional models; optional where the model has an unconditioned class; stored in the file).")] = None,
    chunk: Annotated[Optional[int], typer.Option(
        help="Elements per chunk, each coded from the model's initial state (text: default 4096, audio: 16384, at most the "
             "model's context; images: one image each).")] = None,
    batch_size: Annotated[int, typer.Option(help="Chunks coded side by side.")] = 64,
    json_out: JsonOpt = False,
) -> None:
    """Compress a file losslessly with the model: each element costs about -log2 p bits under its step graph (CPU,
    one thread, so that decompression recomputes the same probabilities). Needs the 'compress' extra."""
    from .compress import compress as work

    if json_out and out == Path("-"):
        edge.fail("--out - writes the compressed file to stdout, where --json writes the record; drop one of them", 2)
    record = edge.run(lambda: work(model, data, out=out, condition=condition, chunk=chunk, batch_size=batch_size,
                                   progress=sys.stderr.isatty()))
    if json_out:
        typer.echo(json.dumps(record))
        return
    bits = "" if not record["elements"] else \
        f": {record['bits_per_element']:.3f} bits/element payload, {record['file_bits_per_element']:.3f} whole file"
    typer.echo(f"{record['elements']:,} elements, {record['input_bytes']:,} bytes -> {record['output_bytes']:,} bytes "
               f"to {record['output']}{bits} ({record['elements_per_s'] or 0:,.0f} elements/s)", err=True)


@app.command(epilog="Examples:  arrun decompress models/pydoc-transformer/step.onnx notes.txt.arz  "
                     "(writes notes.txt)  |  arrun decompress models/speech-wavenet/step.onnx seven.arz --out seven.wav")
def decompress(
    model: Annotated[Path, typer.Argument(help="The step graph the file was compressed with.", show_default=False)],
    archive: Annotated[Path, typer.Argument(help="The .arz file written by `arrun compress`.", show_default=False)],
    out: Annotated[Optional[Path], typer.Option(
        help="The rebuilt file (default: ARCHIVE less .arz, which must not exist yet); - for stdout.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild the compressed file byte for byte; nothing is written unless its checksum matches the original's."""
    from .compress import decompress as work

    if json_out and out == Path("-"):
        edge.fail("--out - writes the file to stdout, where --json writes the record; drop one of them", 2)
    record = edge.run(lambda: work(model, archive, out=out, progress=sys.stderr.isatty()))
    if json_out:
        typer.echo(json.dumps(record))
        return
    typer.echo(f"{record['elements']:,} elements, {record['input_bytes']:,} bytes -> {record['output_bytes']:,} bytes "
               f"to {record['output']} ({record['elements_per_s'] or 0:,.0f} elements/s)", err=True)


def main() -> None:
    app()
