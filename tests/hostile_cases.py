"""The table of hostile inputs that ``test_hostile.py`` runs through the three command lines.

Each ``Case`` builds its inputs in the test's own tmp folder (through ``Ctx``), names the CLI and the
arguments, the exit code (2 usage, 1 runtime, 130 interrupted), and loose fragments the one ``error:``
line must hold. ``test_hostile.py`` checks the rest of the contract for every case alike: exactly one
``error:`` line, no traceback, no file left behind or changed, the devices intact, and (for memory
bombs) a quick finish within a bounded address space.

Fragments: every item of ``frags`` must occur in the error line (case-insensitive); an item that is a
tuple is a set of alternatives, any one of which suffices. ``forbid`` lists words the line must not hold.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import struct
import subprocess
import tempfile
import atexit
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from conftest import exported, tiny_model

# ------------------------------------------------------------------------------------------------
# What a case is

LIMIT = ("at most", "too large", "too many", "too long", "too big", "limit", "<=", "maximum", "exceed",
         "or fewer", "or less", "larger than", "more than", "up to", "gib", "gb")


@dataclass
class Case:
    id: str
    cli: str                                   # 'arrun' | 'artrain' | 'arexport'
    args: Callable[["Ctx"], list]              # builds the inputs in ctx.tmp, returns argv (without the program)
    code: int | tuple[int, ...]                # the exit code (or the codes accepted where the issue allows two)
    frags: tuple = ()                          # what the error line must say (see the module docstring)
    forbid: tuple = ()                         # what it must not say
    patch: Callable[["Ctx"], None] | None = None  # monkeypatching before the run (ctx.mp)
    root: bool = False                         # needs root (skipped otherwise)
    nonroot: bool = False                      # needs a user that permissions stop (skipped as root)
    bomb: bool = False                         # a memory bomb: must finish in BOMB_SECONDS
    log_ok: bool = False                       # artrain: log/progress lines may precede the one error line
    timeout: float = 30.0                      # a hang is a failure, not a stuck suite
    proc: bool = False                         # run in a real process: it may crash or block in C code
    note: str = ""


BOMB_SECONDS = 10.0  # generous for a shared 2-core machine; the fix should take well under a second


def alt(*alternatives: str) -> tuple[str, ...]:
    return tuple(alternatives)


def _after(*setup):
    """``_after(make(a), make(b))(argv)`` -> argv: inputs made for their side effect, then the arguments."""
    return lambda argv: argv


# ------------------------------------------------------------------------------------------------
# The shared inputs: one exported tiny model per kind (conftest's cache), one trained run per family

KIND_MODEL = {"text": ("transformer", 0), "audio": ("wavenet", 0), "image": ("pixelcnn", 3),
              "audio3": ("wavenet", 3)}
SUFFIX = {"text": ".txt", "audio": ".wav", "image": ".png", "audio3": ".wav"}
TINY_FIT = {  # options that make `artrain fit` take a second
    "pixelcnn": {"model": {"layers": 2, "channels": 8}, "batch_size": 4, "warmup": 1, "eval_every": 1000},
    "wavenet": {"model": {"stacks": 1, "layers_per_stack": 2, "residual_channels": 8, "skip_channels": 8},
                "batch_size": 4, "warmup": 1, "eval_every": 1000},
    "transformer": {"model": {"layers": 1, "d_model": 16, "heads": 2, "window": 8}, "batch_size": 4,
                    "warmup": 1, "eval_every": 1000, "seq_len": 16},
}
_SHARED = Path(tempfile.mkdtemp(prefix="ar-hostile-"))
atexit.register(shutil.rmtree, _SHARED, True)


def model_path(kind: str, graph: str = "step") -> Path:
    family, classes = KIND_MODEL[kind]
    return exported(family, graph, classes)


@functools.lru_cache(maxsize=None)
def _model_bytes(kind: str, graph: str) -> bytes:
    return model_path(kind, graph).read_bytes()


@functools.lru_cache(maxsize=None)
def trained_run(family: str) -> Path:
    """A run written by `artrain fit` (1 step of a tiny model on digits): it has trainer.safetensors."""
    from typer.testing import CliRunner

    from artrain.cli import app

    cfg = _SHARED / f"{family}.json"
    cfg.write_text(json.dumps(TINY_FIT[family]))
    out = _SHARED / f"run-{family}"
    result = CliRunner().invoke(app, ["fit", "--model", family, "--data", "digits", "--steps", "1", "--out",
                                      str(out), "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    return out


@functools.lru_cache(maxsize=None)
def png_bomb() -> bytes:
    """An 8-bit grayscale PNG of 16383 x 32768 whose IDAT (about 0.5 MB) inflates to 512 MiB of zeros:
    deflate blocks ended by a full flush are independent, so one compressed MiB is repeated."""
    w, h = 16383, 32768  # rows of 1 + w bytes: h * (w + 1) = 512 MiB
    mib = bytes(1 << 20)
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = co.compress(mib) + co.flush(zlib.Z_FULL_FLUSH)
    tail = co.flush()
    adler = 1
    for _ in range(512):
        adler = zlib.adler32(mib, adler)
    stream = b"\x78\xda" + block * 512 + tail + struct.pack(">I", adler)
    return png_bytes(w, h, idat=stream)


# ------------------------------------------------------------------------------------------------
# Byte-level writers for hostile files

def wav_bytes(*, rate=8000, width=2, channels=1, frames=200, data=None, data_size=None, riff_size=None,
              fmt_tag=1) -> bytes:
    """A WAV file by hand, so that every header field can lie."""
    if data is None:
        rng = np.random.default_rng(0)
        data = rng.integers(0, 256, frames * width * channels, dtype=np.uint8).tobytes()
    block = width * channels
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate & 0xFFFFFFFF, (rate * block) & 0xFFFFFFFF, block, 8 * width)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data"
            + struct.pack("<I", len(data) if data_size is None else data_size) + data)
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def rf64_bytes(declared: int) -> bytes:
    """An RF64 (64-bit WAV) header declaring ``declared`` bytes of 16-bit audio, holding 400 bytes."""
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    ds64 = struct.pack("<QQQI", declared + 100, declared, declared // 2, 0)
    return (b"RF64" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"ds64" + struct.pack("<I", len(ds64)) + ds64
            + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF) + bytes(400))


def npy_header_bytes(shape, descr="<i8", data=bytes(64)) -> bytes:
    """A .npy file whose header declares ``shape`` whatever the data that follows."""
    header = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (descr, tuple(shape))
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + data


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(w: int, h: int, *, depth=8, color=0, idat=None, channels=1) -> bytes:
    if idat is None:
        raw = b"".join(b"\x00" + bytes(w * channels * max(depth // 8, 1)) for _ in range(h))
        idat = zlib.compress(raw)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
            + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def deep_json(depth: int = 5000, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


# ------------------------------------------------------------------------------------------------
# The context a case builds its inputs in

class Ctx:
    def __init__(self, tmp: Path, mp):
        self.tmp, self.mp = Path(tmp), mp
        self.cleanups: list[Callable[[], None]] = []
        self.fifos: list[str] = []  # the runner unblocks a reader stuck on one of these (and fails the case)

    # ---- paths
    def p(self, *parts: str) -> str:
        return str(self.tmp.joinpath(*parts))

    def out(self, name: str = "out") -> Path:
        d = self.tmp / name
        d.mkdir(exist_ok=True)
        return d

    def file(self, name: str, data: bytes | str = b"") -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return str(path)

    def dir(self, name: str, files: dict | None = None) -> str:
        d = self.tmp / name
        d.mkdir(parents=True, exist_ok=True)
        for fname, data in (files or {}).items():
            self.file(f"{name}/{fname}", data)
        return str(d)

    def fifo(self, name: str) -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        self.fifos.append(str(path))
        return str(path)

    def sparse(self, name: str, size: int, head: bytes = b"") -> str:
        path = self.tmp / name
        with open(path, "wb") as f:
            f.write(head)
            f.truncate(size)
        return str(path)

    def npy(self, name: str, array) -> str:
        path = self.tmp / name
        np.save(path, np.asarray(array), allow_pickle=True)
        return str(path)

    def ro_dir(self) -> str:
        """A read-only filesystem (a tmpfs mounted ro) inside tmp, unmounted at teardown; skips if mount fails."""
        import pytest
        d = self.tmp / "readonly"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a read-only filesystem here ({r.stderr.decode().strip()})")
        self.cleanups.append(lambda: subprocess.run(["umount", str(d)], capture_output=True))
        return str(d)

    # ---- models
    def model(self, kind: str = "text", graph: str = "step") -> str:
        """The shared export (outside tmp: inputs the run must not touch, checked by their own hash)."""
        return str(model_path(kind, graph))

    def model_copy(self, kind: str = "text", graph: str = "step", name: str | None = None) -> str:
        return self.file(name or f"{kind}-{graph}.onnx", _model_bytes(kind, graph))

    def meta(self, name: str, kind: str = "text", graph: str = "step", **props) -> str:
        """A copy of the kind's export with metadata_props changed: key -> new value, or a function of the old
        value, or None to delete it. Keys use '__' for '.' after 'ar' (ar__max_length -> ar.max_length)."""
        proto = onnx.load_from_string(_model_bytes(kind, graph))
        meta = {p.key: p.value for p in proto.metadata_props}
        for key, value in props.items():
            key = key.replace("__", ".")
            meta[key] = value(meta[key]) if callable(value) else value
        del proto.metadata_props[:]
        for k, v in meta.items():
            if v is not None:
                proto.metadata_props.add(key=k, value=v)
        return self.file(name, proto.SerializeToString())

    def data(self, kind: str, name: str | None = None) -> str:
        """Valid scoring data of the kind."""
        if kind == "text":
            return self.file(name or "data.txt", "abc de.\nhag")
        if kind in ("audio", "audio3"):
            return self.file(name or "data.wav", wav_bytes())
        return self.npy(name or "data.npy", np.random.default_rng(0).integers(0, 4, (2, 5, 4)))

    # ---- checkpoints and configs
    def ckpt(self, family: str = "pixelcnn", classes: int = 0, name: str = "ckpt") -> str:
        src = tiny_model(family, classes)[1]
        dst = self.tmp / name
        shutil.copytree(src, dst)
        return str(dst)

    def trained(self, family: str = "pixelcnn", name: str = "run") -> str:
        dst = self.tmp / name
        shutil.copytree(trained_run(family), dst)
        return str(dst)

    def edit_json(self, path: str, change) -> str:
        """Rewrite the JSON file at ``path``: ``change`` is a dict merged in, a function of the old value, or a
        raw string written as is."""
        p = Path(path)
        if isinstance(change, str):
            p.write_text(change)
        elif callable(change):
            p.write_text(json.dumps(change(json.loads(p.read_text()))))
        else:
            p.write_text(json.dumps({**json.loads(p.read_text()), **change}))
        return path

    def cfg(self, family: str = "pixelcnn", raw: str | None = None, model: dict | None = None, name="cfg.json",
            **extra) -> str:
        """A --config file: the tiny options of ``family`` with ``extra`` merged (model fields too), or ``raw``."""
        if raw is not None:
            return self.file(name, raw)
        base = json.loads(json.dumps(TINY_FIT[family]))
        base["model"].update(model or {})
        base.update(extra)
        return self.file(name, json.dumps(base))

    def fit(self, *extra, family="pixelcnn", cfg: str | None = None, out: str | None = None, data="digits") -> list:
        """argv of a cheap `artrain fit` (1 step of a tiny model) with ``extra`` appended."""
        return ["fit", "--model", family, "--data", data, "--steps", "1", "--out", self.p("run") if out is None else out,
                "--config", cfg or self.cfg(family), *extra]


# ------------------------------------------------------------------------------------------------
# Metadata that parses but is out of range (or of the wrong type): info, sample, score and bench, exit 2

def _state(fn):
    """A metadata edit of ar.state: ``fn`` changes the parsed list of state dicts in place."""
    def edit(old: str) -> str:
        specs = json.loads(old)
        fn(specs)
        return json.dumps(specs)
    return edit


def _set_all(key, value):
    def fn(specs):
        for s in specs:
            s[key] = value(s[key]) if callable(value) else value
    return fn


META = [  # (name, kind, {metadata key: value}, what the line names)
    ("maxlen-negative", "text", {"ar__max_length": "-1"}, ("max_length", "maximum length", "max length")),
    ("maxlen-huge", "text", {"ar__max_length": str(10**12)}, ("max_length", "maximum length", "max length")),
    ("maxlen-float", "text", {"ar__max_length": "24.0"}, ("max_length", "maximum length", "max length")),
    ("imageshape-zero", "image", {"ar__data__image_shape": "[0, 4]"}, ("image_shape", "image shape")),
    ("imageshape-negative", "image", {"ar__data__image_shape": "[-5, 4]"}, ("image_shape", "image shape")),
    ("imageshape-huge", "image", {"ar__data__image_shape": "[100000, 100000]"}, ("image_shape", "image shape")),
    ("imageshape-float", "image", {"ar__data__image_shape": "[5.5, 4]"}, ("image_shape", "image shape")),
    ("imageshape-strings", "image", {"ar__data__image_shape": '["5", "4"]'}, ("image_shape", "image shape")),
    ("imageshape-object", "image", {"ar__data__image_shape": '{"h": 5}'}, ("image_shape", "image shape")),
    ("classes-negative", "text", {"ar__condition__num_classes": "-1"}, ("num_classes", "classes")),
    ("classnames-number", "image", {"ar__condition__class_names": "7"}, ("class_names", "class names")),
    ("classnames-objects", "image", {"ar__condition__class_names": '[{"a": 1}, [2], null]'}, ("class_names", "class names")),
    ("start-huge", "text", {"ar__start_token": str(10**9)}, ("start_token", "start token")),
    ("start-negative", "text", {"ar__start_token": "-1"}, ("start_token", "start token")),
    ("samplerate-huge", "audio", {"ar__data__sample_rate": str(10**12)}, ("sample_rate", "sample rate")),
    ("samplerate-negative", "audio", {"ar__data__sample_rate": "-8000"}, ("sample_rate", "sample rate")),
    ("vocab-huge", "image", {"ar__vocab_size": str(10**12)}, ("vocab", "disagrees", "logits")),
    ("alphabet-number", "text", {"ar__data__alphabet": "5"}, ("alphabet",)),
    ("producer-list", "text", {"ar__producer": "[1, 2]"}, ("producer",)),
    ("state-deep", "text", {"ar__state": deep_json()}, ("ar.state", "state")),
    ("state-object", "text", {"ar__state": '{"a": 1}'}, ("ar.state", "state")),
    ("state-dtype-bogus", "text", {"ar__state": _state(_set_all("dtype", "notatype"))}, ("dtype", "ar.state", "state")),
    ("state-dtype-object", "text", {"ar__state": _state(_set_all("dtype", "object"))}, ("dtype", "ar.state", "state")),
    ("state-shape-terabytes", "text",
     {"ar__state": _state(_set_all("shape", ["batch", 10**6, 10**6, 10**6]))}, ("state", "shape", *LIMIT)),
    ("state-shape-float", "text", {"ar__state": _state(_set_all("shape", lambda s: [s[0], *(d + 0.5 for d in s[1:])]))},
     ("state", "shape")),
    ("state-init-string", "text", {"ar__state": _state(_set_all("init", "zero"))}, ("state", "init")),
]


def _meta_args(command: str, name: str, kind: str, props: dict):
    def build(ctx: Ctx) -> list:
        model = ctx.meta(f"m-{name}.onnx", kind, **props)
        if command == "info":
            return ["info", model]
        if command == "sample":
            return ["sample", model, "--out", str(ctx.out() / f"s{SUFFIX[kind]}")]
        if command == "score":
            return ["score", model, ctx.data(kind), *(["--condition", "0"] if kind == "image" else [])]
        return ["bench", model, "--steps", "5"]
    return build


META_CASES = [
    Case(f"meta-{name}-{command}", "arrun", _meta_args(command, name, kind, props), 2,
         frags=(alt(f"m-{name}.onnx", *names),))
    for name, kind, props, names in META for command in ("info", "sample", "score", "bench")
]


# ------------------------------------------------------------------------------------------------
# onnxruntime failing during a run: one line, exit 1, no partial file

def ort_fails(method: str = "run_with_iobinding", after: int = 0, cls: str = "Fail"):
    """Monkeypatch InferenceSession.<method> to raise onnxruntime's ``cls`` after ``after`` good calls."""
    def patch(ctx: Ctx) -> None:
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        real = getattr(ort.InferenceSession, method)
        calls = [0]

        def failing(self, *args, **kwargs):
            calls[0] += 1
            if calls[0] > after:
                error = RuntimeError if cls == "RuntimeError" else getattr(state, cls)
                raise error("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while "
                                          "running Gather node. Name:'/embed/Gather' injected failure\nsecond line")
            return real(self, *args, **kwargs)
        ctx.mp.setattr(ort.InferenceSession, method, failing)
    return patch


