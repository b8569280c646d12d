"""Text: token i is character i of the model's alphabet; a prompt is text; samples stream to a text stream
(and ``--out`` files); scoring data and compressed files are UTF-8 text."""
from __future__ import annotations

from pathlib import Path
from typing import TextIO

import numpy as np

from ..contract.codecs import encode_text, read_text
from ..contract.errors import UsageError
from ..contract.schema import ModelInfo
from ..outputs import STDOUT, Sink, output_paths, write_files
from .base import DataKind, Framed


class TextKind(DataKind):
    name, unit, suffixes = "text", "character", ()
    expected = "a UTF-8 text file"
    kept_bytes_per_element = 48  # every sample's text and tokens (Python objects) for the record
    layout_format = "text"

    def problems(self, info):
        if len(info.alphabet) != info.vocab_size:
            return [f"the alphabet has {len(info.alphabet)} characters for {info.vocab_size} tokens"]
        if len(set(info.alphabet)) != len(info.alphabet):  # a character two tokens decode to: text is ambiguous
            return ["the alphabet repeats a character"]
        return []

    def describe(self, info):
        return f"characters of a {len(info.alphabet)}-character alphabet"

    def fields(self, info):
        return {"alphabet": info.alphabet}

    def prompt_tokens(self, prompt, info, unknown="error"):
        tokens = encode_text(prompt, info.alphabet, "the prompt", unknown)
        if info.max_length and len(tokens) >= info.max_length:
            raise UsageError(f"the prompt has {len(tokens)} characters and the model's context is {info.max_length}; "
                             f"give at most {info.max_length - 1} so at least one can be generated")
        return tokens

    def sink(self, out, info, plan, stream):
        return TextSink(out, info, plan, stream)

    def shows_progress(self, stream):
        return stream is not None

    def load(self, path, info, unknown="error"):
        if Path(path).is_dir():
            raise UsageError(f"{path} is a folder; give {self.expected}")
        return [(encode_text(read_text(path), info.alphabet, str(path), unknown), None)]

    def frame(self, raw, path, info):
        """UTF-8 text -> the alphabet index of every character; nothing around them."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(f"{path} is not valid UTF-8 (byte {e.start}); a text model compresses UTF-8 files") from None
        if text.encode("utf-8") != raw:
            raise UsageError(f"{path} does not encode back to the same UTF-8 bytes; save it as plain UTF-8")
        codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)  # (n,) code points
        alpha = np.frombuffer(info.alphabet.encode("utf-32-le"), np.uint32)  # (V,)
        order = np.argsort(alpha)
        pos = np.minimum(np.searchsorted(alpha[order], codes), len(alpha) - 1)  # (n,)
        found = alpha[order][pos] == codes  # (n,)
        if not found.all():
            i = int(np.argmin(found))
            raise UsageError(f"{path}: the character {text[i]!r} at position {i:,} (line {text.count(chr(10), 0, i) + 1}) "
                             "is not in the model's alphabet; lossless compression needs every character "
                             "(`arrun info MODEL` lists the alphabet)")
        return Framed(order[pos].astype(np.int64), b"", b"", {"format": "text"})

    def unframe(self, elements, layout, info):
        return np.frombuffer(info.alphabet.encode("utf-32-le"), np.uint32)[elements].tobytes() \
            .decode("utf-32-le").encode("utf-8")


def sample_header(i: int, n: int) -> str:
    """The line before sample ``i`` of ``n`` (n > 1) on one stream, since samples may hold blank lines."""
    return f"--- sample {i + 1} of {n} ---\n"


def check_text_suffix(out: Path) -> None:
    """--out for text must not end in a suffix another data kind writes or reads (.png, .wav, ...)."""
    from . import DATA_KINDS  # the registry imports this module
    from ..contract.registry import UnknownEntry

    try:
        kinds = DATA_KINDS.items()
    except UnknownEntry:  # a broken plug-in kind: its own command says so
        return
    for name, kind in kinds:
        if out.suffix.lower() in kind.suffixes:
            raise UsageError(f"--out {out}: {out.suffix} is for {name} data and this model writes text; give a name "
                             "ending in .txt (or - for stdout)")


class TextSink(Sink):
    """Decodes tokens through the alphabet; streams characters as they come when one sample runs at a
    time (otherwise each sample as its batch ends): flushed per character to a terminal, per line to a
    file or pipe. Several samples on one stream each follow a ``sample_header`` line."""

    def __init__(self, out: Path | None, info: ModelInfo, plan, stream: TextIO | None):
        if out == STDOUT and stream is None:
            raise UsageError("--out - writes the text to stdout, where --json writes the record; drop one of them")
        if out and out != STDOUT:
            check_text_suffix(out)
        self.paths = output_paths(out, plan.n) if out and out != STDOUT else []
        self.alphabet, self.stream, self.plan = info.alphabet, stream, plan
        self.texts: list[str] = []
        self.tokens: list[list[int]] = []
        self._live = False
        self._shown = 0
        self._indices = range(0)
        self._per_character = stream is not None and stream.isatty()

    def begin(self, indices: range) -> None:
        self._live, self._shown, self._indices = self.stream is not None and len(indices) == 1, 0, indices
        if self._live and self.plan.n > 1:
            self.stream.write(sample_header(indices.start, self.plan.n))

    def update(self, tokens: np.ndarray, done: int) -> None:
        if self._live:
            text = "".join(self.alphabet[t] for t in tokens[0, self._shown:done])
            self.stream.write(text)
            if self._per_character or "\n" in text:
                self.stream.flush()
            self._shown = done

    def end(self, tokens: np.ndarray) -> None:
        texts = ["".join(self.alphabet[t] for t in row) for row in tokens]
        if self.stream is not None:
            n = self.plan.n
            self.stream.write("\n" if self._live else "".join((sample_header(i, n) if n > 1 else "") + text + "\n"
                                                              for i, text in zip(self._indices, texts)))
            self.stream.flush()
        self.texts.extend(texts)
        self.tokens.extend(row.tolist() for row in tokens)  # rows of different lengths: a list

    def record(self) -> dict:
        return {"text": self.texts, "tokens": self.tokens}

    def commit(self) -> list[Path]:
        write_files({path: text.encode("utf-8") for path, text in zip(self.paths, self.texts)})
        return list(self.paths)
