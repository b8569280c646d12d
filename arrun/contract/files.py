"""The one way anything is written: no reader ever sees half a file, and a failure leaves nothing behind.

``PendingFile(path)`` creates a uniquely named temporary file beside ``path`` (exclusively, so a planted
name or symlink is never followed); ``commit()`` flushes, fsyncs and renames it onto ``path``,
``discard()`` removes it. A ``path`` that exists and is not a regular file (a character device such as
/dev/null, a FIFO) is written straight through instead: renaming over it would replace the device.
The file gets the permissions of an ordinary new file (0o666 less the umask).
``check_model_file`` checks that the .onnx a command reads is a readable regular file.
"""
from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import UsageError

ORDINARY_MODE = 0o666  # before the umask, as for any new file


class PendingFile:
    """An output file that appears at ``path`` only on ``commit``; a context manager commits on success
    and discards on any exception. ``file`` is the open binary file; ``tmp`` its path (for writers that
    want a path: close ``file`` first)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.through = is_special(self.path)
        if self.through:
            self.tmp = self.path
            self.file: BinaryIO = open(self.path, "wb")
        else:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".part")
            os.chmod(tmp, ORDINARY_MODE & ~_umask())
            self.tmp, self.file = Path(tmp), os.fdopen(fd, "wb")
        self._done = False

    def commit(self) -> Path:
        if not self._done:
            self._done = True
            if not self.file.closed:
                self.file.flush()
                if not self.through:
                    os.fsync(self.file.fileno())
                self.file.close()
            elif not self.through:
                with open(self.tmp, "rb+") as f:  # written by path: fsync what the writer left
                    os.fsync(f.fileno())
                os.chmod(self.tmp, ORDINARY_MODE & ~_umask())  # a writer may have made the file anew
            if not self.through:
                os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        if not self._done:
            self._done = True
            try:
                self.file.close()
            except OSError:
                pass  # a full disk fails the final flush too; the file goes anyway
            if not self.through:
                self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "PendingFile":
        return self

    def __exit__(self, kind, value, traceback) -> bool:
        if kind is None:
            try:
                self.commit()
            except BaseException:
                self.discard()
                raise
        else:
            self.discard()
        return False


def write_atomic(path: Path | str, content: bytes | Callable[[Path], None]) -> Path:
    """Write ``content`` (bytes, or a function that writes the file at the path it is given) to ``path``
    atomically; raises OSError as the write or rename does, leaving ``path`` as it was."""
    with PendingFile(path) as pending:
        if callable(content):
            pending.file.close()
            content(pending.tmp)
        else:
            pending.file.write(content)
    return Path(path)


def check_model_file(path: Path) -> None:
    """UsageError unless ``path`` is a readable regular file, the .onnx a command reads (a FIFO or device
    would block or never end). Quick: it imports nothing, so a command says it before loading its runtime."""
    try:
        if path.is_dir():
            raise UsageError(f"{path} is a directory; give the .onnx file exported by `arexport onnx`")
        if not path.exists():
            raise UsageError(f"{path} does not exist; give the .onnx file exported by `arexport onnx`")
        if not path.is_file():
            raise UsageError(f"{path} is not a regular file; give the .onnx file exported by `arexport onnx`")
        with open(path, "rb"):
            pass
    except OSError as e:
        raise UsageError(f"cannot read {path} ({e.strerror}); check the path and its permissions") from None


def is_special(path: Path) -> bool:
    """Whether ``path`` exists and is neither a regular file nor a directory (a device, a FIFO)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: Path | str) -> str:
    """The hex sha256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