ORT = alt("onnxruntime", "injected")
NOT_A_BUG = ("unexpected", "report it")  # an onnxruntime failure is reported as such, not as a bug of arrun
ORT_CASES = [
    Case("ort-sample-text-streaming", "arrun", lambda c: ["sample", c.model("text"), "--length", "12",
         "--out", str(c.out() / "t.txt")], 1, (ORT,), patch=ort_fails(after=4)),
    Case("ort-sample-text-json", "arrun", lambda c: ["sample", c.model("text"), "-n", "3", "--json",
         "--out", str(c.out() / "t.txt")], 1, (ORT,), patch=ort_fails(after=4, cls="RuntimeException")),
    Case("ort-sample-audio-user-files-beside", "arrun", lambda c: _after(
         c.file("out/a.wav", b"the user's own a.wav"), c.file("out/a.wav.part", b"the user's a.wav.part"),
         c.file("out/.a.wav.part", b"hidden"))(["sample", c.model("audio"), "--length", "3000", "-n", "2",
         "--out", c.p("out", "a.wav")]), 1, (ORT,), patch=ort_fails(after=1000)),
    Case("ort-sample-image", "arrun", lambda c: ["sample", c.model("image"), "-n", "2",
         "--out", str(c.out() / "d.png")], 1, (ORT,), patch=ort_fails(after=10, cls="InvalidArgument")),
    Case("ort-score-text-full", "arrun", lambda c: ["score", c.model("text", "full"), c.data("text")], 1, (ORT,),
         patch=ort_fails("run")),
    Case("ort-score-image-step", "arrun", lambda c: ["score", c.model("image"), c.data("image"), "--condition", "1"],
         1, (ORT,), patch=ort_fails(after=3)),
    Case("ort-score-audio-step", "arrun", lambda c: ["score", c.model("audio"), c.data("audio"), "--json"],
         1, (ORT,), patch=ort_fails(after=3, cls="EPFail")),
    Case("ort-bench-loop", "arrun", lambda c: ["bench", c.model("text"), "--steps", "10"], 1, (ORT,),
         patch=ort_fails(after=5)),
    Case("ort-bench-bare-loop", "arrun", lambda c: ["bench", c.model("audio"), "--steps", "10"], 1, (ORT,),
         patch=ort_fails("run", after=2)),
    Case("ort-sample-runtimeerror", "arrun", lambda c: ["sample", c.model("audio"), "--length", "50",
         "--out", str(c.out() / "a.wav")], 1, (ORT,), patch=ort_fails(after=20, cls="RuntimeError"),
         note="IO-binding runs raise a plain RuntimeError('Error in execution: ...')"),
]
for _case in ORT_CASES:
    _case.forbid = NOT_A_BUG


