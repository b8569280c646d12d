"""``compress`` and ``decompress``: the keyword-only workers behind ``arrun compress`` and ``arrun decompress``.

Each opens and checks the model and the input before any coding; the data kind frames the file
(``DataKind.frame``/``unframe``), ``loop.run_chunks`` steps the model, ``digits`` codes the elements and
``container`` packs the result. Nothing is written unless it is complete (and, decompressing, checksummed).
"""
from __future__ import annotations

import base64
import hashlib
import re
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..contract.codecs import MAX_INPUT_BYTES, read_bytes
from ..contract.errors import ARError, UsageError, first_line
from ..contract.files import sha256_file
from ..generate import check_condition, class_id
from ..kinds import DataKind, Framed
from ..outputs import STDOUT, check_output, write_files
from ..session import ORT_ERRORS, Model, open_model
from .container import pack, unpack
from .digits import decode_elements, digits_of, encode_elements
from .loop import run_chunks

_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")  # what b64encode writes
DEFAULT_BATCH = 64  # chunks coded side by side
MAX_BATCH = 4096
EXTRA = "arrun compress needs the 'compress' extra: pip install 'autoregressive-on-device[compress]'"


def compress(model_path: Path, data: Path, *, out: Path | None = None, condition: int | str | None = None,
             chunk: int | None = None, batch_size: int = DEFAULT_BATCH, progress: bool = False) -> dict:
    """Compress ``data`` into ``out`` (default DATA.arz, never replaced; - for stdout) -> the summary record.
    Raises UsageError for a model or file it cannot code losslessly, before any coding."""
    _constriction()  # the extra, before anything is read
    model = _open(model_path, "arrun compress")
    condition, data = _checked_options(model, condition, batch_size), Path(data)
    out = _output(out, data.with_name(data.name + ".arz"), (".arz",))
    raw = _read(data, "file to compress")
    blob, record = encode(model, raw, data, condition=condition, chunk=chunk, batch_size=batch_size,
                          progress=progress)
    write_files({out: blob})
    return {"model": str(model_path), "input": str(data), "output": str(out), **record}


def encode(model: Model, raw: bytes, data: Path, *, condition: int | str | None = None, chunk: int | None = None,
           batch_size: int = DEFAULT_BATCH, progress: bool = False) -> tuple[bytes, dict]:
    """A file's bytes ``raw`` (``data`` names it in messages) -> (the .arz bytes, the record's numbers).
    UsageError for a file or option the model cannot code losslessly, before any coding."""
    queue, family = _constriction()
    info, condition = model.info, _checked_options(model, condition, batch_size)
    framed = model.kind.frame(raw, data, info)
    chunk = _chunk(chunk, framed, model.kind, info)
    encoder, head = queue.RangeEncoder(), info.head

    def code(outputs: np.ndarray, index: np.ndarray) -> np.ndarray:
        levels = framed.elements[index]  # (n,)
        encode_elements(encoder, family, head, outputs, levels)
        return levels

    start = time.perf_counter()
    _coding(lambda: run_chunks(model, len(framed.elements), chunk, batch_size, condition, code, progress))
    seconds = time.perf_counter() - start
    words = encoder.get_compressed()  # (N,) uint32
    blob = pack(_header(model, framed, raw, condition, chunk, batch_size), words)
    n = len(framed.elements)
    return blob, {"data_kind": info.data_kind,
                  "condition": condition, "elements": n, "input_bytes": len(raw), "output_bytes": len(blob),
                  "payload_bytes": 4 * len(words), "bits_per_element": 32 * len(words) / n if n else None,
                  "file_bits_per_element": 8 * len(blob) / n if n else None, "chunk": chunk,
                  "batch_size": batch_size, "digits": digits_of(info.vocab_size), "seconds": seconds,
                  "elements_per_s": n / seconds if n and seconds else None}


def _checked_options(model: Model, condition: int | str | None, batch_size: int) -> int | None:
    """The condition as a class id, given exactly when the model is conditional, and the batch size in range."""
    condition = class_id(condition, model.info)
    check_condition(condition, model.info, required=True)
    if not 1 <= batch_size <= MAX_BATCH:
        raise UsageError(f"--batch-size must be in 1..{MAX_BATCH}, got {batch_size}")
    return condition


