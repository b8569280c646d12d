"""The .arz container: a small JSON header and the range coder's words.

Little-endian: b"ARZ\\x00" | u32 container version | u32 header length H | H bytes of JSON header,
zlib-compressed with the preset dictionary ``HEADER_DICTIONARY`` (part of the container version: the keys and
usual values, so that a short file's header costs ~150 bytes, not ~330) | u64 payload words N | N u32 words
of the range coder, and nothing after. The header: model_sha256, onnxruntime and numpy (the versions that
computed the floats), data_kind, layout (how elements become bytes, the data kind's: text, wav with its
sample width and coding: 'mulaw' G.711 bytes as levels, 'grid' a mu-law model's 16-bit
levels, 'pcm' 16-bit samples + 32768, none (older files) the bytes themselves; npy with dtype, shape and order), vocab_size, digits, elements, condition, chunk, batch,
before and after (base64: every byte of the file before and after its elements, verbatim), bytes and
sha256 of the original file.
"""
from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path

import numpy as np

from ..contract.codecs import MAX_INPUT_BYTES
from ..contract.errors import ARError, UsageError

MAGIC = b"ARZ\x00"
CONTAINER_VERSION = 1
HEADER_TYPES = {"model_sha256": str, "onnxruntime": str, "numpy": str, "data_kind": str, "layout": dict,
                "vocab_size": int, "digits": int, "elements": int, "condition": (int, type(None)), "chunk": int,
                "batch": int, "before": str, "after": str, "bytes": int, "sha256": str}
# The largest JSON header a file arrun compress accepts can have: every byte of it in before/after (base64,
# 4 characters per 3 bytes) and room for the rest. A header that inflates past it is refused while inflating.
MAX_HEADER_BYTES = 4 * (MAX_INPUT_BYTES // 3 + 1) + (1 << 16)


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


def pack(header: dict, words: np.ndarray) -> bytes:
    """(header, payload words (N,) uint32) -> the .arz bytes."""
    packer = zlib.compressobj(9, zdict=HEADER_DICTIONARY)
    head = packer.compress(json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")) + packer.flush()
    return b"".join([MAGIC, struct.pack("<II", CONTAINER_VERSION, len(head)), head,
                     struct.pack("<Q", len(words)), words.astype("<u4").tobytes()])


def unpack(raw: bytes, path: Path) -> tuple[dict, np.ndarray]:
    """.arz bytes -> (header, payload words (N,) uint32); UsageError for another kind of file or version,
    ARError for a truncated or corrupted one. The header length and payload words are checked against the file's
    own size before anything is inflated, the header inflates to at most MAX_HEADER_BYTES, and every key of
    HEADER_TYPES is present with its type (``workers.check_archive`` checks the numbers against the model)."""
    if not raw.startswith(MAGIC):
        raise UsageError(f"{path} is not a file written by `arrun compress` (no ARZ magic); give an .arz file")
    corrupted = ARError(f"{path} is corrupted (truncated or damaged container); nothing was written")
    if len(raw) < 12:
        raise corrupted
    version, size = struct.unpack_from("<II", raw, 4)
    if version != CONTAINER_VERSION:
        raise UsageError(f"{path} is container version {version} and this arrun reads version {CONTAINER_VERSION}; "
                         "decompress it with the arrun that wrote it")
    if len(raw) < 20 + size:
        raise corrupted
    (n,) = struct.unpack_from("<Q", raw, 12 + size)
    if len(raw) != 20 + size + 4 * n:  # the lengths against the file's own size, before anything is inflated
        raise corrupted
    try:
        header = json.loads(_inflate(raw[12:12 + size]))
    except (ValueError, RecursionError, zlib.error):
        raise corrupted from None
    if not isinstance(header, dict) or any(k not in header or not isinstance(header[k], t) or isinstance(header[k], bool)
                                           for k, t in HEADER_TYPES.items()):
        raise corrupted
    return header, np.frombuffer(raw, "<u4", n, 20 + size).astype(np.uint32)


def _inflate(head: bytes) -> bytes:
    """The JSON header from its zlib stream, at most MAX_HEADER_BYTES; ValueError unless the stream is complete
    and fills ``head`` exactly (pack writes nothing else there)."""
    unpacker = zlib.decompressobj(zdict=HEADER_DICTIONARY)
    text = unpacker.decompress(head, MAX_HEADER_BYTES)
    if unpacker.unconsumed_tail or not unpacker.eof or unpacker.unused_data:
        raise ValueError("the header's zlib stream is damaged, incomplete or too large")
    return text