# ------------------------------------------------------------------------------------------------
# Memory bombs: refused in a few seconds, without allocating gigabytes, naming the limit

def _bomb(id, args, frags=(LIMIT,), cli="arrun", code=2, note="", proc=False):
    return Case(id, cli, args, code, frags, bomb=True, note=note, proc=proc)


BOMB_CASES = [
    _bomb("bomb-image-n", lambda c: ["sample", c.model("image"), "-n", "100000000", "--out", str(c.out() / "d.png")],
          (alt("-n", "--num-samples"), LIMIT)),
    _bomb("bomb-audio-n-condition", lambda c: ["sample", c.model("audio3"), "-n", "100000000", "--condition", "1",
          "--out", str(c.out() / "a.wav")], (alt("-n", "--num-samples"), LIMIT)),
    _bomb("bomb-audio-length", lambda c: ["sample", c.model("audio"), "--length", "10000000000",
          "--out", str(c.out() / "a.wav")], ("--length", LIMIT)),
    _bomb("bomb-audio-n-times-length", lambda c: ["sample", c.model("audio"), "-n", "1000", "--length", "10000000",
          "--out", str(c.out() / "a.wav")], (LIMIT,)),
    _bomb("bomb-text-length", lambda c: ["sample", c.model("text"), "--length", "10000000000"], ("--length", LIMIT)),
    _bomb("bomb-text-n", lambda c: ["sample", c.model("text"), "-n", "100000000", "--json"],
          (alt("-n", "--num-samples"), LIMIT)),
    _bomb("bomb-sample-threads", lambda c: ["sample", c.model("text"), "--threads", "1000000"], ("--threads",),
          proc=True, note="onnxruntime asked for a million threads crashes the interpreter: run in a process"),
    _bomb("bomb-sample-threads-overflow", lambda c: ["sample", c.model("text"), "--threads", str(10**30)],
          ("--threads",), proc=True),
    _bomb("bomb-bench-batch", lambda c: ["bench", c.model("text"), "--batch-size", "1000000000", "--steps", "5"],
          ("--batch-size", LIMIT)),
    _bomb("bomb-bench-steps", lambda c: ["bench", c.model("audio"), "--steps", str(10**12)], ("--steps", LIMIT)),
    _bomb("bomb-score-wav-4gib-header", lambda c: ["score", c.model("audio"),
          c.file("big.wav", wav_bytes(frames=50, data_size=0xFFFFFFF0, riff_size=0xFFFFFFFF))],
          (alt("big.wav", *LIMIT),)),
    _bomb("bomb-score-wav-rf64-8gib", lambda c: ["score", c.model("audio"), c.file("rf64.wav", rf64_bytes(8 << 30))],
          (alt("rf64.wav", *LIMIT),)),
    _bomb("bomb-score-wav-1hz-upsampled", lambda c: ["score", c.model("audio"),
          c.file("slow.wav", wav_bytes(rate=1, frames=1_000_000))], (alt("slow.wav", *LIMIT),),
          note="a 2 MB WAV at 1 Hz resampled to 8 kHz is 8e9 samples"),
    _bomb("bomb-score-npy-header", lambda c: ["score", c.model("image"),
          c.file("bomb.npy", npy_header_bytes((10**9, 5, 4))), "--condition", "0"], (alt("bomb.npy", *LIMIT),)),
    _bomb("bomb-score-npy-header-overflow", lambda c: ["score", c.model("image"),
          c.file("bomb2.npy", npy_header_bytes((10**12, 10**12, 5))), "--condition", "0"], (alt("bomb2.npy", *LIMIT),)),
    _bomb("bomb-score-text-sparse-8gib", lambda c: ["score", c.model("text", "full"),
          c.sparse("huge.txt", 8 << 30, b"abc")], (alt("huge.txt", *LIMIT),)),
    _bomb("bomb-score-png-sparse-5gib", lambda c: ["score", c.model("image"),
          c.sparse("huge.png", 5 << 30, b"\x89PNG\r\n\x1a\n"), "--condition", "0"], (alt("huge.png", *LIMIT),)),
    _bomb("bomb-score-png-zlib-512mib", lambda c: ["score", c.model("image"), c.file("zip.png", png_bomb()),
          "--condition", "0"], (alt("zip.png", *LIMIT),)),
    _bomb("bomb-fit-batch-size", lambda c: c.fit("--batch-size", "1000000000"), (alt("--batch-size", "batch_size"),),
          cli="artrain"),
    _bomb("bomb-fit-model-channels", lambda c: c.fit(cfg=c.cfg(model={"channels": 10**9})), ("channels",),
          cli="artrain"),
    _bomb("bomb-fit-npy-data", lambda c: c.fit(data=c.file("bomb.npy", npy_header_bytes((10**9, 8, 8)))),
          (alt("bomb.npy", *LIMIT),), cli="artrain"),
    _bomb("bomb-export-model-channels", lambda c: ["onnx", c.edit_json(
          os.path.join(c.ckpt("wavenet"), "config.json"),
          lambda cfg: {**cfg, "model": {**cfg["model"], "residual_channels": 10**7}}).removesuffix("/config.json"),
          "--step-graph", "--out", c.p("x.onnx")], (alt("residual_channels", "config.json", *LIMIT),), cli="arexport"),
]


# ------------------------------------------------------------------------------------------------
# Output paths

DEV_FULL = alt("space", "full", "disk")
OUT_CASES = [
    Case("out-missing-folder-audio", "arrun", lambda c: ["sample", c.model("audio"), "--out", c.p("no", "a.wav")], 2,
         ("does not exist",)),
    Case("out-missing-folder-text", "arrun", lambda c: ["sample", c.model("text"), "--out", c.p("no", "t.txt")], 2,
         ("does not exist",)),
    Case("out-missing-folder-image", "arrun", lambda c: ["sample", c.model("image"), "--out", c.p("no", "d.png")], 2,
         ("does not exist",)),
    Case("out-is-directory-audio", "arrun", lambda c: ["sample", c.model("audio"), "--out", c.dir("d.wav")], 2,
         ("directory",)),
    Case("out-is-directory-text", "arrun", lambda c: ["sample", c.model("text"), "--out", c.dir("t.txt")], 2,
         ("directory",)),
    Case("out-is-directory-image", "arrun", lambda c: ["sample", c.model("image"), "--out", c.dir("d.png")], 2,
         ("directory",)),
    Case("out-npy-beside-png-is-directory", "arrun", lambda c: _after(c.dir("d.npy"))(["sample", c.model("image"),
         "--out", c.p("d.png")]), 2, (alt("d.npy", "directory"),)),
    Case("out-numbered-name-is-directory", "arrun", lambda c: _after(c.dir("a-001.wav"))(["sample", c.model("audio"),
         "-n", "2", "--length", "10", "--out", c.p("a.wav")]), 2, (alt("a-001.wav", "directory"),)),
    Case("out-parent-is-a-file", "arrun", lambda c: ["sample", c.model("audio"), "--out",
         os.path.join(c.file("afile", "x"), "a.wav")], 2, (alt("does not exist", "not a directory", "afile"),)),
    Case("out-mp3-for-audio", "arrun", lambda c: ["sample", c.model("audio"), "--out", c.p("x.mp3")], 2, (".wav",)),
    Case("out-jpg-for-image", "arrun", lambda c: ["sample", c.model("image"), "--out", c.p("d.jpg")], 2, (".png",)),
    Case("out-empty-string-audio", "arrun", lambda c: ["sample", c.model("audio"), "--out", ""], 2,
         (alt("--out", "directory"),)),
    Case("out-under-proc-audio", "arrun", lambda c: ["sample", c.model("audio"), "--out", "/proc/ar-hostile.wav"], 2,
         (alt("/proc", "--out"),)),
    Case("out-under-proc-text", "arrun", lambda c: ["sample", c.model("text"), "--out", "/proc/ar-hostile.txt"], 2,
         (alt("/proc", "--out"),)),
    Case("out-readonly-fs-audio", "arrun", lambda c: ["sample", c.model("audio"), "--out",
         os.path.join(c.ro_dir(), "a.wav")], 2, (alt("read-only", "readonly", "--out", "cannot write"),)),
    Case("out-dev-full-text", "arrun", lambda c: ["sample", c.model("text"), "--out", "/dev/full"], 1, (DEV_FULL,),
         root=True),
    Case("out-dev-full-audio", "arrun", lambda c: ["sample", c.model("audio"), "--length", "100", "--out", "/dev/full"],
         1, (DEV_FULL,), root=True),
    Case("out-dev-full-image", "arrun", lambda c: ["sample", c.model("image"), "--out", "/dev/full"], (1, 2), (),
         root=True, note="png and npy beside a device: refused or disk full, never a file created in /dev"),
    Case("out-dev-full-text-json-n3", "arrun", lambda c: ["sample", c.model("text"), "-n", "3", "--json",
         "--out", "/dev/full"], (1, 2), (alt("/dev/full", *DEV_FULL),), root=True,
         note="three samples to one device: disk full, or refused (numbered names cannot apply to a device)"),
    # arexport
    Case("export-out-empty-string", "arexport", lambda c: ["onnx", c.ckpt("wavenet"), "--step-graph", "--out", ""], 2,
         (alt("--out", "directory"),)),
    Case("export-out-under-proc", "arexport", lambda c: ["onnx", c.ckpt("wavenet"), "--step-graph", "--out",
         "/proc/ar-hostile.onnx"], 2, (alt("/proc", "--out", "cannot write"),)),
    Case("export-out-readonly-fs", "arexport", lambda c: ["onnx", c.ckpt("wavenet"), "--step-graph", "--out",
         os.path.join(c.ro_dir(), "m.onnx")], 2, (alt("read-only", "readonly", "--out", "cannot write"),)),
    Case("export-out-dev-full", "arexport", lambda c: ["onnx", c.ckpt("wavenet"), "--step-graph", "--no-verify",
         "--force", "--out", "/dev/full"], 1, (DEV_FULL,), root=True),
    # artrain
    Case("fit-out-is-a-file", "artrain", lambda c: c.fit(out=c.file("taken", "the user's file")), 2,
         (alt("--out", "taken"),)),
    Case("fit-out-under-proc", "artrain", lambda c: c.fit(out="/proc/ar-hostile-run"), 2, (alt("--out", "/proc"),)),
    Case("fit-out-readonly-fs", "artrain", lambda c: c.fit(out=os.path.join(c.ro_dir(), "run")), 2,
         (alt("--out", "read-only", "readonly"),)),
    Case("fit-out-user-folder", "artrain", lambda c: c.fit(out=c.dir("mine", {
         "model.safetensors": b"the user's own weights", "notes.txt": "my notes"})), 2, (alt("--out", "mine"),)),
    Case("fit-out-user-metrics", "artrain", lambda c: c.fit(out=c.dir("mine", {"metrics.jsonl": '{"mine": 1}\n'})), 2,
         (alt("--out", "mine"),)),
    Case("fit-out-empty-string", "artrain", lambda c: c.fit(out=""), 2, (alt("--out", "folder", "directory"),),
         note="'' is the working directory, which holds the user's files (here the config)"),
]


