"""The one way anything is written: no reader ever sees half a file, and a failure leaves nothing behind.

``PendingFile(path)`` creates a file with no name in ``path``'s folder (Linux ``O_TMPFILE``): until
``commit()`` a crash, a SIGKILL or a power cut leaves nothing behind. ``commit()`` flushes and fsyncs it,
links it under a unique hidden name beside ``path`` and renames that onto ``path`` (a rename is what replaces
an existing file atomically; the hidden name exists only for that instant, holding the complete file).
Where the filesystem has no ``O_TMPFILE`` the file is created under that unique name from the start
(exclusively, so a planted name or symlink is never followed). ``discard()`` removes it. ``commit_together`` commits one run's several files as a unit: all of them,
or none and the previous files as they were. A ``path`` that exists and is not a regular file (a
character device such as /dev/null, a FIFO) is written straight through instead: renaming over it would
replace the device.
The file gets the permissions of an ordinary new file (0o666 less the umask).
``check_model_file`` checks that the .onnx a command reads is a readable regular file.
"""
from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

from .errors import UsageError

ORDINARY_MODE = 0o666  # before the umask, as for any new file


class PendingFile:
    """An output file that appears at ``path`` only on ``commit``; a context manager commits on success
    and discards on any exception. ``file`` is the open binary file; ``tmp`` a path that opens it (for
    writers that want a path: close ``file`` first; a nameless file's path is /proc/PID/fd/N, kept open
    until ``commit`` or ``discard``). ``nameless`` says whether the file has no name yet."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.through = is_special(self.path)
        self.nameless = False
        if self.through:
            self.tmp = self.path
            self.file: BinaryIO = open(self.path, "wb")
        else:
            fd = _open_nameless(self.path.parent)
            if fd is not None:
                self.nameless, self._fd = True, fd
                self.tmp, self.file = Path(f"/proc/{os.getpid()}/fd/{fd}"), os.fdopen(os.dup(fd), "wb")
            else:
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".part")
                os.chmod(tmp, ORDINARY_MODE & ~_umask())
                self.tmp, self.file = Path(tmp), os.fdopen(fd, "wb")
        self._done = self._finished = False

    def finish(self) -> None:
        """Flush and fsync the complete file under its pending name and close it; no rename yet."""
        if self._finished:
            return
        if not self.file.closed:
            self.file.flush()
            if not self.through:
                os.fsync(self.file.fileno())
            self.file.close()
        elif self.nameless:
            os.fsync(self._fd)  # written by path: the same file
        elif not self.through:
            with open(self.tmp, "rb+") as f:  # written by path: fsync what the writer left
                os.fsync(f.fileno())
            os.chmod(self.tmp, ORDINARY_MODE & ~_umask())  # a writer may have made the file anew
        self._finished = True

    def commit(self) -> Path:
        """``finish``, then rename onto ``path`` (a nameless file is first linked under a unique hidden
        name); a failure leaves the pending file for ``discard``."""
        if not self._done:
            self.finish()
            if self.nameless:
                self.tmp, self.nameless = _link_nameless(self._fd, self.path), False
                os.close(self._fd)
            if not self.through:
                os.replace(self.tmp, self.path)
            self._done = True
        return self.path

    def discard(self) -> None:
        if not self._done:
            self._done = True
            try:
                self.file.close()
            except OSError:
                pass  # a full disk fails the final flush too; the file goes anyway
            if self.nameless:
                os.close(self._fd)  # the file goes with its last descriptor
            elif not self.through:
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


def write_together(contents: dict[Path, bytes]) -> list[Path]:
    """Write every path's bytes, committed together (``commit_together``): all of them or none."""
    files: list[PendingFile] = []
    try:
        for path, content in contents.items():
            files.append(PendingFile(path))
            files[-1].file.write(content)
        return commit_together(files)
    except BaseException:
        for file in files:
            file.discard()
        raise