def decompress(model_path: Path, archive: Path, *, out: Path | None = None, progress: bool = False) -> dict:
    """Rebuild the file ``archive`` was made from into ``out`` (default: its name less .arz, never replaced;
    - for stdout) -> the summary record. Nothing is written unless the result's sha256 is the original's."""
    _constriction()  # the extra, before anything is read
    archive = Path(archive)
    raw = _read(archive, ".arz file written by `arrun compress`")
    header, words = unpack(raw, archive)
    model = _open(model_path, "arrun decompress")
    check_archive(model, header, archive, model_path)
    default = archive.with_suffix("") if archive.suffix == ".arz" else None
    out = _output(out, default, ())
    start = time.perf_counter()
    rebuilt = decode(model, header, words, archive, progress=progress)
    seconds = time.perf_counter() - start
    write_files({out: rebuilt})
    n = header["elements"]
    return {"model": str(model_path), "input": str(archive), "output": str(out), "data_kind": model.info.data_kind,
            "elements": n, "input_bytes": len(raw), "output_bytes": len(rebuilt), "seconds": seconds,
            "elements_per_s": n / seconds if n and seconds else None}


def check_archive(model: Model, header: dict, archive: Path, model_path: Path | None = None) -> None:
    """The header (from ``container.unpack``) was written with ``model`` and its numbers fit it; UsageError for
    another model, ARError for a damaged header."""
    digest = sha256_file(model.path)
    if digest != header["model_sha256"]:
        raise UsageError(f"{archive} was compressed with the model of sha256 {header['model_sha256'][:12]}, and "
                         f"{model_path or model.path} has sha256 {digest[:12]}; give the model file it was "
                         "compressed with")
    _check_header(header, model.kind, model.info, archive)


def decode(model: Model, header: dict, words: np.ndarray, archive: Path, *, progress: bool = False) -> bytes:
    """The original file's bytes from a checked header (``check_archive``) and its payload words (N,) uint32;
    ARError when the payload does not decode or the result is not the original (its sha256)."""
    queue, family = _constriction()
    decoder, head = queue.RangeDecoder(words), model.info.head
    elements = np.zeros(header["elements"], np.int64)  # (n,) bounded by _check_header

    def code(outputs: np.ndarray, index: np.ndarray) -> np.ndarray:
        try:
            elements[index] = decode_elements(decoder, family, head, outputs)
        except Exception as e:  # constriction's complaint about a stream it cannot read
            raise ARError(f"{archive} is corrupted (its payload does not decode: {first_line(e, 100)}); "
                          "nothing was written") from None
        return elements[index]

    _coding(lambda: run_chunks(model, len(elements), header["chunk"], header["batch"], header["condition"], code,
                               progress))
    return _rebuilt(header, elements, model.kind, model.info, archive)


def _constriction():
    """(constriction's queue coder module, the categorical family), imported on first use."""
    try:
        import constriction
    except ImportError:
        raise ARError(EXTRA) from None
    return constriction.stream.queue, constriction.stream.model.Categorical(perfect=False)


def _open(model_path: Path, command: str) -> Model:
    """The step graph on the CPU with one intra-op thread (the floats both sides must agree on)."""
    model = open_model(model_path, provider="cpu", threads=1, graph=("step",), command=command)
    info = model.info
    if info.features:
        raise UsageError(f"{model_path} is a vocoder: its elements depend on mel features the decoder would not "
                         "have; compress with a model that needs no features")
    digits_of(info.vocab_size)
    return model


def _chunk(chunk: int | None, framed: Framed, kind: DataKind, info) -> int:
    """The chunk length: fixed by the format (one image), else ``chunk`` or the kind's default, within the
    context."""
    room = info.max_length or None
    if framed.chunk is not None:
        if chunk is not None and chunk != framed.chunk:
            raise UsageError(f"{kind.name}s are coded one per chunk ({framed.chunk} {kind.unit}s); drop --chunk")
        if room and framed.chunk > room:
            raise UsageError(f"an {kind.name} has {framed.chunk} {kind.unit}s and the model's context is {room}")
        return framed.chunk
    if chunk is None:
        return min(kind.compress_chunk, room or kind.compress_chunk)
    if not 1 <= chunk <= (room or MAX_INPUT_BYTES):
        raise UsageError(f"--chunk must be in 1..{room or MAX_INPUT_BYTES:,}"
                         f"{' (the model context)' if room else ''}, got {chunk}")
    return chunk