# ------------------------------------------------------------------------------------------------
# Sampling options that are not numbers one can sample with

SAMPLING_CASES = [
    Case(f"sampling-{kind}-{flag.strip('-')}-{value}", "arrun",
         (lambda flag, value, kind: lambda c: ["sample", c.model(kind), flag, value,
                                               "--out", str(c.out() / f"s{SUFFIX[kind]}")])(flag, value, kind),
         2, (flag,))
    for kind, flag, value in [
        ("text", "--temperature", "nan"), ("text", "--temperature", "inf"), ("text", "--temperature", "-inf"),
        ("text", "--temperature", "1e309"), ("audio", "--temperature", "nan"), ("image", "--temperature", "inf"),
        ("text", "--top-p", "nan"), ("text", "--top-p", "inf"), ("text", "--top-p", "-inf"),
        ("text", "--top-p", "1e-400"), ("audio", "--top-p", "nan"), ("text", "--top-k", "-5"),
    ]
]


# ------------------------------------------------------------------------------------------------
# Scoring data that is not what it claims

def _score(kind, make, *extra, graph="step"):
    return lambda c: ["score", c.model(kind, graph), make(c), *extra]


SCORE_CASES = [
    Case("score-wav-rate-zero", "arrun", _score("audio", lambda c: c.file("r0.wav", wav_bytes(rate=0))), 2,
         (alt("r0.wav", "sample rate", "0 Hz"),)),
    Case("score-wav-40-bit", "arrun", _score("audio", lambda c: c.file("w5.wav", wav_bytes(width=5))), 2,
         (alt("w5.wav", "40-bit"),)),
    Case("score-wav-empty-file", "arrun", _score("audio", lambda c: c.file("empty.wav", b"")), 2, ("empty.wav",)),
    Case("score-wav-header-only", "arrun", _score("audio", lambda c: c.file("hdr.wav", wav_bytes(frames=0))), 2,
         ("hdr.wav",)),
    Case("score-wav-truncated-header", "arrun", _score("audio", lambda c: c.file("cut.wav", wav_bytes()[:30])), 2,
         ("cut.wav",)),
    Case("score-wav-truncated-data", "arrun", _score("audio", lambda c: c.file("short.wav",
         wav_bytes(frames=10, data_size=2000, riff_size=2036))), 2, (alt("short.wav", "truncated"),),
         note="the header declares 1000 frames, the file holds 10"),
    Case("score-wav-zero-channels", "arrun", _score("audio", lambda c: c.file("c0.wav", wav_bytes(channels=0,
         data=bytes(100)))), 2, ("c0.wav",)),
    Case("score-wav-float-format", "arrun", _score("audio", lambda c: c.file("f32.wav", wav_bytes(width=4,
         fmt_tag=3))), 2, ("f32.wav",)),
    Case("score-wav-not-riff", "arrun", _score("audio", lambda c: c.file("mp3.wav", b"ID3\x04" + bytes(200))), 2,
         ("mp3.wav",)),
    Case("score-wav-folder-without-wavs", "arrun", _score("audio", lambda c: c.dir("nowavs", {"a.txt": "x"})), 2,
         (alt("nowavs", "no .wav", "holds no"),)),
    Case("score-png-rgb", "arrun", _score("image", lambda c: c.file("rgb.png", png_bytes(4, 5, color=2, channels=3)),
         "--condition", "0"), 2, (alt("rgb.png", "grayscale"),)),
    Case("score-png-16-bit", "arrun", _score("image", lambda c: c.file("g16.png", png_bytes(4, 5, depth=16)),
         "--condition", "0"), 2, (alt("g16.png", "8-bit"),)),
    Case("score-png-truncated", "arrun", _score("image", lambda c: c.file("cut.png", png_bytes(4, 5)[:40]),
         "--condition", "0"), 2, ("cut.png",)),
    Case("score-png-garbage-idat", "arrun", _score("image", lambda c: c.file("bad.png", png_bytes(4, 5,
         idat=b"not zlib at all")), "--condition", "0"), 2, ("bad.png",)),
    Case("score-png-wrong-size", "arrun", _score("image", lambda c: c.file("big.png", png_bytes(8, 8)),
         "--condition", "0"), 2, (alt("big.png", "8x8"),)),
    Case("score-png-folder-without-pngs", "arrun", _score("image", lambda c: c.dir("nopngs", {"a.txt": "x",
         "b.wav": wav_bytes()}), "--condition", "0"), 2, (alt("nopngs", "no .png", "holds no"),)),
    Case("score-npy-pickled-objects", "arrun", _score("image", lambda c: c.npy("obj.npy", np.array([{"a": 1}, None],
         dtype=object)), "--condition", "0"), 2, ("obj.npy",)),
    Case("score-npy-2d", "arrun", _score("image", lambda c: c.npy("flat.npy", np.zeros((5, 4), np.int64)),
         "--condition", "0"), 2, ("flat.npy",)),
    Case("score-npy-empty", "arrun", _score("image", lambda c: c.npy("none.npy", np.zeros((0, 5, 4), np.int64)),
         "--condition", "0"), 2, ("none.npy",)),
    Case("score-npy-bool", "arrun", _score("image", lambda c: c.npy("bool.npy", np.zeros((2, 5, 4), bool)),
         "--condition", "0"), 2, ("bool.npy",)),
    Case("score-npy-uint64-huge-levels", "arrun", _score("image", lambda c: c.npy("u64.npy",
         np.full((2, 5, 4), 2**63 + 5, np.uint64)), "--condition", "0"), 2, (alt("u64.npy", "levels"),)),
    Case("score-npy-truncated-data", "arrun", _score("image", lambda c: c.file("cut.npy",
         npy_header_bytes((2, 5, 4), data=bytes(40))), "--condition", "0"), 2, ("cut.npy",)),
    Case("score-text-outside-alphabet", "arrun", _score("text", lambda c: c.file("z.txt", "abc XYZ é"),
         graph="full"), 2, ("alphabet",)),
    Case("score-text-empty", "arrun", _score("text", lambda c: c.file("e.txt", "")), 2, (alt("e.txt", "empty"),)),
    Case("score-text-folder", "arrun", _score("text", lambda c: c.dir("texts", {"a.txt": "abc"}), graph="full"), 2,
         (alt("texts", "folder"),)),
    Case("score-text-utf16", "arrun", _score("text", lambda c: c.file("u16.txt", "abc".encode("utf-16"))), 2,
         (alt("u16.txt", "UTF-8"),)),
    Case("score-data-fifo", "arrun", _score("text", lambda c: c.fifo("pipe.txt"), graph="full"), 2, ("pipe.txt",),
         timeout=10),
    Case("score-data-missing-unicode", "arrun", _score("text", lambda c: c.p("dätä ü 数据.txt")), 2,
         (alt("dätä ü 数据.txt", "does not exist"),)),
    Case("score-data-empty-string", "arrun", lambda c: ["score", c.model("text", "full"), ""], 2, ()),
    Case("score-step-graph-wrong-kind", "arrun", _score("text", lambda c: c.data("audio")), 2,
         (alt("audio", "text"),)),
    Case("score-image-without-condition", "arrun", _score("image", lambda c: c.data("image")), 2, ("--condition",)),
    Case("score-condition-out-of-range", "arrun", _score("image", lambda c: c.data("image"), "--condition", "5"), 2,
         ("--condition",)),
    Case("score-condition-negative", "arrun", _score("image", lambda c: c.data("image"), "--condition", "-1"), 2,
         ("--condition",)),
    Case("score-condition-unconditional", "arrun", _score("text", lambda c: c.data("text"), "--condition", "0",
         graph="full"), 2, (alt("--condition", "unconditional"),)),
]


# ------------------------------------------------------------------------------------------------
# artrain: config values of the wrong type, resume, eval of hostile checkpoints, NaN, tiny data

def _cfg_case(id, frag, code=2, **cfg):
    model = cfg.pop("model", None)
    return Case(f"fit-config-{id}", "artrain", lambda c: c.fit(cfg=c.cfg(model=model, **cfg)), code, (frag,))


def _nan_loss(ctx: Ctx) -> None:
    from artrain.models import ARModel

    real = ARModel.output_nll  # the training loss of every family

    def nan(*args, **kwargs):
        return real(*args, **kwargs) * float("nan")
    ctx.mp.setattr(ARModel, "output_nll", nan)


NO_CHECKPOINT_CLAIM = ("last good checkpoint", "checkpoint is in", "checkpoint is saved", "continue with --resume")

