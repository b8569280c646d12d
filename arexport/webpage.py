"""`arexport web`: a static folder that samples one exported step or chunk graph in the browser.

``write_web_page(model, out)`` writes ``out/`` with exactly these files, and nothing else:

- ``index.html``, ``page.mjs`` and the modules it imports (``page-image.mjs``, ``page-audio.mjs``, the
  JavaScript runtime of the contract ``runtime.mjs`` and its own modules), copied from ``arexport/web/``:
  the page reads the model's metadata itself and shows the controls of its data kind (text, image, audio);
- ``model.onnx``: the model, byte for byte;
- onnxruntime-web's files for wasm on one thread: ``ort.wasm.min.mjs``, ``ort-wasm-simd-threaded.mjs`` and
  ``ort-wasm-simd-threaded.wasm``, from ``arexport/web/node_modules`` (``npm ci --prefix arexport/web``).

The folder works offline from any static file server that serves ``.mjs`` as JavaScript and ``.wasm`` as
``application/wasm`` (Python's ``http.server`` does). It is written atomically: built in a hidden sibling
folder, then renamed onto ``out``; a failure leaves nothing behind and an existing ``out`` as it was.

Raises UsageError (exit 2) for a model the page cannot sample (a full graph, another format version, a data
kind or head the page has no controls for), an existing ``out`` without ``force``, and missing
onnxruntime-web files; ARError (exit 1) when writing fails.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from arrun.contract.errors import ARError, UsageError
from arrun.contract.files import check_model_file
from arrun.contract.schema import ModelInfo

WEB_SOURCES = Path(__file__).parent / "web"
PAGE_ENTRY = ("index.html", "page.mjs")  # from WEB_SOURCES, with every module page.mjs imports from there
# `from './x.mjs'`, `import './x.mjs'` and `import('./x.mjs')`: the modules a module loads beside itself
_RELATIVE_IMPORT = re.compile(r"""(?:\bfrom|\bimport\s*\(?)\s*['"]\./([\w.-]+\.mjs)['"]""")
ORT_WEB_DIST = WEB_SOURCES / "node_modules" / "onnxruntime-web" / "dist"
# onnxruntime-web's wasm build on one thread: the ES module the page imports, the Emscripten loader it
# imports, and the binary that loader fetches (the "threaded" build runs on one thread without
# cross-origin isolation; the jsep, jspi, asyncify and webgl builds are for other backends).
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MODEL_FILE = "model.onnx"
PAGE_KINDS = ("image", "text", "utf8", "audio")  # the data kinds page.mjs has controls for
PAGE_HEADS = ("softmax", "logistic_mixture")  # the heads runtime.mjs samples
SAMPLED_GRAPHS = ("step", "chunk")
_ORDINARY_DIR_MODE = 0o777  # before the umask, as for any new folder


@dataclass(frozen=True)
class WebPage:
    """What ``write_web_page`` wrote: the folder, each file's size in bytes, and the model's metadata."""
    folder: Path
    sizes: dict[str, int]
    info: ModelInfo

    @property
    def size_bytes(self) -> int:
        return sum(self.sizes.values())

    def to_dict(self) -> dict:
        return {"folder": str(self.folder), "files": self.sizes, "size_bytes": self.size_bytes,
                "family": self.info.family, "graph": self.info.graph, "data_kind": self.info.data_kind}


def write_web_page(model: Path, out: Path, *, force: bool = False, ort_dist: Path | None = None) -> WebPage:
    """Write the page folder for ``model`` at ``out`` (see the module docstring); replaces an existing page
    folder only with ``force``. ``ort_dist``: onnxruntime-web's dist folder, ``ORT_WEB_DIST`` by default.
    Raises UsageError before anything is written when an input is wrong."""
    model, out = Path(model), Path(out)
    info = check_web_model(model)
    sources = _source_files(Path(ort_dist or ORT_WEB_DIST))
    _check_out(out, force)
    return WebPage(_write_folder(out, {**sources, MODEL_FILE: model}), _sizes(out), info)


def check_web_model(path: Path) -> ModelInfo:
    """The metadata of ``path`` checked as arrun checks it (format version, keys, the graph's inputs and
    outputs), then that the page can sample it: a step or chunk graph of a data kind and head it knows."""
    check_model_file(path)
    from arrun.session import open_model  # onnxruntime: the same strict read and graph check as arrun's

    info = open_model(path, command="arexport web").info
    if info.graph not in SAMPLED_GRAPHS:
        raise UsageError(f"{path} is a {info.graph} graph (for scoring) and the page samples a step or chunk graph; "
                         f"give {_sampled_sibling(path)}")
    if info.data_kind not in PAGE_KINDS:
        raise UsageError(f"{path} holds {info.data_kind!r} data and the page has controls for "
                         f"{', '.join(PAGE_KINDS)} only; sample it with `arrun sample {path}`")
    if info.head.spec["kind"] not in PAGE_HEADS:
        raise UsageError(f"{path} has a {info.head.spec['kind']!r} output head and the page's runtime samples "
                         f"{' and '.join(PAGE_HEADS)} only; sample it with `arrun sample {path}`")
    return info


def _sampled_sibling(path: Path) -> str:
    """What to give instead of a full graph: the step or chunk graph beside it, or how to export one."""
    for name in ("step.onnx", "chunk.onnx"):
        if (path.parent / name).is_file():
            return str(path.parent / name)
    return "the step graph (`arexport onnx CHECKPOINT_DIR --graph step`)"


def _source_files(ort_dist: Path) -> dict[str, Path]:
    """Every file the folder copies except the model, by its name in the folder; UsageError naming the
    first one missing and how to get it."""
    for name in ORT_FILES:
        if not (ort_dist / name).is_file():
            raise UsageError(f"onnxruntime-web's {name} is not in {ort_dist}; install it with "
                             f"`npm ci --prefix {WEB_SOURCES}`")
    return {name: WEB_SOURCES / name for name in page_files()} | {name: ort_dist / name for name in ORT_FILES}


def page_files() -> list[str]:
    """index.html, page.mjs and every module it imports from beside itself, directly or not (onnxruntime-web's
    own come from its dist folder); UsageError naming one that is missing."""
    names, pending = list(PAGE_ENTRY), list(PAGE_ENTRY)
    while pending:
        source = WEB_SOURCES / pending.pop()
        if not source.is_file():
            raise UsageError(f"the page's {source} is missing; reinstall arexport (its package data is incomplete)")
        if source.suffix == ".mjs":
            for name in _RELATIVE_IMPORT.findall(source.read_text(encoding="utf-8")):
                if name not in names and name not in ORT_FILES:
                    names.append(name)
                    pending.append(name)
    return names


def _check_out(out: Path, force: bool) -> None:
    """``out`` must not exist, or with ``force`` be a page folder written before (never any other folder:
    --force replaces it whole) or an empty one."""
    if not out.exists() and not out.is_symlink():
        if not out.parent.is_dir():
            raise UsageError(f"the folder {out.parent} does not exist; create it or choose another --out")
        return
    if not force:
        raise UsageError(f"{out} exists; pass --force to replace it, or choose another --out")
    if out.is_symlink() or not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder; choose another --out")
    names = {p.name for p in out.iterdir()}
    if names and not {"index.html", "page.mjs", MODEL_FILE} <= names:
        raise UsageError(f"{out} is a folder that `arexport web` did not write, and --force replaces it whole; "
                         "choose another --out")


def _write_folder(out: Path, files: dict[str, Path]) -> Path:
    """Copy ``files`` (name in the folder -> source) into a hidden sibling of ``out``, fsync them, and rename it
    onto ``out`` (an existing ``out`` is set aside first and removed once the new folder is in place)."""
    try:
        building = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".building"))
    except OSError as e:  # a read-only or special filesystem: nothing was written
        raise UsageError(f"cannot write to {out.parent} ({e.strerror or e}); choose another --out") from None
    aside = None
    try:
        os.chmod(building, _ORDINARY_DIR_MODE & ~_umask())
        for name, source in files.items():
            target = building / name
            shutil.copyfile(source, target)
            with open(target, "rb") as f:
                os.fsync(f.fileno())
        if out.exists():
            aside = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, aside / "page")
        os.replace(building, out)
    except BaseException as e:
        if aside is not None and not out.exists():
            os.replace(aside / "page", out)  # the previous folder back where it was
        shutil.rmtree(building, ignore_errors=True)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
        if isinstance(e, OSError):
            raise ARError(f"cannot write {out} ({e.strerror or e}); check the free space and permissions there, "
                          "nothing was written") from None
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return out


def _sizes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir())}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
