"""The .arz container: a small JSON header and the range coder's words.

Little-endian: b"ARZ\\x00" | u32 container version | u32 header length H | H bytes of JSON header,
zlib-compressed with the preset dictionary ``HEADER_DICTIONARY`` (part of the container version: the keys and
usual values, so that a short file's header costs ~150 bytes, not ~330) | u64 payload words N | N u32 words
of the range coder, and nothing after. The header: model_sha256, onnxruntime and numpy (the versions that
computed the floats), data_kind, layout (how elements become bytes, the data kind's: text, wav with its
sample width, npy with dtype, shape and order), vocab_size, digits, elements, condition, chunk, batch,
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

from ..contract.errors import ARError, UsageError

MAGIC = b"ARZ\x00"
CONTAINER_VERSION = 1
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


def pack(header: dict, words: np.ndarray) -> bytes:
    """(header, payload words (N,) uint32) -> the .arz bytes."""
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
