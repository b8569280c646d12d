"""Text as UTF-8 bytes: the data kind ``utf8`` (256 levels, token = byte) and the built-in corpus ``pystdlib``.

A byte model takes any file, so nothing is refused for a character it has not seen; a user's text file
trains as bytes by default (``text_as="characters"`` keeps the older character-alphabet kind ``text``).

``pystdlib`` is the Python standard library's own sources (with their docstrings) beside pydoc's topics,
all installed with Python, so nothing is downloaded. Held out of training:
  * the last 10 % of pydoc's topics (the characters ``text``'s test split holds, as UTF-8 bytes): the
    validation split (evaluated during training, so kept small), and the test split's first sequence;
  * the modules in ``HELD_OUT_MODULES``, whole: the rest of the test split.
The corpus depends on the Python it is read from (``sysconfig``'s stdlib folder; 3.11 here). numpy and the
standard library only.
"""
from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np

from arrun.contract.codecs import read_bytes
from arrun.contract.errors import UsageError

UTF8 = "utf8"          # the data kind: token i is the byte i of the UTF-8 text (arrun.kinds.bytes_text)
BYTE_LEVELS = 256

# Top-level modules never trained on: ~228 KB of code of many styles (the own-data example in
# docs/data.md is these files end to end).
HELD_OUT_MODULES = ("bisect.py", "calendar.py", "colorsys.py", "difflib.py", "fnmatch.py", "graphlib.py",
                    "netrc.py", "numbers.py", "quopri.py", "sched.py", "shlex.py", "tabnanny.py", "textwrap.py",
                    "wave.py")
# pydoc's training part is this many copies of itself in the train split (~16 % of its windows rather
# than ~5 %), so the held-out topics, which the shipped text model is judged on, are not a minority style.
PYDOC_WEIGHT = 4
# Folders of the stdlib that are not its own library text: tests and their data, demos, bundled wheels,
# installed packages, codec tables, and pydoc_data (whose topics are split above, not taken whole).
SKIPPED_FOLDERS = frozenset({"test", "tests", "idlelib", "lib2to3", "turtledemo", "ensurepip", "site-packages",
                             "encodings", "pydoc_data", "__pycache__"})


def bytes_dataset(name: str, raw: bytes):
    """One-sequence splits of ``raw`` as bytes: train = the first 90 %; val and test are both the last 10 %
    (as the character kind splits text). UsageError when there are fewer than 2 bytes."""
    from .data import Dataset, _split

    if len(raw) < 2:
        raise UsageError(f"{name} has {len(raw)} byte(s); give a text file with some content")
    tokens = np.frombuffer(raw, np.uint8).astype(np.int64)  # (T,)
    cut = len(tokens) * 9 // 10
    held = _split([tokens[cut:]], None)
    return Dataset(name, UTF8, BYTE_LEVELS, _split([tokens[:cut]], None), held, held, whole=_split([tokens], None))


def read_bytes_file(path: Path, name: str):
    """Any file as a bytes dataset; an empty one -> UsageError."""
    raw = read_bytes(path, "text file")
    if not raw:
        raise UsageError(f"{path} is empty; give a text file with some content")
    return bytes_dataset(name, raw)


def pydoc_text() -> str:
    """pydoc's topics in sorted key order, joined with "\\n" (the built-in ``text`` dataset's text)."""
    from pydoc_data.topics import topics
    return "\n".join(topics[k] for k in sorted(topics))


def pydoc_held_out() -> bytes:
    """The last 10 % of ``pydoc_text``'s characters as UTF-8: held out of every text model's training."""
    text = pydoc_text()
    return text[len(text) * 9 // 10:].encode("utf-8")


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_sources(root: Path | None = None) -> list[Path]:
    """Every .py file of the standard library outside SKIPPED_FOLDERS, sorted by relative path."""
    root = root or stdlib_root()
    files = (p for p in root.rglob("*.py") if p.is_file() and not SKIPPED_FOLDERS & set(p.relative_to(root).parts[:-1]))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def held_out_sources(root: Path | None = None) -> list[Path]:
    """The HELD_OUT_MODULES files, in that order; UsageError when this Python lacks one."""
    root = root or stdlib_root()
    missing = [m for m in HELD_OUT_MODULES if not (root / m).is_file()]
    if missing:
        raise UsageError(f"this Python's standard library ({root}) lacks {', '.join(missing)}; pystdlib needs them")
    return [root / m for m in HELD_OUT_MODULES]


def pystdlib_dataset():
    """The ``pystdlib`` corpus as bytes: train = pydoc's first 90 % (PYDOC_WEIGHT copies) + every stdlib source
    except the held-out modules (one sequence per file); val = pydoc's last 10 %; test = that + the held-out modules (one each)."""
    from .data import Dataset, _split

    text = pydoc_text()
    cut = len(text) * 9 // 10
    held_out = held_out_sources()
    as_tokens = lambda raw: np.frombuffer(raw, np.uint8).astype(np.int64)  # noqa: E731  (L,)
    train = [as_tokens(text[:cut].encode("utf-8"))] * PYDOC_WEIGHT
    train += [as_tokens(p.read_bytes()) for p in stdlib_sources() if p not in held_out]
    pydoc_tail = as_tokens(text[cut:].encode("utf-8"))
    test = _split([pydoc_tail] + [as_tokens(p.read_bytes()) for p in held_out], None)
    return Dataset("pystdlib", UTF8, BYTE_LEVELS, _split(train, None), _split([pydoc_tail], None), test)