ARTRAIN_CASES = [
    _cfg_case("steps-string", alt("steps",), steps="10"),
    _cfg_case("steps-float", alt("steps",), steps=1.5),
    _cfg_case("steps-bool", alt("steps",), steps=True),
    _cfg_case("lr-string", alt("lr",), lr="fast"),
    _cfg_case("lr-infinity", alt("lr",), lr=float("inf")),
    _cfg_case("seed-string", alt("seed",), seed="x"),
    _cfg_case("seed-negative", alt("seed",), seed=-1),
    _cfg_case("batch-size-list", alt("batch_size", "batch-size"), batch_size=[4]),
    _cfg_case("seq-len-string", alt("seq_len", "seq-len"), seq_len="16"),
    _cfg_case("weight-decay-string", alt("weight_decay",), weight_decay="lots"),
    _cfg_case("eval-every-string", alt("eval_every",), eval_every="5"),
    _cfg_case("warmup-float", alt("warmup",), warmup=0.5),
    _cfg_case("device-number", alt("device",), device=5),
    _cfg_case("conditional-string", alt("conditional",), conditional="yes"),
    _cfg_case("model-layers-negative", alt("layers",), model={"layers": -1}),
    _cfg_case("model-channels-string", alt("channels",), model={"channels": "8"}),
    _cfg_case("model-channels-zero", alt("channels",), model={"channels": 0}),
    _cfg_case("model-kernel-even", alt("kernel_size", "kernel"), model={"kernel_size": 2}),
    _cfg_case("model-dropout-two", alt("dropout",), model={"dropout": 2.0}),
    _cfg_case("model-layers-null", alt("layers",), model={"layers": None}),
    Case("fit-config-model-deep", "artrain", lambda c: c.fit(cfg=c.cfg(raw='{"model": ' + deep_json(5000, '{"a": ', "}")
         .replace('{"a": }', '{"a": 1}') + "}")), 2, (alt("cfg.json", "config"),)),
    Case("fit-config-deep-list", "artrain", lambda c: c.fit(cfg=c.cfg(raw=deep_json())), 2, (alt("cfg.json", "config"),)),
    Case("fit-config-is-directory", "artrain", lambda c: c.fit(cfg=c.dir("cfgdir")), 2, (alt("cfgdir", "--config"),)),
    Case("fit-config-fifo", "artrain", lambda c: c.fit(cfg=c.fifo("cfg.fifo")), 2, (alt("cfg.fifo", "--config"),),
         timeout=10),
    Case("fit-config-missing", "artrain", lambda c: c.fit(cfg=c.p("nope.json")), 2, ("nope.json",)),
    Case("fit-lr-inf", "artrain", lambda c: c.fit("--lr", "inf"), 2, ("--lr",)),
    Case("fit-lr-nan", "artrain", lambda c: c.fit("--lr", "nan"), 2, ("--lr",)),
    Case("fit-steps-negative", "artrain", lambda c: c.fit("--steps", "-1"), 2, ("--steps",)),
    Case("fit-seed-negative", "artrain", lambda c: c.fit("--seed", "-1"), 2, ("--seed",)),
    Case("fit-seed-huge", "artrain", lambda c: c.fit("--seed", str(2**64)), 2, ("--seed",)),
    Case("fit-seq-len-negative", "artrain", lambda c: c.fit("--seq-len", "-5", family="transformer"), 2,
         (alt("--seq-len", "seq_len"),)),
    Case("fit-device-tpu", "artrain", lambda c: c.fit("--device", "tpu"), 2, ("--device",)),
    Case("fit-data-empty-string", "artrain", lambda c: c.fit(data=""), 2, ("--data",)),
    Case("fit-data-one-character", "artrain", lambda c: c.fit(family="transformer", data=c.file("one.txt", "x")), 2,
         (alt("one.txt", "short", "character"),)),
    Case("fit-data-empty-text", "artrain", lambda c: c.fit(family="transformer", data=c.file("e.txt", "")), 2,
         (alt("e.txt", "empty"),)),
    Case("fit-data-two-images", "artrain", lambda c: c.fit(data=c.npy("two.npy", np.zeros((2, 5, 4), np.int64))), 2,
         ("two.npy",)),
    Case("fit-data-wav-40-bit", "artrain", lambda c: c.fit(family="wavenet", data=c.dir("wavs", {
         "a.wav": wav_bytes(), "b.wav": wav_bytes(width=5), "c.wav": wav_bytes()})), 2, (alt("b.wav", "40-bit"),)),
    Case("fit-data-wav-rate-zero", "artrain", lambda c: c.fit(family="wavenet", data=c.dir("wavs", {
         "a.wav": wav_bytes(), "b.wav": wav_bytes(rate=0), "c.wav": wav_bytes()})), 2, (alt("b.wav", "rate"),)),
    Case("fit-nan-loss-at-step-0", "artrain", lambda c: c.fit(), 1, (alt("step 0", "nan"),), forbid=NO_CHECKPOINT_CLAIM,
         patch=_nan_loss, log_ok=True),
    Case("fit-lr-1e30-diverges", "artrain", lambda c: c.fit("--lr", "1e30", "--steps", "5"), 1,
         (alt("nan", "inf", "loss"),), forbid=NO_CHECKPOINT_CLAIM, log_ok=True,
         note="the loss turns NaN before any checkpoint was written"),
    # --resume
    Case("resume-with-model", "artrain", lambda c: ["fit", "--resume", c.trained(), "--model", "wavenet"], 2,
         ("--resume",)),
    Case("resume-with-data", "artrain", lambda c: ["fit", "--resume", c.trained(), "--data", "text"], 2, ("--resume",)),
    Case("resume-with-config", "artrain", lambda c: ["fit", "--resume", c.trained(), "--config", c.cfg()], 2,
         ("--resume",)),
    Case("resume-with-out", "artrain", lambda c: ["fit", "--resume", c.trained(), "--out", c.p("elsewhere")], 2,
         ("--resume",)),
    Case("resume-other-architecture", "artrain", lambda c: _after(shutil.copyfile(
         os.path.join(c.trained("wavenet", "other"), "trainer.safetensors"),
         os.path.join(c.trained(), "trainer.safetensors")))(["fit", "--resume", c.p("run"), "--steps", "2"]), 2,
         (alt("trainer.safetensors", "does not match", "architecture"),)),
    Case("resume-without-trainer-state", "artrain", lambda c: ["fit", "--resume", c.ckpt("pixelcnn")], 2,
         (alt("trainer.safetensors", "--resume", "ckpt"),)),
    Case("resume-corrupt-trainer-state", "artrain", lambda c: _resume_corrupt(c), 2,
         (alt("trainer.safetensors", "corrupt"),)),
    Case("resume-missing-dir", "artrain", lambda c: ["fit", "--resume", c.p("gone")], 2, ("does not exist",)),
    Case("resume-config-list", "artrain", lambda c: ["fit", "--resume", _edit_ckpt_config(c.trained(), c, "[1, 2]")],
         2, (alt("config.json", "checkpoint"),)),
    # eval
    Case("eval-config-list", "artrain", lambda c: ["eval", _edit_ckpt_config(c.ckpt(), c, "[1, 2, 3]")], 2,
         (alt("config.json", "checkpoint"),)),
    Case("eval-config-string", "artrain", lambda c: ["eval", _edit_ckpt_config(c.ckpt(), c, '"pixelcnn"')], 2,
         (alt("config.json", "checkpoint"),)),
    Case("eval-config-deep", "artrain", lambda c: ["eval", _edit_ckpt_config(c.ckpt(), c, deep_json())], 2,
         (alt("config.json", "checkpoint"),)),
    Case("eval-config-without-data-name", "artrain", lambda c: ["eval", _edit_ckpt_config(c.ckpt(), c,
         lambda cfg: {**cfg, "data": {k: v for k, v in cfg["data"].items() if k != "name"}})], 2,
         (alt("name", "config.json", "--data"),)),
    Case("eval-config-data-list", "artrain", lambda c: ["eval", _edit_ckpt_config(c.ckpt(), c,
         lambda cfg: {**cfg, "data": ["digits"]})], 2, (alt("config.json", "data"),)),
    Case("eval-config-model-negative", "artrain", lambda c: ["eval", _edit_ckpt_config(c.ckpt(), c,
         lambda cfg: {**cfg, "model": {**cfg["model"], "layers": -1}}), "--data", "digits"], 2,
         (alt("config.json", "layers"),)),
    Case("eval-config-model-string", "artrain", lambda c: ["eval", _edit_ckpt_config(c.ckpt(), c,
         lambda cfg: {**cfg, "model": {**cfg["model"], "channels": "8"}}), "--data", "digits"], 2,
         (alt("config.json", "channels"),)),
    Case("eval-config-model-list", "artrain", lambda c: ["eval", _edit_ckpt_config(c.ckpt(), c,
         lambda cfg: {**cfg, "model": [1, 2]})], 2, (alt("config.json", "model"),)),
    Case("eval-empty-string", "artrain", lambda c: ["eval", ""], 2, ()),
    Case("resume-a-file", "artrain", lambda c: ["fit", "--resume", c.file("run.txt", "x")], 2, ("run.txt",)),
    Case("fit-config-unreadable", "artrain", lambda c: c.fit(cfg=_unreadable(c.cfg())), 2, ("cfg.json",),
         nonroot=True),
    Case("eval-a-file", "artrain", lambda c: ["eval", c.file("notadir", "x")], 2, ("notadir",)),
    Case("eval-missing", "artrain", lambda c: ["eval", c.p("nothing")], 2, ("does not exist",)),
    Case("eval-data-unknown", "artrain", lambda c: ["eval", c.trained(), "--data", "nonsense"], 2, ("nonsense",)),
    Case("eval-weights-fifo", "artrain", lambda c: ["eval", _fifo_weights(c)], 2,
         (alt("model.safetensors", "not a regular file"),), timeout=10),
]


def _edit_ckpt_config(ckpt: str, ctx: Ctx, change) -> str:
    ctx.edit_json(os.path.join(ckpt, "config.json"), change)
    return ckpt