def _header(model: Model, framed: Framed, raw: bytes, condition: int | None, chunk: int, batch: int) -> dict:
    """The .arz header of ``raw`` framed as ``framed`` (``container``'s docstring says what each key means)."""
    info = model.info
    return {"model_sha256": sha256_file(model.path), "onnxruntime": ort.__version__, "numpy": np.__version__,
            "data_kind": info.data_kind, "layout": framed.layout, "vocab_size": info.vocab_size,
            "digits": digits_of(info.vocab_size), "elements": len(framed.elements), "condition": condition,
            "chunk": chunk, "batch": batch,
            "before": base64.b64encode(framed.before).decode(), "after": base64.b64encode(framed.after).decode(),
            "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


def _check_header(header: dict, kind: DataKind, info, archive: Path) -> None:
    """The header's numbers fit the model and stay within what a file of ``bytes`` bytes can hold."""
    ok = (header["data_kind"] == info.data_kind and header["layout"].get("format") == kind.layout_format
          and header["vocab_size"] == info.vocab_size
          and header["digits"] == digits_of(info.vocab_size) and 0 <= header["elements"] <= header["bytes"]
          and header["bytes"] <= MAX_INPUT_BYTES and 1 <= header["batch"] <= MAX_BATCH
          and 1 <= header["chunk"] <= (info.max_length or MAX_INPUT_BYTES)
          and (header["condition"] is None) == (info.num_classes == 0)
          and (header["condition"] is None or 0 <= header["condition"] < info.num_classes)
          # every element is at least one byte of the file, and before/after (base64) are bytes of it too
          and all(_BASE64.fullmatch(header[k]) for k in ("before", "after"))
          and header["elements"] + sum(3 * len(header[k]) // 4 - header[k][-2:].count("=") for k in ("before", "after"))
          <= header["bytes"])
    if not ok:
        raise ARError(f"{archive} is corrupted (its header disagrees with the model); nothing was written")


def _rebuilt(header: dict, elements: np.ndarray, kind: DataKind, info, archive: Path) -> bytes:
    """The original file's bytes from the decoded elements (n,) and the header; ARError unless its sha256 is
    the header's."""
    try:
        rebuilt = base64.b64decode(header["before"]) + kind.unframe(elements, header["layout"], info) \
            + base64.b64decode(header["after"])
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):
        rebuilt = b""  # a damaged layout: the checksum below says so
    if len(rebuilt) != header["bytes"] or hashlib.sha256(rebuilt).hexdigest() != header["sha256"]:
        versions = (header["onnxruntime"], header["numpy"]), (ort.__version__, np.__version__)
        where = "" if versions[0] == versions[1] else (
            f"; it was compressed with onnxruntime {versions[0][0]} and numpy {versions[0][1]}, and this is "
            f"onnxruntime {versions[1][0]} and numpy {versions[1][1]}: decompress with those")
        raise ARError(f"{archive} is corrupted (checksum mismatch){where}; nothing was written")
    return rebuilt


def _output(out: Path | None, default: Path | None, suffixes: tuple[str, ...]) -> Path:
    """--out as given (checked), or ``default`` when it does not exist yet."""
    if out is None:
        if default is None:
            raise UsageError("the input does not end in .arz; give --out")
        if default.exists():
            raise UsageError(f"{default} exists; give --out to replace it or to write elsewhere")
        out = default
    out = Path(out)
    if out != STDOUT:
        check_output(out, suffixes)
    return out


def _read(path: Path, what: str) -> bytes:
    try:
        return read_bytes(path, what)
    except OSError as e:
        raise UsageError(f"cannot read {path} ({e.strerror}); check the path and its permissions") from None


def _coding(work) -> None:
    try:
        work()
    except ORT_ERRORS as e:
        raise ARError(f"onnxruntime failed while coding ({first_line(e)}); rerun with AR_DEBUG=1 for details") from None
