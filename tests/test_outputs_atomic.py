"""All or nothing per run: the several files one `arrun sample` writes (text -n 2, WAVs -n 2, the PNG and its
.npy) appear together or not at all. A failure while renaming the second file into place (a full disk, an
interrupt) leaves no new file, no pending or kept-aside file, and the files that were there as they were."""
import errno
import os

import numpy as np
import pytest

from arrun import commands
from arrun.contract.errors import ARError, Interrupted
from arrun.generate import SampleOptions
from conftest import KIND, exported

RUNS = {  # kind -> (output name, -n, length, the paths it writes)
    "text": ("t.txt", 2, 12, ("t-000.txt", "t-001.txt")),
    "audio": ("a.wav", 2, 400, ("a-000.wav", "a-001.wav")),
    "image": ("g.png", 2, None, ("g.png", "g.npy")),
}


@pytest.fixture(params=sorted(RUNS))
def kind(request):
    exported(KIND[request.param])  # built before any test patches os.replace
    return request.param


def run(kind, folder):
    name, n, length, _ = RUNS[kind]
    options = SampleOptions(num_samples=n, length=length, seed=3)
    return commands.sample(exported(KIND[kind]), options=options, out=folder / name)


def listing(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def fail_second_rename(monkeypatch, error):
    """os.replace raises ``error`` when the run renames its second pending file into place; every other
    rename (the kept-aside files going back) goes through."""
    real, placed = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if str(src).endswith(".part"):
            placed.append(dst)
            if len(placed) == 2:
                raise error
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return placed


def test_failed_second_rename_leaves_nothing_new(kind, tmp_path, monkeypatch):
    placed = fail_second_rename(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(ARError, match="No space left on device"):
        run(kind, tmp_path)
    assert len(placed) == 2  # the first file was in place when the second failed
    assert listing(tmp_path) == {}


@pytest.mark.parametrize("links", [True, False], ids=["hard-links", "no-hard-links"])
def test_failed_second_rename_keeps_previous_files(kind, links, tmp_path, monkeypatch):
    before = {name: f"previous {name}\n".encode() for name in RUNS[kind][3]}
    for name, data in before.items():
        (tmp_path / name).write_bytes(data)
    if not links:  # a filesystem without hard links: the previous files are renamed aside instead
        def no_link(*args, **kwargs):
            raise PermissionError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_link)
    fail_second_rename(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(ARError, match="No space left on device"):
        run(kind, tmp_path)
    assert listing(tmp_path) == before


def test_interrupt_during_commit_keeps_previous_files(kind, tmp_path, monkeypatch):
    first = RUNS[kind][3][0]
    (tmp_path / first).write_bytes(b"previous\n")
    fail_second_rename(monkeypatch, KeyboardInterrupt())
    with pytest.raises(Interrupted):
        run(kind, tmp_path)
    assert listing(tmp_path) == {first: b"previous\n"}


def test_success_writes_every_file(kind, tmp_path):
    """Over previous files or into an empty folder, a run writes the same bytes and nothing else."""
    fresh, over = tmp_path / "fresh", tmp_path / "over"
    fresh.mkdir()
    over.mkdir()
    for name in RUNS[kind][3]:
        (over / name).write_bytes(b"previous\n")
    record = run(kind, fresh)
    assert sorted(listing(fresh)) == sorted(RUNS[kind][3])
    assert [os.path.basename(p) for p in record["files"]] == list(RUNS[kind][3])
    run(kind, over)
    assert listing(over) == listing(fresh)
    if kind == "text":
        assert [listing(fresh)[n].decode() for n in RUNS[kind][3]] == record["text"]
    if kind == "image":
        assert np.load(fresh / "g.npy").shape[0] == 2


def test_failed_second_fsync_renames_nothing(kind, tmp_path, monkeypatch):
    """Every file is complete under its pending name before the first is renamed into place."""
    first = RUNS[kind][3][0]
    (tmp_path / first).write_bytes(b"previous\n")
    real, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(ARError, match="Input/output error"):
        run(kind, tmp_path)
    assert listing(tmp_path) == {first: b"previous\n"}