def _resume_corrupt(c: Ctx) -> list:
    run = c.trained()
    path = Path(run) / "trainer.safetensors"
    path.write_bytes(path.read_bytes()[:200])
    return ["fit", "--resume", run, "--steps", "2"]


def _fifo_weights(c: Ctx) -> str:
    ckpt = c.ckpt()
    os.unlink(os.path.join(ckpt, "model.safetensors"))
    os.mkfifo(os.path.join(ckpt, "model.safetensors"))
    c.fifos.append(os.path.join(ckpt, "model.safetensors"))
    return ckpt


# ------------------------------------------------------------------------------------------------
# arexport: hostile checkpoints and mismatched files

def _ckpt_edit(change, family="wavenet"):
    return lambda c: ["onnx", _edit_ckpt_config(c.ckpt(family), c, change), "--step-graph", "--out", c.p("x.onnx")]


AREXPORT_CASES = [
    Case("export-config-list", "arexport", _ckpt_edit("[1, 2]"), 2, (alt("config.json", "checkpoint"),)),
    Case("export-config-deep", "arexport", _ckpt_edit(deep_json()), 2, (alt("config.json", "checkpoint"),)),
    Case("export-config-model-string", "arexport", _ckpt_edit(
         lambda cfg: {**cfg, "model": {**cfg["model"], "residual_channels": "8"}}), 2,
         (alt("config.json", "residual_channels"),)),
    Case("export-config-model-negative", "arexport", _ckpt_edit(
         lambda cfg: {**cfg, "model": {**cfg["model"], "layers_per_stack": -1}}), 2,
         (alt("config.json", "layers_per_stack"),)),
    Case("export-config-data-missing-kind", "arexport", _ckpt_edit(
         lambda cfg: {**cfg, "data": {k: v for k, v in cfg["data"].items() if k != "kind"}}), 2,
         (alt("config.json", "kind", "data"),)),
    Case("export-config-data-negative-rate", "arexport", _ckpt_edit(
         lambda cfg: {**cfg, "data": {**cfg["data"], "sample_rate": -5}}), 2,
         (alt("config.json", "sample_rate", "sample rate"),)),
    Case("export-weights-fifo", "arexport", lambda c: ["onnx", _fifo_weights(c), "--step-graph", "--out",
         c.p("x.onnx")], 2, (alt("model.safetensors", "not a regular file"),), timeout=10),
    Case("export-checkpoint-is-a-file", "arexport", lambda c: ["onnx", c.file("ckpt.txt", "x"), "--step-graph"], 2,
         ("ckpt.txt",)),
    Case("export-checkpoint-unicode-missing", "arexport", lambda c: ["onnx", c.p("nö ckpt ü 模型"), "--step-graph"], 2,
         (alt("nö ckpt ü 模型", "does not exist"),)),
    Case("export-opset-huge", "arexport", lambda c: ["onnx", c.ckpt("wavenet"), "--step-graph", "--opset",
         str(10**20), "--out", c.p("x.onnx")], 2, (alt("18..20", "--opset"),)),
    Case("verify-text-model-pixelcnn-checkpoint", "arexport", lambda c: ["verify", c.model("text"),
         c.ckpt("pixelcnn", 3)], 2, (alt("checkpoint", "was not exported"),)),
    Case("verify-image-model-wavenet-checkpoint", "arexport", lambda c: ["verify", c.model("image"),
         c.ckpt("wavenet")], 2, (alt("checkpoint", "was not exported"),)),
    Case("verify-model-is-directory", "arexport", lambda c: ["verify", c.dir("m.onnx"), c.ckpt("transformer")], 2,
         (alt("m.onnx", "directory"),)),
    Case("verify-model-fifo", "arexport", lambda c: ["verify", c.fifo("m.onnx"), c.ckpt("transformer")], (1, 2),
         ("m.onnx",), timeout=10),
    Case("verify-model-maxlen-negative", "arexport", lambda c: ["verify", c.meta("neg.onnx", "text",
         ar__max_length="-1"), c.ckpt("transformer")], (1, 2), (alt("neg.onnx", "max_length", "maximum length"),)),
    Case("verify-checkpoint-config-list", "arexport", lambda c: ["verify", c.model("text"),
         _edit_ckpt_config(c.ckpt("transformer"), c, "[]")], 2, (alt("config.json", "checkpoint"),)),
]


# ------------------------------------------------------------------------------------------------
# Parse errors from Typer/Click: one error line, exit 2, the valid choices listed

PARSE_CASES = [
    Case("parse-arrun-provider-tpu", "arrun", lambda c: ["sample", c.model("text"), "--provider", "tpu"], 2,
         ("cpu", "cuda")),
    Case("parse-arrun-bench-provider-tpu", "arrun", lambda c: ["bench", c.model("text"), "--provider", "tpu"], 2,
         ("cpu", "cuda")),
    Case("parse-arrun-n-abc", "arrun", lambda c: ["sample", c.model("text"), "-n", "abc"], 2,
         (alt("-n", "--num-samples"),)),
    Case("parse-arrun-temperature-abc", "arrun", lambda c: ["sample", c.model("text"), "--temperature", "warm"], 2,
         ("--temperature",)),
    Case("parse-arrun-condition-float", "arrun", lambda c: ["sample", c.model("image"), "--condition", "1.5"], 2,
         ("--condition",)),
    Case("parse-arrun-condition-empty", "arrun", lambda c: ["sample", c.model("image"), "--condition", ""], 2,
         ("--condition",)),
    Case("parse-arrun-bench-steps-abc", "arrun", lambda c: ["bench", c.model("text"), "--steps", "many"], 2,
         ("--steps",)),
    Case("parse-arrun-sample-missing-model", "arrun", lambda c: ["sample"], 2, ("model",)),
    Case("parse-arrun-score-missing-data", "arrun", lambda c: ["score", c.model("text", "full")], 2, ("data",)),
    Case("parse-arrun-unknown-option", "arrun", lambda c: ["sample", c.model("text"), "--frobnicate"], 2,
         ("--frobnicate",)),
    Case("parse-arrun-out-without-value", "arrun", lambda c: ["sample", c.model("text"), "--out"], 2, ("--out",)),
    Case("parse-arrun-info-extra-argument", "arrun", lambda c: ["info", c.model("text"), "extra"], 2, ("extra",)),
    Case("parse-arrun-unknown-command", "arrun", lambda c: ["frobnicate"], 2, ("frobnicate",)),
    Case("parse-artrain-model-rnn", "artrain", lambda c: ["fit", "--model", "rnn"], 2,
         ("pixelcnn", "transformer", "wavenet")),
    Case("parse-artrain-steps-abc", "artrain", lambda c: ["fit", "--model", "pixelcnn", "--steps", "abc"], 2,
         ("--steps",)),
    Case("parse-artrain-lr-abc", "artrain", lambda c: ["fit", "--model", "pixelcnn", "--lr", "fast"], 2, ("--lr",)),
    Case("parse-artrain-unknown-option", "artrain", lambda c: ["fit", "--frobnicate"], 2, ("--frobnicate",)),
    Case("parse-artrain-eval-missing-checkpoint", "artrain", lambda c: ["eval"], 2, ("checkpoint",)),
    Case("parse-artrain-eval-split-unknown", "artrain", lambda c: ["eval", c.trained(), "--split", "holdout"], 2,
         ("test", "val")),
    Case("parse-arexport-missing-checkpoint", "arexport", lambda c: ["onnx", "--step-graph"], 2, ("checkpoint",)),
    Case("parse-arexport-opset-abc", "arexport", lambda c: ["onnx", c.p("x"), "--step-graph", "--opset", "new"], 2,
         ("--opset",)),
    Case("parse-arexport-verify-one-argument", "arexport", lambda c: ["verify", c.model("text")], 2,
         ("checkpoint",)),
    Case("parse-arexport-unknown-option", "arexport", lambda c: ["onnx", c.p("x"), "--frobnicate"], 2,
         ("--frobnicate",)),
    Case("parse-arexport-unknown-command", "arexport", lambda c: ["tflite", c.p("x")], 2, ("tflite",)),
]


# ------------------------------------------------------------------------------------------------
# More: odd model paths, options out of range, graphs of the wrong kind

def _identity_onnx() -> bytes:
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8).SerializeToString()


def _unreadable(path: str) -> str:
    os.chmod(path, 0)
    return path


def _symlink_loop(c: Ctx) -> str:
    a = c.tmp / "loop.onnx"
    os.symlink(a, a)
    return str(a)


