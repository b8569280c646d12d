"""Lossless compression with a model: ``arrun compress`` and ``arrun decompress``.

The step graph gives every element a distribution; a range coder (constriction's queue coder) spends about
-log2 p(element) bits on it, and the decoder, stepping the same model on the elements it has decoded so far,
recovers them. Both sides make exactly the same ``Stepper.step`` calls (CPU provider, one intra-op thread, the
same batch shapes and inputs) and the same numpy calls after them, so the floats, the probabilities and the
coder's integer tables agree bit for bit.

Coding (``encode_elements`` / ``decode_elements`` need outputs and a head, no model):
- an element of V <= 65536 levels is D base-256 digits, most significant first (D = 1 for V <= 256, else 2);
  the digit of size s = 256^(D-1-d) picks the block [base + j s, base + (j + 1) s), clipped to V, holding the
  element, with probabilities the differences of the head's CDF at the block edges (the chain rule: exact);
- the elements are cut into chunks of ``chunk``, each coded from the model's initial state; ``batch`` chunks at
  a time are the rows of one batch (the last group smaller); a row whose chunk has ended steps on with token 0
  and is ignored. Order in the coder: step by step; within a step digit 0 of the active rows in row order,
  then digit 1.

Container (.arz), little-endian: b"ARZ\\x00" | u32 container version | u32 header length H | H bytes of JSON
header, zlib-compressed with the preset dictionary ``HEADER_DICTIONARY`` (part of the container version: the
keys and usual values, so that a short file's header costs ~150 bytes, not ~330) | u64 payload words N | N u32 words of the range coder, and nothing after. The header: model_sha256,
onnxruntime and numpy (the versions that computed the floats), data_kind, layout (how elements become bytes: text, wav
with its sample width, npy with dtype, shape and order), vocab_size, digits, elements, condition, chunk,
batch, before and after (base64: every byte of the file before and after its elements, verbatim), bytes and
sha256 of the original file.

The floats depend on the onnxruntime and numpy builds and the CPU's instruction set: decompress with the
versions that compressed, on a CPU of the same kind. A mismatch is caught by the checksum, and nothing is written.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort

from .contract.codecs import MAX_INPUT_BYTES, audio_bits, read_bytes
from .contract.errors import ARError, UsageError, first_line
from .contract.files import sha256_file
from .generate import check_condition, class_id
from .heads import head_for
from .outputs import STDOUT, check_output, write_files
from .progress import Progress
from .runtime import Stepper
from .session import ORT_ERRORS, Model, open_model

MAGIC = b"ARZ\x00"
CONTAINER_VERSION = 1
DIGIT = 256                # symbols of one digit
MAX_LEVELS = DIGIT ** 2    # two digits at most: 16-bit audio
DEFAULT_CHUNK = {"text": 4096, "audio": 16384}  # elements per chunk (audio: 1 s at 16 kHz, 16 receptive fields)
DEFAULT_BATCH = 64         # chunks coded side by side
MAX_BATCH = 4096
EXTRA = "arrun compress needs the 'compress' extra: pip install 'autoregressive-on-device[compress]'"
HEADER_TYPES = {"model_sha256": str, "onnxruntime": str, "numpy": str, "data_kind": str, "layout": dict,
                "vocab_size": int, "digits": int, "elements": int, "condition": (int, type(None)), "chunk": int,
                "batch": int, "before": str, "after": str, "bytes": int, "sha256": str}


def _wav_header(width: int, rate: int = 16000) -> bytes:
    """A canonical mono PCM WAV header, sizes zero (the preset dictionary's model of one)."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * width, width, 8 * width)
    return b"RIFF\0\0\0\0WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data\0\0\0\0"


HEADER_DICTIONARY = (  # fixed for CONTAINER_VERSION 1: changing it makes every .arz unreadable
    '{"format":"npy","dtype":"|u1","shape":[,"fortran_order":false}{"format":"text"}"data_kind":"text"'
    '"data_kind":"image""digits":2,"vocab_size":65536}'
    + "".join('{"after":"","batch":64,"before":"%s","bytes":' % base64.b64encode(_wav_header(w)).decode() for w in (2, 1))
    + ',"chunk":16384,"condition":null,"data_kind":"audio","digits":1,"elements":,"layout":{"format":"wav",'
      '"width":1},"model_sha256":"","numpy":"2.","onnxruntime":"1.","sha256":"","vocab_size":256}').encode()


def _constriction():
    """(constriction's queue coder module, the categorical family), imported on first use."""
    try:
        import constriction
    except ImportError:
        raise ARError(EXTRA) from None
    return constriction.stream.queue, constriction.stream.model.Categorical(perfect=False)


# ---------------------------------------------------------------- digits

def digits_of(levels: int) -> int:
    """Base-256 digits of an element of ``levels`` levels: 1 up to 256, 2 up to 65536; UsageError beyond."""
    if levels > MAX_LEVELS:
        raise UsageError(f"the model has {levels:,} levels; arrun compress codes at most {MAX_LEVELS:,} "
                         "(two 8-bit digits per element)")
    return 1 if levels <= DIGIT else 2


def digit_probabilities(head, outputs: np.ndarray, base: np.ndarray, size: int) -> np.ndarray:
    """outputs (n, W), base (n,) int64 the first level of the block chosen so far, ``size`` levels per symbol
    -> (n, k) float64 unnormalised probabilities of the next digit: symbol j holds the levels
    [base + j size, base + (j + 1) size) within 0..V-1. A row that sums to 0 or is not finite becomes uniform."""
    V = head.levels
    k = min(DIGIT, -(-V // size))
    edges = np.minimum(base[:, None] + size * np.arange(k + 1), V)  # (n, k + 1)
    p = np.maximum(np.diff(head.cdf(outputs, edges), axis=1), 0.0)  # (n, k); max: rounding below 0, NaN stays
    bad = ~(np.isfinite(p).all(axis=1) & (p.sum(axis=1) > 0))  # (n,)
    p[bad] = 1.0
    return p


def encode_elements(encoder, family, head, outputs: np.ndarray, levels: np.ndarray) -> None:
    """Code levels (n,) int64 in 0..V-1 under outputs (n, W) into ``encoder`` (a constriction RangeEncoder)."""
    base = np.zeros(len(levels), np.int64)  # (n,)
    for size in _sizes(head.levels):
        symbols = (levels - base) // size  # (n,)
        encoder.encode(symbols.astype(np.int32), family, digit_probabilities(head, outputs, base, size))
        base = base + symbols * size


def decode_elements(decoder, family, head, outputs: np.ndarray) -> np.ndarray:
    """The inverse of ``encode_elements``: outputs (n, W) -> levels (n,) int64 read from ``decoder``."""
    base = np.zeros(len(outputs), np.int64)  # (n,)
    for size in _sizes(head.levels):
        symbols = decoder.decode(family, digit_probabilities(head, outputs, base, size))  # (n,)
        base = base + symbols.astype(np.int64) * size
    return np.minimum(base, head.levels - 1)  # a corrupt stream never feeds the model a level it lacks


def _sizes(levels: int) -> list[int]:
    return [DIGIT ** d for d in reversed(range(digits_of(levels)))]


# ---------------------------------------------------------------- the step loop both sides run

def run_chunks(model: Model, total: int, chunk: int, batch: int, condition: int | None,
               code: Callable[[np.ndarray, np.ndarray], np.ndarray], progress: bool = False) -> None:
    """Step ``model`` through the chunks of ``total`` elements, ``batch`` chunks side by side, each from the
    initial state. At every step ``code(outputs (n, W), index (n,))`` gets the outputs of the rows whose chunk
    goes on and the indices of their elements, and returns those elements (n,) int64 (known when encoding,
    decoded when decoding): they are what these rows are fed next."""
    info = model.info
    first = np.arange(0, total, chunk)  # (C,) each chunk's first element
    length = np.minimum(first + chunk, total) - first  # (C,)
    steps = sum(int(length[g:g + batch].max()) for g in range(0, len(first), batch))
    bar = Progress(steps, "coding") if progress else None
    steppers: dict[int, Stepper] = {}
    done = 0
    try:
        for g in range(0, len(first), batch):
            rows, lengths = first[g:g + batch], length[g:g + batch]  # (B,)
            B = len(rows)
            if B not in steppers:  # the full batch, and the last group's
                steppers[B] = Stepper(model, B)
            stepper = steppers[B]
            stepper.reset(None if condition is None else np.full(B, condition, np.int64))
            feed = np.full(B, info.start_token, np.int64)  # (B,)
            for t in range(int(lengths.max())):
                outputs = stepper.step(feed, t)  # (B, W)
                active = lengths > t  # (B,)
                feed = np.zeros(B, np.int64)
                feed[active] = code(outputs[active], rows[active] + t)
                done += 1
                if bar is not None:
                    bar(done)
    finally:
        if bar is not None:
            bar.close()


# ---------------------------------------------------------------- files as elements and the bytes around them

@dataclass(frozen=True)
class Framed:
    """A file as before + (its elements as bytes) + after; ``layout`` says how elements become bytes."""
    elements: np.ndarray  # (n,) int64 levels in 0..V-1
    before: bytes
    after: bytes
    layout: dict
    chunk: int | None = None  # the chunk the format fixes (one image), None when free


def frame(raw: bytes, path: Path, info) -> Framed:
    """The file's bytes -> its elements for the model of ``info``; UsageError naming what does not fit."""
    if info.data_kind == "text":
        return _frame_text(raw, path, info.alphabet)
    if info.data_kind == "audio":
        return _frame_wav(raw, path, info)
    return _frame_npy(raw, path, info)


def element_bytes(elements: np.ndarray, layout: dict, info) -> bytes:
    """The inverse of ``frame`` for the elements: (n,) int64 levels -> the bytes they were in the file."""
    if layout["format"] == "text":
        return np.frombuffer(info.alphabet.encode("utf-32-le"), np.uint32)[elements].tobytes() \
            .decode("utf-32-le").encode("utf-8")
    if layout["format"] == "wav":
        return (elements.astype("<u1") if layout["width"] == 1 else (elements - 32768).astype("<i2")).tobytes()
    array = elements.reshape(layout["shape"]).astype(np.dtype(layout["dtype"]))
    return array.tobytes(order="F" if layout["fortran_order"] else "C")


def _frame_text(raw: bytes, path: Path, alphabet: str) -> Framed:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not valid UTF-8 (byte {e.start}); a text model compresses UTF-8 files") from None
    if text.encode("utf-8") != raw:
        raise UsageError(f"{path} does not encode back to the same UTF-8 bytes; save it as plain UTF-8")
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)  # (n,) code points
    alpha = np.frombuffer(alphabet.encode("utf-32-le"), np.uint32)  # (V,)
    order = np.argsort(alpha)
    pos = np.minimum(np.searchsorted(alpha[order], codes), len(alpha) - 1)  # (n,)
    found = alpha[order][pos] == codes  # (n,)
    if not found.all():
        i = int(np.argmin(found))
        raise UsageError(f"{path}: the character {text[i]!r} at position {i:,} (line {text.count(chr(10), 0, i) + 1}) "
                         "is not in the model's alphabet; lossless compression needs every character "
                         "(`arrun info MODEL` lists the alphabet)")
    return Framed(order[pos].astype(np.int64), b"", b"", {"format": "text"})


def _frame_wav(raw: bytes, path: Path, info) -> Framed:
    """A RIFF/WAVE file: the samples of its first data chunk are the elements; every other byte stays as it is."""
    width = audio_bits(info.vocab_size) // 8  # the contract's rule: 65,536 levels are 16-bit, else mu-law
    if info.vocab_size not in (DIGIT, MAX_LEVELS):
        raise UsageError(f"this audio model has {info.vocab_size} levels; arrun compress codes 256-level mu-law "
                         "models (8-bit WAVs) and 65536-level ones (16-bit WAVs)")
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise UsageError(f"{path} is not a RIFF/WAVE file; give a PCM WAV")
    pos, fmt = 12, None
    while pos + 8 <= len(raw):
        kind, size = struct.unpack_from("<4sI", raw, pos)
        body = pos + 8
        if kind == b"fmt ":
            fmt = raw[body:body + size]
        elif kind == b"data":
            _check_fmt(fmt, path, info, width)
            end = body + (min(body + size, len(raw)) - body) // width * width  # whole samples; the rest is kept
            samples = np.frombuffer(raw[body:end], "<u1" if width == 1 else "<i2").astype(np.int64)  # (n,)
            tokens = samples + (0 if width == 1 else 32768)  # (n,)
            return Framed(tokens, raw[:body], raw[end:], {"format": "wav", "width": width})
        pos = body + size + (size & 1)  # chunks are padded to even sizes
    raise UsageError(f"{path} has no {'data' if fmt else 'fmt'} chunk; give a PCM WAV")


def _check_fmt(fmt: bytes | None, path: Path, info, width: int) -> None:
    if fmt is None or len(fmt) < 16:
        raise UsageError(f"{path} has no complete fmt chunk before its data; give a PCM WAV")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the subformat's first two bytes
        tag = struct.unpack_from("<H", fmt, 24)[0]
    wanted = ("8-bit mu-law WAVs (each byte one mu-law code)" if width == 1 else
              "16-bit PCM WAVs (token = sample + 32768)")
    if tag != 1:
        raise UsageError(f"{path} is not PCM (format tag {tag}); this model codes {wanted}")
    if bits != 8 * width:
        raise UsageError(f"{path} is {bits}-bit PCM; this model codes {wanted}")
    if channels != 1:
        raise UsageError(f"{path} has {channels} channels; this model codes mono {wanted}")
    if rate != info.sample_rate:
        raise UsageError(f"{path} is at {rate} Hz and the model at {info.sample_rate} Hz; lossless compression "
                         "cannot resample: give audio at the model's rate")


def _frame_npy(raw: bytes, path: Path, info) -> Framed:
    """A .npy of integer images (N, H, W) or (H, W), C or Fortran order, read without unpickling."""
    f = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f".npy version {version[0]}.{version[1]} is not read here")
        shape, fortran_order, dtype = read(f)
    except (ValueError, SyntaxError, EOFError) as e:
        raise UsageError(f"{path} is not a readable .npy file ({first_line(e)}); save the images with "
                         "numpy.save(path, array)") from None
    h, w = info.image_shape
    if dtype.kind not in "iu" or len(shape) not in (2, 3) or tuple(shape[-2:]) != (h, w):
        raise UsageError(f"{path} holds a {dtype} array of shape {shape}; this model compresses integer images "
                         f"(N, {h}, {w}) or ({h}, {w})")
    n, start = math.prod(shape), f.tell()
    end = start + n * dtype.itemsize
    if len(raw) < end:
        raise UsageError(f"{path} is truncated: its header declares {shape} and the file holds less; re-save it")
    array = np.frombuffer(raw[start:end], dtype).reshape(shape, order="F" if fortran_order else "C")
    if n and (array.min() < 0 or array.max() >= info.vocab_size):
        raise UsageError(f"{path} has levels {array.min()}..{array.max()} and the model has {info.vocab_size} "
                         f"(0..{info.vocab_size - 1}); lossless compression needs every level in that range")
    layout = {"format": "npy", "dtype": dtype.str, "shape": list(shape), "fortran_order": bool(fortran_order)}
    return Framed(np.ascontiguousarray(array, np.int64).reshape(-1), raw[:start], raw[end:], layout, h * w)


# ---------------------------------------------------------------- the container

def pack(header: dict, words: np.ndarray) -> bytes:
    packer = zlib.compressobj(9, zdict=HEADER_DICTIONARY)
    head = packer.compress(json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")) + packer.flush()
    return b"".join([MAGIC, struct.pack("<II", CONTAINER_VERSION, len(head)), head,
                     struct.pack("<Q", len(words)), words.astype("<u4").tobytes()])


def unpack(raw: bytes, path: Path) -> tuple[dict, np.ndarray]:
    """.arz bytes -> (header, payload words (N,) uint32); UsageError for another kind of file or version,
    ARError for a truncated or corrupted one."""
    if not raw.startswith(MAGIC):
        raise UsageError(f"{path} is not a file written by `arrun compress` (no ARZ magic); give an .arz file")
    corrupted = ARError(f"{path} is corrupted (truncated or damaged container); nothing was written")
    if len(raw) < 12:
        raise corrupted
    version, size = struct.unpack_from("<II", raw, 4)
    if version != CONTAINER_VERSION:
        raise UsageError(f"{path} is container version {version} and this arrun reads version {CONTAINER_VERSION}; "
                         "decompress it with the arrun that wrote it")
    try:
        unpacker = zlib.decompressobj(zdict=HEADER_DICTIONARY)
        header = json.loads(unpacker.decompress(raw[12:12 + size]) + unpacker.flush())
        (n,) = struct.unpack_from("<Q", raw, 12 + size)
    except (ValueError, RecursionError, struct.error, zlib.error):
        raise corrupted from None
    if len(raw) != 20 + size + 4 * n or not isinstance(header, dict) or \
            any(not isinstance(header.get(k), t) or isinstance(header.get(k), bool) for k, t in HEADER_TYPES.items()):
        raise corrupted
    return header, np.frombuffer(raw, "<u4", n, 20 + size).astype(np.uint32)


# ---------------------------------------------------------------- the workers

def compress(model_path: Path, data: Path, *, out: Path | None = None, condition: int | str | None = None,
             chunk: int | None = None, batch_size: int = DEFAULT_BATCH, progress: bool = False) -> dict:
    """Compress ``data`` into ``out`` (default DATA.arz, never replaced; - for stdout) -> the summary record.
    Raises UsageError for a model or file it cannot code losslessly, before any coding."""
    queue, family = _constriction()
    model = _open(model_path, "arrun compress")
    info, data = model.info, Path(data)
    condition = class_id(condition, info)
    check_condition(condition, info, required=True)
    out = _output(out, data.with_name(data.name + ".arz"), (".arz",))
    if not 1 <= batch_size <= MAX_BATCH:
        raise UsageError(f"--batch-size must be in 1..{MAX_BATCH}, got {batch_size}")
    raw = _read(data, "file to compress")
    framed = frame(raw, data, info)
    chunk = _chunk(chunk, framed, info)
    encoder, head = queue.RangeEncoder(), head_for(info)

    def code(outputs: np.ndarray, index: np.ndarray) -> np.ndarray:
        levels = framed.elements[index]  # (n,)
        encode_elements(encoder, family, head, outputs, levels)
        return levels

    start = time.perf_counter()
    _coding(lambda: run_chunks(model, len(framed.elements), chunk, batch_size, condition, code, progress))
    seconds = time.perf_counter() - start
    words = encoder.get_compressed()  # (N,) uint32
    header = {"model_sha256": sha256_file(model.path), "onnxruntime": ort.__version__, "numpy": np.__version__,
              "data_kind": info.data_kind, "layout": framed.layout, "vocab_size": info.vocab_size,
              "digits": digits_of(info.vocab_size), "elements": len(framed.elements), "condition": condition,
              "chunk": chunk, "batch": batch_size,
              "before": base64.b64encode(framed.before).decode(), "after": base64.b64encode(framed.after).decode(),
              "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    blob = pack(header, words)
    write_files({out: blob})
    n = len(framed.elements)
    return {"model": str(model_path), "input": str(data), "output": str(out), "data_kind": info.data_kind,
            "condition": condition, "elements": n, "input_bytes": len(raw), "output_bytes": len(blob),
            "payload_bytes": 4 * len(words), "bits_per_element": 32 * len(words) / n if n else None,
            "file_bits_per_element": 8 * len(blob) / n if n else None, "chunk": chunk, "batch_size": batch_size,
            "digits": header["digits"], "seconds": seconds, "elements_per_s": n / seconds if n and seconds else None}


def decompress(model_path: Path, archive: Path, *, out: Path | None = None, progress: bool = False) -> dict:
    """Rebuild the file ``archive`` was made from into ``out`` (default: its name less .arz, never replaced;
    - for stdout) -> the summary record. Nothing is written unless the result's sha256 is the original's."""
    queue, family = _constriction()
    archive = Path(archive)
    raw = _read(archive, ".arz file written by `arrun compress`")
    header, words = unpack(raw, archive)
    model = _open(model_path, "arrun decompress")
    info = model.info
    digest = sha256_file(model.path)
    if digest != header["model_sha256"]:
        raise UsageError(f"{archive} was compressed with the model of sha256 {header['model_sha256'][:12]}, and "
                         f"{model_path} has sha256 {digest[:12]}; give the model file it was compressed with")
    _check_header(header, info, archive)
    default = archive.with_suffix("") if archive.suffix == ".arz" else None
    out = _output(out, default, ())
    decoder, head = queue.RangeDecoder(words), head_for(info)
    elements = np.zeros(header["elements"], np.int64)  # (n,)

    def code(outputs: np.ndarray, index: np.ndarray) -> np.ndarray:
        try:
            elements[index] = decode_elements(decoder, family, head, outputs)
        except Exception as e:  # constriction's complaint about a stream it cannot read
            raise ARError(f"{archive} is corrupted (its payload does not decode: {first_line(e, 100)}); "
                          "nothing was written") from None
        return elements[index]

    start = time.perf_counter()
    _coding(lambda: run_chunks(model, len(elements), header["chunk"], header["batch"], header["condition"], code,
                               progress))
    seconds = time.perf_counter() - start
    try:
        rebuilt = base64.b64decode(header["before"]) + element_bytes(elements, header["layout"], info) \
            + base64.b64decode(header["after"])
    except (ValueError, TypeError, KeyError, IndexError):
        rebuilt = b""  # a damaged layout: the checksum below says so
    if hashlib.sha256(rebuilt).hexdigest() != header["sha256"]:
        versions = (header["onnxruntime"], header["numpy"]), (ort.__version__, np.__version__)
        where = "" if versions[0] == versions[1] else (
            f"; it was compressed with onnxruntime {versions[0][0]} and numpy {versions[0][1]}, and this is "
            f"onnxruntime {versions[1][0]} and numpy {versions[1][1]}: decompress with those")
        raise ARError(f"{archive} is corrupted (checksum mismatch){where}; nothing was written")
    write_files({out: rebuilt})
    n = len(elements)
    return {"model": str(model_path), "input": str(archive), "output": str(out), "data_kind": info.data_kind,
            "elements": n, "input_bytes": len(raw), "output_bytes": len(rebuilt), "seconds": seconds,
            "elements_per_s": n / seconds if n and seconds else None}


def _open(model_path: Path, command: str) -> Model:
    """The step graph on the CPU with one intra-op thread (the floats both sides must agree on)."""
    model = open_model(model_path, provider="cpu", threads=1, graph=("step",), command=command)
    info = model.info
    if info.features:
        raise UsageError(f"{model_path} is a vocoder: its elements depend on mel features the decoder would not "
                         "have; compress with a model that needs no features")
    digits_of(info.vocab_size)
    return model


def _chunk(chunk: int | None, framed: Framed, info) -> int:
    """The chunk length: fixed by the format (one image), else ``chunk`` or the default, within the context."""
    room = info.max_length or None
    if framed.chunk is not None:
        if chunk is not None and chunk != framed.chunk:
            raise UsageError(f"images are coded one per chunk ({framed.chunk} pixels); drop --chunk")
        if room and framed.chunk > room:
            raise UsageError(f"an image has {framed.chunk} pixels and the model's context is {room}")
        return framed.chunk
    if chunk is None:
        default = DEFAULT_CHUNK[info.data_kind]
        return min(default, room or default)
    if not 1 <= chunk <= (room or MAX_INPUT_BYTES):
        raise UsageError(f"--chunk must be in 1..{room or MAX_INPUT_BYTES:,}"
                         f"{' (the model context)' if room else ''}, got {chunk}")
    return chunk


def _check_header(header: dict, info, archive: Path) -> None:
    """The header's numbers fit the model and stay within what a file of ``bytes`` bytes can hold."""
    formats = {"text": "text", "audio": "wav", "image": "npy"}
    ok = (header["data_kind"] == info.data_kind and header["layout"].get("format") == formats[info.data_kind]
          and header["vocab_size"] == info.vocab_size
          and header["digits"] == digits_of(info.vocab_size) and 0 <= header["elements"] <= header["bytes"]
          and header["bytes"] <= MAX_INPUT_BYTES and 1 <= header["batch"] <= MAX_BATCH
          and 1 <= header["chunk"] <= (info.max_length or MAX_INPUT_BYTES)
          and (header["condition"] is None) == (info.num_classes == 0)
          and (header["condition"] is None or 0 <= header["condition"] < info.num_classes))
    if not ok:
        raise ARError(f"{archive} is corrupted (its header disagrees with the model); nothing was written")


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
