"""Where outputs go: checked paths, numbered files, and the ``Sink`` every data kind's output derives from
(each kind's own sink lives in its module under ``arrun.kinds``). Nothing appears at an output path until it
is complete: every file is a ``contract.files.PendingFile`` (a unique temporary name in the same folder,
renamed at the end; devices and FIFOs written straight through); on any error they are removed (``discard``).
A run's files are committed together (``contract.files.commit_together``): all of them, or none and the files
that were at those paths as they were.
With more than one sample, files are numbered: out-000.wav, out-001.wav, ... ``--out -`` writes to stdout
instead; a device or FIFO (/dev/null, a named pipe) is written straight through.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from .contract.errors import ARError, UsageError
from .contract.files import PendingFile, commit_together, is_special

STDOUT = Path("-")
MAX_FILES = 10_000  # output files one run writes


def check_output(path: Path, suffixes: tuple[str, ...] = ()) -> None:
    """``path`` can be created or replaced: its folder exists and is writable, it is no folder, and it has
    one of ``suffixes`` (any when empty) unless it is a device or FIFO."""
    try:
        _check_output(path, suffixes)
    except OSError as e:
        raise UsageError(f"cannot use --out {str(path)[:200]} ({e.strerror}); choose another --out") from None


def _check_output(path: Path, suffixes: tuple[str, ...]) -> None:
    if is_special(path):
        return
    if suffixes and path.suffix.lower() not in suffixes:
        raise UsageError(f"--out {path}: this model writes {' or '.join(suffixes)} files; give a name ending in "
                         f"{suffixes[0]} (or - for stdout)")
    if path.is_dir():
        raise UsageError(f"output path {path} is a directory; give a file name with --out")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"output directory {folder} does not exist; create it or choose another --out")
    try:  # the only sure test that a file can be created there (/proc, read-only mounts, permissions)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UsageError(f"cannot write to the output directory {folder} ({e.strerror}); choose another --out") from None


def numbered(path: Path, i: int, n: int) -> Path:
    """out.wav -> out-003.wav when there are several samples, else out.wav."""
    return path if n == 1 else path.with_name(f"{path.stem}-{i:0{max(3, len(str(n - 1)))}d}{path.suffix}")


def output_paths(out: Path, n: int, suffixes: tuple[str, ...] = (), labels: list[str] | None = None) -> list[Path]:
    """One checked path per sample (numbered when n > 1, within each label when the samples have labels:
    out-seven-000.wav); stdout and devices take one sample only."""
    if n > 1 and (out == STDOUT or is_special(out)):
        raise UsageError(f"--out {out} takes one sample and {n} were asked for; give -n 1 or a file name "
                         "(samples are then numbered NAME-000, NAME-001, ...)")
    if n > MAX_FILES:
        raise UsageError(f"{n:,} samples would write {n:,} files, more than the {MAX_FILES:,} one run writes; "
                         "give a smaller -n")
    if labels is None or n == 1:
        paths = [numbered(out, i, n) for i in range(n)]
    else:
        seen: dict[str, int] = {}
        paths = []
        for label in labels:
            seen[label] = seen.get(label, -1) + 1
            paths.append(out.with_name(f"{out.stem}-{label}-{seen[label]:03d}{out.suffix}"))
    for path in paths:
        if path != STDOUT:
            check_output(path, suffixes)
    return paths


class StdoutFile:
    """stdout as an output file: written straight through, so nothing to commit or discard."""
    path = STDOUT
    through = True

    def __init__(self):
        self.file = sys.stdout.buffer

    def finish(self) -> None:
        self.file.flush()

    def commit(self) -> Path:
        self.finish()
        return STDOUT

    def discard(self) -> None:
        pass


def open_output(path: Path) -> PendingFile | StdoutFile:
    return StdoutFile() if path == STDOUT else PendingFile(path)


def write_files(contents: dict[Path, bytes]) -> None:
    """Write every file to its pending file (stdout for ``-``), then commit them together: no file ever
    appears half-written, and a failed write leaves none of them, no temporary file, and the files that
    were at those paths as they were."""
    pending: list[PendingFile | StdoutFile] = []
    try:
        for path, data in contents.items():
            pending.append(open_output(path))
            pending[-1].file.write(data)
        commit_together(pending)
    except OSError as e:
        raise ARError(f"cannot write {e.filename or 'the output'} ({e.strerror}); check the disk space and --out") from None
    finally:
        for file in pending:
            file.discard()


class Sink:
    """Where one run's samples go. ``generate`` calls ``begin(indices)`` when a batch of the samples at
    ``indices`` starts, ``update(tokens (B, L) int64, done)`` after each step (columns < ``done`` are final;
    it runs every step and must stay cheap), and ``end(tokens (B, L))`` when the batch is complete (a list of
    B rows (L_b,) when the rows' prompts differ in length: each its own prompt, then its samples); then the
    command calls ``commit()`` -> the paths written, or ``discard()`` on any failure (no partial file stays),
    and adds ``record()`` to its --json record. The defaults do nothing; a kind's sink overrides what it needs."""

    def begin(self, indices: range) -> None:
        pass

    def update(self, tokens: np.ndarray, done: int) -> None:
        pass

    def end(self, tokens: np.ndarray) -> None:
        pass

    def record(self) -> dict:
        return {}

    def commit(self) -> list[Path]:
        return []

    def discard(self) -> None:
        pass