MISC_CASES = [
    Case("model-empty-string", "arrun", lambda c: ["info", ""], 2, ()),
    Case("model-fifo-info", "arrun", lambda c: ["info", c.fifo("m.onnx")], 2, ("m.onnx",), timeout=10),
    Case("model-fifo-sample", "arrun", lambda c: ["sample", c.fifo("m.onnx"), "--out", c.p("s.wav")], 2, ("m.onnx",),
         timeout=10),
    Case("model-unreadable", "arrun", lambda c: ["info", _unreadable(c.model_copy("text"))], 2, ("text-step.onnx",),
         nonroot=True),
    Case("score-data-unreadable", "arrun", lambda c: ["score", c.model("text", "full"), _unreadable(c.data("text"))],
         2, ("data.txt",), nonroot=True),
    Case("model-dev-null", "arrun", lambda c: ["info", "/dev/null"], 2, ("/dev/null",)),
    Case("model-dev-zero", "arrun", lambda c: ["info", "/dev/zero"], 2, ("/dev/zero",), timeout=15, proc=True,
         note="onnxruntime reading an endless device blocks in C++, where no alarm reaches: run in a process"),
    Case("model-empty-file", "arrun", lambda c: ["info", c.file("empty.onnx", b"")], 2, ("empty.onnx",)),
    Case("model-name-too-long", "arrun", lambda c: ["info", c.p("m" * 5000 + ".onnx")], 2, ()),
    Case("model-symlink-loop", "arrun", lambda c: ["info", _symlink_loop(c)], 2, ("loop.onnx",)),
    Case("model-unicode-spaces-missing", "arrun", lambda c: ["info", c.p("my módel ü 模型.onnx")], 2,
         ("my módel ü 模型.onnx",)),
    Case("model-without-ar-metadata", "arrun", lambda c: ["info", c.file("plain.onnx", _identity_onnx())], 2,
         ("plain.onnx",)),
    Case("model-checkpoint-dir", "arrun", lambda c: ["sample", c.ckpt("wavenet")], 2, (alt("ckpt", "directory"),)),
    Case("model-safetensors-file", "arrun", lambda c: ["info", os.path.join(c.ckpt("wavenet"), "model.safetensors")],
         2, ("model.safetensors",)),
    Case("sample-full-graph", "arrun", lambda c: ["sample", c.model("text", "full")], 2, ("step or chunk graph",)),
    Case("bench-full-graph", "arrun", lambda c: ["bench", c.model("text", "full"), "--steps", "5"], 2, ("step or chunk graph",)),
    Case("sample-threads-negative", "arrun", lambda c: ["sample", c.model("text"), "--threads", "-1"], 2,
         ("--threads",)),
    Case("sample-batch-size-negative", "arrun", lambda c: ["sample", c.model("text"), "--batch-size", "-5"], 2,
         ("--batch-size",)),
    Case("sample-n-zero", "arrun", lambda c: ["sample", c.model("audio"), "-n", "0"], 2, ("-n",)),
    Case("sample-seed-negative", "arrun", lambda c: ["sample", c.model("text"), "--seed", "-1"], 2, ("--seed",)),
    Case("sample-condition-negative", "arrun", lambda c: ["sample", c.model("image"), "--condition", "-1"], 2,
         ("--condition",)),
    Case("sample-condition-huge", "arrun", lambda c: ["sample", c.model("image"), "--condition", str(10**30)], 2,
         ("--condition",)),
    Case("sample-prompt-emoji", "arrun", lambda c: ["sample", c.model("text"), "--prompt", "ab🙂"], 2, ("alphabet",)),
    Case("sample-prompt-for-image", "arrun", lambda c: ["sample", c.model("image"), "--prompt", "x"], 2, ("--prompt",)),
    Case("sample-length-negative", "arrun", lambda c: ["sample", c.model("audio"), "--length", "-1"], 2,
         ("--length",)),
    # prompts of different lengths in one batch (issue 23)
    Case("sample-n-below-prompts", "arrun", lambda c: ["sample", c.model("text"), "-n", "2", "--prompt", "ab",
                                                        "--prompt", "c", "--prompt", "d"], 2, ("-n 2", "3 prompts")),
    Case("sample-prompt-past-context", "arrun",
         lambda c: ["sample", c.meta("ctx6.onnx", "text", ar__max_length="6"), "--prompt", "ab", "--prompt", "abcdefgh"],
         2, ("prompt 2 of 2", "8 characters", "context is 6")),
    Case("sample-prompts-file-missing", "arrun", lambda c: ["sample", c.model("text"), "--prompts", c.p("none.txt")],
         2, ("none.txt",)),
    Case("sample-prompts-file-binary", "arrun",
         lambda c: ["sample", c.model("text"), "--prompts", c.file("p.txt", b"ab\n\xff\xfe")], 2, ("p.txt", "UTF-8")),
    Case("sample-prompts-file-empty", "arrun", lambda c: ["sample", c.model("text"), "--prompts", c.file("p.txt", b"")],
         2, ("no prompt",)),
    Case("sample-prompts-file-folder", "arrun", lambda c: ["sample", c.model("text"), "--prompts", c.p()], 2,
         ("folder",)),
    Case("sample-prompt-and-prompts", "arrun",
         lambda c: ["sample", c.model("text"), "--prompt", "a", "--prompts", c.file("p.txt", "ab\n")], 2,
         ("--prompt", "--prompts")),
    Case("sample-prompts-for-audio", "arrun",
         lambda c: ["sample", c.model("audio"), "--prompts", c.file("p.txt", "ab\nc\n")], 2, ("for text models",)),
    Case("sample-length-zero-text", "arrun", lambda c: ["sample", c.model("text"), "--length", "0"], 2, ("--length",)),
    Case("sample-length-for-image", "arrun", lambda c: ["sample", c.model("image"), "--length", "0"], 2,
         (alt("--length", "fixed size"),)),
    Case("bench-steps-negative", "arrun", lambda c: ["bench", c.model("text"), "--steps", "-5"], 2, ("--steps",)),
    Case("bench-batch-size-zero", "arrun", lambda c: ["bench", c.model("audio"), "--batch-size", "0"], 2,
         ("--batch-size",)),
]


# ------------------------------------------------------------------------------------------------
# Out-of-tree families that break the protocol (broken_families.py): whichever command reaches the broken
# member answers in one line naming the family and what to fix; nothing is written

@functools.lru_cache(maxsize=None)
def _decay_step_bytes() -> bytes:
    """tiny_family.Decay's step graph (unverified): what the broken families would export, were they sound."""
    import torch

    from arexport import DataInfo, export_model
    from broken_families import ALPHABET
    from tiny_family import Decay, DecayConfig

    torch.manual_seed(0)
    out = _SHARED / "decay-step.onnx"
    export_model(Decay(DecayConfig(vocab_size=len(ALPHABET))), DataInfo("my-text.txt", "text", len(ALPHABET),
                 alphabet=ALPHABET), out, verify=False)
    return out.read_bytes()


def _broken(c: Ctx, name: str) -> str:
    """A checkpoint of the broken family class ``name`` (broken_families.py) in the case's folder."""
    import broken_families

    return broken_families.checkpoint(getattr(broken_families, name), c.tmp / "ckpt")


def _broken_onnx(c: Ctx, name: str) -> str:
    """The Decay step graph with ar.family set to the broken family ``name``'s: the file its checkpoint would give."""
    import broken_families

    proto = onnx.load_from_string(_decay_step_bytes())
    for prop in proto.metadata_props:
        if prop.key == "ar.family":
            prop.value = getattr(broken_families, name).family
    return c.file("step.onnx", proto.SerializeToString())


def _entry_points(c: Ctx, points: dict[str, str]) -> None:
    """Install a distribution declaring ``points`` (name -> module:Class) in the group artrain.families, as pip
    would (a .dist-info folder on sys.path), without pip; sys.path is restored after the case."""
    site = Path(tempfile.mkdtemp(prefix="ar-plugin-", dir=_SHARED))
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[artrain.families]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
    c.mp.syspath_prepend(str(site))


PLUGINS = {"broken_missing_module": "no_such_plugin_module:Model", "broken_missing_class": "broken_families:NoSuchClass",
           "broken_not_a_family": "broken_families:checkpoint", "broken_misnamed": "broken_families:StepRaises"}
FIX_FAMILY = alt("fix the family", "docs/families.md")
STEP_FAULTS = {  # broken_families class -> what the line must say
    "StepRaises": ("broken_step_raises", "ValueError", "in step", "the decay factor is not set", FIX_FAMILY),
    "StepWrongShape": ("broken_step_shape", "(2, 12)", "(2, 11)", "width", FIX_FAMILY),
    "StateNotReturned": ("broken_state_missing", "'h'", "state_spec()", "'hidden'", FIX_FAMILY),
    "StateUndeclared": ("broken_state_undeclared", "'count'", "does not declare", FIX_FAMILY),
}


def _plugin_fit(name: str):
    def build(c: Ctx) -> list:
        _entry_points(c, PLUGINS)
        return c.fit(family=name, cfg=c.cfg(raw="{}"))
    return build


def _plugin_eval(name: str):
    def build(c: Ctx) -> list:
        _entry_points(c, PLUGINS)
        ckpt = _broken(c, "StepRaises")
        c.edit_json(os.path.join(ckpt, "config.json"), lambda cfg: {k: v for k, v in {**cfg, "family": name}.items()
                                                                      if k != "family_import"})
        return ["eval", ckpt, "--data", c.data("text")]
    return build


