"""Text as UTF-8 bytes (data kind ``utf8``): token i is the byte i, 256 levels, no alphabet.

Any file is data: scoring reads its bytes, ``arrun compress`` codes them as they are. A prompt is text of any
character, encoded as UTF-8 (an argument the shell gave undecodable bytes keeps them, via surrogateescape).
Samples are bytes: ``--out`` files get them exactly; what is shown (the terminal, the record's ``text``) is
decoded with U+FFFD in place of an invalid sequence, incrementally, so a character split across two
updates is shown whole.
"""
from __future__ import annotations

import codecs
from pathlib import Path
from typing import TextIO

import numpy as np

from ..contract.codecs import read_bytes
from ..contract.errors import UsageError
from ..contract.schema import ModelInfo
from ..outputs import STDOUT, Sink, output_paths, write_files
from .base import DataKind, Framed

LEVELS = 256


def utf8_tokens(text: str) -> np.ndarray:
    """Text -> its UTF-8 bytes as (n,) int64 tokens; lone surrogates from undecodable bytes are those bytes."""
    return np.frombuffer(text.encode("utf-8", "surrogateescape"), np.uint8).astype(np.int64)


class Utf8Kind(DataKind):
    name, unit, suffixes = "utf8", "byte", ()
    expected = "any file (its bytes are the data)"
    takes_any_file = True
    kept_bytes_per_element = 48  # every sample's bytes and tokens (Python objects) for the record
    layout_format = "utf8"

    def problems(self, info):
        return [] if info.vocab_size == LEVELS else [f"a utf8 model has {LEVELS} levels, not {info.vocab_size}"]

    def describe(self, info):
        return "UTF-8 bytes of text (any file)"

    def prompt_tokens(self, prompt, info, unknown="error"):
        tokens = utf8_tokens(prompt)
        if info.max_length and len(tokens) >= info.max_length:
            raise UsageError(f"the prompt has {len(tokens)} bytes and the model's context is {info.max_length}; "
                             f"give at most {info.max_length - 1} so at least one can be generated")
        return tokens

    def sink(self, out, info, plan, stream):
        return Utf8Sink(out, plan, stream)

    def shows_progress(self, stream):
        return stream is not None

    def read(self, path, info):
        raw = read_bytes(path, "file")
        if not raw:
            raise UsageError(f"{path} is empty; give a file with some content")
        return [np.frombuffer(raw, np.uint8).astype(np.int64)]

    def frame(self, raw, path, info):
        """Every byte is an element; nothing around them."""
        return Framed(np.frombuffer(raw, np.uint8).astype(np.int64), b"", b"", {"format": self.layout_format})

    def unframe(self, elements, layout, info):
        return elements.astype(np.uint8).tobytes()


class Utf8Sink(Sink):
    """Writes each sample's bytes to its ``--out`` file; shows them on ``stream`` decoded (as they come when
    one sample runs at a time, otherwise each sample as its batch ends), flushed per update to a terminal,
    per line to a file or pipe."""

    def __init__(self, out: Path | None, plan, stream: TextIO | None):
        if out == STDOUT and stream is None:
            raise UsageError("--out - writes the text to stdout, where --json writes the record; drop one of them")
        self.paths = output_paths(out, plan.n) if out and out != STDOUT else []
        self.stream = stream
        self.samples: list[bytes] = []
        self._live, self._shown, self._decoder = False, 0, None
        self._per_update = stream is not None and stream.isatty()

    def begin(self, indices: range) -> None:
        self._live, self._shown = self.stream is not None and len(indices) == 1, 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        if self.stream is not None and indices.start > 0:
            self.stream.write("\n")  # a blank line between samples

    def update(self, tokens: np.ndarray, done: int) -> None:
        if self._live:
            text = self._decoder.decode(tokens[0, self._shown:done].astype(np.uint8).tobytes())
            self.stream.write(text)
            if self._per_update or "\n" in text:
                self.stream.flush()
            self._shown = done

    def end(self, tokens: np.ndarray) -> None:
        samples = [row.astype(np.uint8).tobytes() for row in tokens]
        if self.stream is not None:
            tail = self._decoder.decode(b"", final=True) + "\n" if self._live else \
                "\n\n".join(s.decode("utf-8", "replace") for s in samples) + "\n"
            self.stream.write(tail)
            self.stream.flush()
        self.samples.extend(samples)

    def record(self) -> dict:
        return {"text": [s.decode("utf-8", "replace") for s in self.samples],
                "tokens": [list(s) for s in self.samples]}

    def commit(self) -> list[Path]:
        write_files(dict(zip(self.paths, self.samples)))
        return list(self.paths)
