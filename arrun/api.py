"""The Python API: what the ``arrun`` commands do, in memory and without the command line (docs/python-api.md).

    from arrun import api
    model = api.load("models/pydoc-transformer/step.onnx")  # opened and checked once
    api.sample(model, prompt="The ", length=40, seed=0)["text"]  # -> ['The ...']
    api.score(model, "a short text")["bits_per_dim"]
    blob = api.compress(model, b"bytes to code")            # the .arz bytes; api.decompress(model, blob) -> the bytes

Each function takes a ``Model`` from ``load`` or a path (opened for the call). Every one is a thin layer over
the code behind the commands (``commands``, ``score``, ``compress.workers``), so a result here equals the
command's, and errors are the same: ``UsageError`` (a ValueError) for a bad input, ``ARError`` for a failure
at run time, each one line saying what to do.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .commands import _generate
from .contract.errors import UsageError
from .generate import SampleOptions, class_id
from .kinds import load_sequences
from .sampling import SamplingOptions
from .score import score as _score
from .session import Model, open_model

__all__ = ["Model", "load", "sample", "score", "compress", "decompress"]


def load(path: str | Path, *, provider: str = "cpu", threads: int = 1) -> Model:
    """Open the model file ``path`` (any graph) on ``provider`` ('cpu' | 'cuda') with ``threads`` intra-op
    threads (0: all cores); its metadata and graph are checked here. UsageError for a bad file."""
    return open_model(Path(path), provider=provider, threads=threads)


def _opened(model: Model | str | Path, graphs: tuple[str, ...], what: str) -> Model:
    """``model`` itself when it is a Model of one of ``graphs``, else the file it names opened for them."""
    if not isinstance(model, Model):
        return open_model(Path(model), graph=graphs, command=what)
    if model.info.graph not in graphs:
        raise UsageError(f"{model.path} is a {model.info.graph} graph and {what} needs the {' or '.join(graphs)} "
                         f"graph; load {model.path.with_name(graphs[0] + '.onnx')} instead")
    return model


def sample(model: Model | str | Path, *, prompt: str | tuple[str, ...] = "", n: int | None = None,
           length: int | None = None, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
           condition: int | str | None = None, out: str | Path | None = None) -> dict:
    """Draw samples from a step (or chunk) graph -> the record `arrun sample --json` prints. For text models it
    holds ``text`` (a str per sample; a utf8 model's bytes decoded with U+FFFD where invalid) and ``tokens``;
    images and audio are written to ``out`` (default: the kind's file, as the command) and listed in ``files``.
    ``n`` samples (default one per prompt), ``length`` new elements each (default: the kind's), ``prompt`` one
    text or several (sample i starts with prompt i mod k); the same seed gives the same samples."""
    model = _opened(model, ("step", "chunk"), "api.sample")
    options = SampleOptions(num_samples=n, sampling=SamplingOptions(temperature, top_k, top_p), seed=seed,
                            condition=condition, prompt=prompt, length=length)
    return _generate(model, options, None if out is None else Path(out), None, False)


def score(model: Model | str | Path, data: str | bytes | Path, *, condition: int | str | None = None) -> dict:
    """Bits per element of ``data`` under a full (or step) graph -> {bits_per_dim, nats_per_dim, n_dims, ...}, as
    `arrun score` gives. ``data``: a Path (a file, or a folder of the kind's files), bytes (a file's contents,
    framed as `arrun compress` frames it: a WAV's samples, a text's characters or bytes), or a str (text,
    as its UTF-8 bytes). A conditional model needs ``condition`` (a class id or name), unless it declares an unconditioned id."""
    model = _opened(model, ("full", "step"), "api.score")
    condition = class_id(condition, model.info)
    if isinstance(data, Path):
        sequences = [seq for seq, _ in load_sequences(data, model.info)]
    else:
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        sequences = [model.kind.frame(raw, Path("<data>"), model.info).elements]
    if not all(len(s) for s in sequences):
        raise UsageError("the data is empty; give at least one element to score")
    return _score(model, [np.asarray(s, np.int64) for s in sequences], condition)


def compress(model: Model | str | Path, data: bytes, *, condition: int | str | None = None,
             chunk: int | None = None) -> bytes:
    """``data`` (a file's bytes) coded losslessly under a step graph -> the bytes of an .arz file, which
    `arrun decompress` (or ``decompress``) rebuilds. The model file is opened as `arrun compress` opens it
    (CPU, one thread: the floats the decoder must agree on). UsageError for data the model cannot code;
    needs the 'compress' extra."""
    from .compress.workers import _open, encode

    model = _open(model.path if isinstance(model, Model) else Path(model), "api.compress")  # CPU, 1 thread
    blob, _ = encode(model, bytes(data), Path("<data>"), condition=condition, chunk=chunk)
    return blob


def decompress(model: Model | str | Path, archive: bytes) -> bytes:
    """The bytes an .arz (``compress``'s result, or a file `arrun compress` wrote) was made from; UsageError
    for an archive of another model, ARError when it is damaged (its checksum is the original's)."""
    from .compress.container import unpack
    from .compress.workers import _open, check_archive, decode

    model = _open(model.path if isinstance(model, Model) else Path(model), "api.decompress")  # CPU, 1 thread
    header, words = unpack(bytes(archive), Path("<archive>"))
    check_archive(model, header, Path("<archive>"))
    return decode(model, header, words, Path("<archive>"))