FAMILY_CASES = [
    *(Case(f"family-{cls}-export-{graph}", "arexport", lambda c, cls=cls: ["onnx", _broken(c, cls), f"--{graph}-graph"],
           1, frags, note="the family is probed before it is traced")
      for cls, frags in STEP_FAULTS.items() for graph in ("step",)),
    *(Case(f"family-{cls}-verify", "arexport", lambda c, cls=cls: ["verify", _broken_onnx(c, cls), _broken(c, cls)],
           1, frags) for cls, frags in STEP_FAULTS.items()),
    Case("family-StepRaises-export-no-verify", "arexport", lambda c: ["onnx", _broken(c, "StepRaises"), "--step-graph",
         "--no-verify"], 1, STEP_FAULTS["StepRaises"]),
    Case("family-ForwardRaises-export-full", "arexport", lambda c: ["onnx", _broken(c, "ForwardRaises"),
         "--full-graph"], 1, ("broken_forward_raises", "RuntimeError", "sequence_logits", "not compiled", FIX_FAMILY)),
    Case("family-ForwardRaises-export-step", "arexport", lambda c: ["onnx", _broken(c, "ForwardRaises"),
         "--step-graph"], 1, ("broken_forward_raises", "RuntimeError", "sequence_logits", FIX_FAMILY),
         note="the step is sound: verification's forward reaches the fault"),
    Case("family-ForwardRaises-eval", "artrain", lambda c: ["eval", _broken(c, "ForwardRaises"), "--data",
         c.data("text")], 1, ("broken_forward_raises", "RuntimeError", "sequence_logits", FIX_FAMILY)),
    Case("family-ForwardRaises-fit", "artrain", lambda c: c.fit(family="broken_families:ForwardRaises",
         cfg=c.cfg(raw="{}")), 1, ("broken_forward_raises", "RuntimeError", "not compiled", FIX_FAMILY),
         forbid=NO_CHECKPOINT_CLAIM, log_ok=True),
    Case("family-ForwardWrongShape-fit", "artrain", lambda c: c.fit(family="broken_families:ForwardWrongShape",
         cfg=c.cfg(raw="{}")), 1, ("broken_forward_shape", "sequence_logits", ", 16)", ", 17)", FIX_FAMILY),
         forbid=NO_CHECKPOINT_CLAIM, log_ok=True),
    Case("family-ForwardWrongShape-eval", "artrain", lambda c: ["eval", _broken(c, "ForwardWrongShape"), "--data",
         c.data("text")], 1, ("broken_forward_shape", "sequence_logits", ", 10)", ", 11)", FIX_FAMILY)),
    Case("family-import-path-missing-class", "artrain", lambda c: c.fit(family="broken_families:NoSuchClass",
         cfg=c.cfg(raw="{}")), 2, ("broken_families:NoSuchClass", "ARModel")),
    Case("family-import-path-missing-module", "artrain", lambda c: c.fit(family="no_such_plugin_module:Model",
         cfg=c.cfg(raw="{}")), 2, ("no_such_plugin_module", "install")),
    Case("family-entry-point-module-missing-fit", "artrain", _plugin_fit("broken_missing_module"), 2,
         ("broken_missing_module", "no_such_plugin_module", "ModuleNotFoundError", "reinstall")),
    Case("family-entry-point-class-missing-fit", "artrain", _plugin_fit("broken_missing_class"), 2,
         ("broken_missing_class", "NoSuchClass", "reinstall")),
    Case("family-entry-point-not-a-class-fit", "artrain", _plugin_fit("broken_not_a_family"), 2,
         ("broken_not_a_family", "not an ARModel subclass", "pyproject.toml")),
    Case("family-entry-point-misnamed-fit", "artrain", _plugin_fit("broken_misnamed"), 2,
         ("broken_misnamed", "broken_step_raises", "name the entry point")),
    Case("family-entry-point-module-missing-eval", "artrain", _plugin_eval("broken_missing_module"), 2,
         ("broken_missing_module", "no_such_plugin_module", "reinstall")),
    Case("family-entry-point-module-missing-export", "arexport", lambda c: ["onnx", _plugin_eval(
         "broken_missing_module")(c)[1], "--step-graph"], 2, ("broken_missing_module", "no_such_plugin_module",
         "reinstall")),
]


# ------------------------------------------------------------------------------------------------
# arexport web and ort: graphs they cannot take, outputs that exist or cannot be written, other versions

def _ort_web_stand_ins(c: Ctx) -> None:
    """onnxruntime-web's three files as stand-ins (the checks before writing never read them), so a case does
    not depend on `npm ci` having run."""
    from arexport import webpage

    dist = Path(c.dir("ort-dist", {name: f"stand-in for {name}" for name in webpage.ORT_FILES}))
    c.mp.setattr(webpage, "ORT_WEB_DIST", dist)


def _page(c: Ctx) -> str:
    """A folder `arexport web` wrote before (its three marker files): --force may replace it."""
    return c.dir("page", {"index.html": "<p>old</p>", "page.mjs": "old", "model.onnx": "old"})


def _web(id, args, code, frags, **kw):
    return Case(f"web-{id}", "arexport", lambda c: ["web", *args(c)], code, frags, forbid=NOT_A_BUG,
                patch=_ort_web_stand_ins, **kw)


def _ort(id, args, code, frags, **kw):
    return Case(f"ort-convert-{id}", "arexport", lambda c: ["ort", *args(c)], code, frags, forbid=NOT_A_BUG, **kw)


def _locked(c: Ctx) -> str:
    """A folder its owner may not write (root may: such cases run as another user only)."""
    d = c.dir("locked")
    os.chmod(d, 0o500)
    c.cleanups.append(lambda: os.chmod(d, 0o700))
    return d


V5 = ("format version 5", "re-export")
WEB_OUT_CASES = [
    _web("full-graph", lambda c: [_after(c.file("m/step.onnx", _model_bytes("text", "step")))(
         c.file("m/full.onnx", _model_bytes("text", "full"))), "--out", c.p("site")], 2,
         ("full graph", "step or chunk graph", os.path.join("m", "step.onnx"))),
    _web("full-graph-alone", lambda c: [c.model_copy("text", "full", "model.onnx"), "--out", c.p("site")], 2,
         ("full graph", "arexport onnx", "--graph step")),
    _web("other-format-version", lambda c: [c.meta("v5.onnx", "text", ar__format_version="5"), "--out", c.p("site")],
         2, V5),
    _web("missing-model", lambda c: [c.p("gone.onnx"), "--out", c.p("site")], 2, ("gone.onnx",)),
    _web("model-is-a-folder", lambda c: [c.dir("m.onnx"), "--out", c.p("site")], 2, ("m.onnx",)),
    _web("checkpoint-not-graph", lambda c: [c.ckpt("transformer"), "--out", c.p("site")], 2, ("ckpt",)),
    _web("out-exists-without-force", lambda c: [c.model("text"), "--out", _page(c)], 2, ("exists", "--force")),
    _web("out-is-a-file", lambda c: [c.model("text"), "--out", c.file("site", "the user's file")], 2,
         ("exists", "--force")),
    _web("out-is-a-file-force", lambda c: [c.model("text"), "--out", c.file("site", "the user's file"), "--force"], 2,
         ("not a folder",)),
    _web("out-user-folder-force", lambda c: [c.model("text"), "--out", c.dir("mine", {"notes.txt": "mine"}),
         "--force"], 2, ("did not write", "another --out")),
    _web("out-parent-missing", lambda c: [c.model("text"), "--out", c.p("no", "site")], 2, ("does not exist",)),
    _web("out-readonly-fs", lambda c: [c.model("text"), "--out", os.path.join(c.ro_dir(), "site")], (1, 2),
         (alt("read-only", "cannot write"),), root=True),
    _web("out-readonly-fs-force-over-page", lambda c: [c.model("image"), "--out", _ro_page(c), "--force"], (1, 2),
         (alt("read-only", "cannot write"),), root=True),
    _web("out-locked-folder", lambda c: [c.model("text"), "--out", os.path.join(_locked(c), "site")], (1, 2),
         (alt("permission", "cannot write"),), nonroot=True),
    _web("out-under-proc", lambda c: [c.model("text"), "--out", "/proc/ar-hostile-site"], (1, 2), ("/proc",)),
]


def _ro_page(c: Ctx) -> str:
    """An old page folder on a read-only filesystem: --force cannot set it aside."""
    ro = c.ro_dir()
    subprocess.run(["mount", "-o", "remount,rw", ro], check=True, capture_output=True)
    for name in ("index.html", "page.mjs", "model.onnx"):
        Path(ro, "page").mkdir(exist_ok=True)
        Path(ro, "page", name).write_text("old")
    subprocess.run(["mount", "-o", "remount,ro", ro], check=True, capture_output=True)
    return os.path.join(ro, "page")


ORT_OUT_CASES = [
    _ort("other-format-version", lambda c: [c.meta("v5.onnx", "text", ar__format_version="5"), "--out",
         c.p("m.ort")], 2, V5),
    _ort("missing-model", lambda c: [c.p("gone.onnx"), "--out", c.p("m.ort")], 2, ("gone.onnx",)),
    _ort("not-onnx-suffix", lambda c: [c.file("m.txt", _model_bytes("text", "step")), "--out", c.p("m.ort")], 2,
         (".onnx",)),
    _ort("already-ort", lambda c: [c.file("m.ort", b"\x00" * 64)], 2, (".onnx",)),
    _ort("out-exists-without-force", lambda c: [c.model("text"), "--out", c.file("m.ort", "the user's m.ort")], 2,
         ("m.ort", "--force")),
    _ort("config-exists-without-force", lambda c: [c.model("text"), "--out", _after(c.file(
         "m.required_operators.config", "mine"))(c.p("m.ort"))], 2, ("m.required_operators.config", "--force")),
    _ort("out-is-a-folder", lambda c: [c.model("text"), "--out", c.dir("m.ort")], 2, ("directory",)),
    _ort("out-not-ort-suffix", lambda c: [c.model("text"), "--out", c.p("m.onnx")], 2, (".ort",)),
    _ort("out-parent-missing", lambda c: [c.model("text"), "--out", c.p("no", "m.ort")], 2, ("does not exist",)),
    _ort("out-readonly-fs", lambda c: [c.model("text"), "--out", os.path.join(c.ro_dir(), "m.ort")], (1, 2),
         (alt("read-only", "cannot write"),), root=True),
    _ort("out-locked-folder", lambda c: [c.model("text"), "--out", os.path.join(_locked(c), "m.ort")], (1, 2),
         (alt("permission", "cannot write"),), nonroot=True),
    _ort("default-out-beside-readonly-model", lambda c: [_ro_model(c)], (1, 2), (alt("read-only", "cannot write"),),
         root=True),
]


def _ro_model(c: Ctx) -> str:
    """A model on a read-only filesystem: the default output beside it cannot be written."""
    ro = c.ro_dir()
    subprocess.run(["mount", "-o", "remount,rw", ro], check=True, capture_output=True)
    Path(ro, "m.onnx").write_bytes(_model_bytes("text", "step"))
    subprocess.run(["mount", "-o", "remount,ro", ro], check=True, capture_output=True)
    return os.path.join(ro, "m.onnx")


ALL_CASES = (META_CASES + ORT_CASES + BOMB_CASES + OUT_CASES + SAMPLING_CASES + SCORE_CASES + ARTRAIN_CASES
             + AREXPORT_CASES + PARSE_CASES + MISC_CASES + FAMILY_CASES + WEB_OUT_CASES + ORT_OUT_CASES)
_ids = [c.id for c in ALL_CASES]
assert len(_ids) == len(set(_ids)), sorted({i for i in _ids if _ids.count(i) > 1})