def commit_together(files: Sequence[PendingFile]) -> list[Path]:
    """Commit every one of ``files`` or none (one run's outputs): each is finished under its pending name,
    then each renamed into place, the file that was at its path kept aside meanwhile. On any failure or
    interrupt every file renamed so far is taken back, every file kept aside returns to its path and every
    pending file is removed, then the exception goes on; on success the kept files are removed. Files written
    straight through (devices, FIFOs, stdout: anything with ``through`` true) are only flushed."""
    kept: list[tuple[PendingFile, Path | None]] = []
    placed = 0  # files renamed into place
    try:
        for file in files:
            file.finish()
        for file in files:
            kept.append((file, None if file.through else _set_aside(file.path)))
            file.commit()
            placed += 1
    except BaseException:
        for i, (file, aside) in reversed(list(enumerate(kept))):
            _take_back(file, aside, placed=i < placed)
        for file in files:
            file.discard()
        raise
    for _, aside in kept:
        if aside is not None:
            aside.unlink(missing_ok=True)
    return [file.path for file in files]


def _open_nameless(folder: Path) -> int | None:
    """A descriptor of a new file with no name in ``folder`` (``O_TMPFILE``, readable so writers may reopen it
    by its /proc path), or None where the platform or the filesystem has none."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag:
        return None
    try:
        fd = os.open(folder, flag | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), ORDINARY_MODE & ~_umask())
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None  # no O_TMPFILE here (ENOENT: a kernel without it and a folder that is missing alike)
        raise
    return fd


def _link_nameless(fd: int, path: Path) -> Path:
    """Give the complete nameless file ``fd`` a unique hidden name beside ``path``: linkat(2) following
    /proc/self/fd/N (a src_dir_fd makes os.link call linkat with AT_SYMLINK_FOLLOW; plain link(2) would link
    the /proc entry itself)."""
    proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(100):
            name = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
            try:
                os.link(str(fd), name, src_dir_fd=proc, follow_symlinks=True)
                return name
            except FileExistsError:
                continue
            except OSError:  # linkat refused (a filesystem without hard links): copy it to a named file
                return _copy_to_named(fd, path)
    finally:
        os.close(proc)
    raise FileExistsError(errno.EEXIST, "no free name to link the finished file", str(path))


def _copy_to_named(fd: int, path: Path) -> Path:
    """The nameless file ``fd`` copied, fsynced, under a unique hidden name beside ``path``."""
    out, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.chmod(name, ORDINARY_MODE & ~_umask())
        with open(fd, "rb", closefd=False) as src, open(out, "wb") as dst:
            src.seek(0)
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def _set_aside(path: Path) -> Path | None:
    """Keep the entry now at ``path`` (None when there is none) under a hidden name beside it: a hard link,
    so ``path`` itself stays in place until its new file replaces it, or a rename where the filesystem has
    no hard links."""
    if not os.path.lexists(path):
        return None
    for _ in range(100):
        aside = path.with_name(f".{path.name}.{secrets.token_hex(6)}.old")
        try:
            os.link(path, aside, follow_symlinks=False)
            return aside
        except FileExistsError:
            continue
        except OSError:  # no hard links here (FAT, some network filesystems)
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old")
            os.close(fd)
            try:
                os.replace(path, name)
            except BaseException:
                os.unlink(name)
                raise
            return Path(name)
    raise FileExistsError(errno.EEXIST, "no free name to keep the previous file", str(path))


def _take_back(file: PendingFile, aside: Path | None, placed: bool) -> None:
    """Undo one file of a failed ``commit_together``: its previous entry back at its path, or, when there
    was none, the new file removed. Best effort: the first failure must be the one reported."""
    try:
        if aside is not None:
            os.replace(aside, file.path)
            aside.unlink(missing_ok=True)  # a link to the file still at its path: rename() leaves both
        elif placed and not file.through:
            file.path.unlink(missing_ok=True)
    except OSError:
        pass


def check_model_file(path: Path) -> None:
    """UsageError unless ``path`` is a readable regular file, the .onnx a command reads (a FIFO or device
    would block or never end). Quick: it imports nothing, so a command says it before loading its runtime."""
    try:
        if path.is_dir():
            raise UsageError(f"{path} is a directory; give one of its .onnx files (`arrun info {path}` lists them "
                             "and the commands that take each)")
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
