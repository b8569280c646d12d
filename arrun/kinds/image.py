"""Images: (H, W) grayscale levels in raster order; samples as a PNG grid plus their levels as .npy; scoring
data as .npy (N, H, W), labelled .npz, PNG or a folder of PNGs; compression of a .npy, one image per chunk."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from ..contract.codecs import png_decode, png_encode, read_bytes, read_npy_images, read_npz_images
from ..contract.errors import UsageError, first_line
from ..contract.files import is_special
from ..contract.schema import ModelInfo
from ..outputs import STDOUT, Sink, check_output, write_files
from .base import DataKind, Framed

MAX_IMAGE_SIDE = 1 << 12  # pixels per image side
TILE = 32                 # small images are scaled up by an integer factor to about this many pixels


class ImageKind(DataKind):
    name, unit, suffixes = "image", "pixel", (".png", ".npy", ".npz")
    expected = ("a .npy (N, H, W) of integer levels, a .npz of labelled images, an 8-bit grayscale PNG or a "
                "folder of PNGs")
    default_out = Path("samples.png")
    kept_bytes_per_element = 8  # the (N, H, W) int64 levels, written at the end
    layout_format = "npy"

    def problems(self, info):
        shape = info.image_shape
        if len(shape) != 2 or not all(0 < d <= MAX_IMAGE_SIDE for d in shape):
            return [f"an image model needs a 2-D image shape of sizes 1..{MAX_IMAGE_SIDE}, not {list(shape)}"]
        return []

    def describe(self, info):
        h, w = info.image_shape
        return f"{h}x{w} grayscale, {info.vocab_size} levels, raster order"

    def fields(self, info):
        return {"image_shape": list(info.image_shape)}

    def length(self, requested, prompt, info):
        size = info.image_shape[0] * info.image_shape[1]
        if requested is not None and requested != size:
            raise UsageError(f"images have a fixed size of {size} pixels; drop --length")
        return size

    def sink(self, out, info, plan, stream):
        return ImageSink(out or self.default_out, info, plan)

    def labels_classes(self, path):
        return path.is_dir() or path.suffix.lower() == ".npz"

    def load(self, path, info, unknown="error"):
        if Path(path).suffix.lower() != ".npz":
            return super().load(path, info, unknown)
        images, labels, names = read_npz_images(path)
        return [(s, names[c]) for s, c in zip(self._levels(path, images, info), labels)]

    def read(self, path, info):
        if path.suffix.lower() == ".npy":
            images = read_npy_images(path)
        else:
            images = png_decode(read_bytes(path, "PNG file"), str(path))[None]
        return self._levels(path, images, info)

    def _levels(self, path, images, info):
        """(N, H, W) images of the model's size and levels -> N sequences of H*W int64 levels."""
        if images.shape[1:] != tuple(info.image_shape):
            raise UsageError(f"{path} has images of {images.shape[1]}x{images.shape[2]}, the model "
                             f"{info.image_shape[0]}x{info.image_shape[1]}; resize them")
        if int(images.max()) >= info.vocab_size:
            raise UsageError(f"{path} has levels up to {int(images.max())} but the model has {info.vocab_size} "
                             f"levels (0..{info.vocab_size - 1}); quantise the images to those levels")
        return list(images.reshape(len(images), -1).astype(np.int64))

    def frame(self, raw, path, info):
        """A .npy of integer images (N, H, W) or (H, W), C or Fortran order, read without unpickling."""
        f = io.BytesIO(raw)
        try:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f".npy version {version[0]}.{version[1]} is not read here")
            shape, fortran_order, dtype = read(f)
        except (ValueError, SyntaxError, EOFError) as e:
            raise UsageError(f"{path} is not a readable .npy file ({first_line(e)}); save the images with "
                             "numpy.save(path, array)") from None
        h, w = info.image_shape
        if dtype.kind not in "iu" or len(shape) not in (2, 3) or tuple(shape[-2:]) != (h, w):
            raise UsageError(f"{path} holds a {dtype} array of shape {shape}; this model compresses integer images "
                             f"(N, {h}, {w}) or ({h}, {w})")
        n, start = math.prod(shape), f.tell()
        end = start + n * dtype.itemsize
        if len(raw) < end:
            raise UsageError(f"{path} is truncated: its header declares {shape} and the file holds less; re-save it")
        array = np.frombuffer(raw[start:end], dtype).reshape(shape, order="F" if fortran_order else "C")
        if n and (array.min() < 0 or array.max() >= info.vocab_size):
            raise UsageError(f"{path} has levels {array.min()}..{array.max()} and the model has {info.vocab_size} "
                             f"(0..{info.vocab_size - 1}); lossless compression needs every level in that range")
        layout = {"format": "npy", "dtype": dtype.str, "shape": list(shape), "fortran_order": bool(fortran_order)}
        return Framed(np.ascontiguousarray(array, np.int64).reshape(-1), raw[:start], raw[end:], layout, h * w)

    def unframe(self, elements, layout, info):
        dtype, shape = np.dtype(layout["dtype"]), layout["shape"]
        if dtype.kind not in "iu" or not isinstance(shape, list) or len(shape) not in (2, 3):
            raise ValueError("not a layout frame writes")  # checked before astype allocates a dtype's itemsize
        array = elements.reshape(shape).astype(dtype)
        return array.tobytes(order="F" if layout["fortran_order"] else "C")


class ImageSink(Sink):
    """Collects (N, H*W) levels; ``commit`` writes the PNG grid and, beside a regular file, the .npy."""

    def __init__(self, out: Path, info: ModelInfo, plan):
        self.png = out
        self.npy = None if out == STDOUT or is_special(out) else out.with_suffix(".npy")
        if self.npy is not None:
            check_output(self.png, (".png",))
            check_output(self.npy)
        self.info, self.plan = info, plan
        self.images = np.zeros((plan.n, *info.image_shape), np.int64)  # (N, H, W)
        self._indices = range(0)

    def begin(self, indices: range) -> None:
        self._indices = indices

    def end(self, tokens: np.ndarray) -> None:
        self.images[self._indices.start:self._indices.stop] = tokens.reshape(-1, *self.info.image_shape)

    def commit(self) -> list[Path]:
        cols = len(self.images) // self.info.num_classes if self.plan.per_class else None
        png = png_encode(image_grid(self.images, self.info.vocab_size, cols))
        files = {self.png: png} if self.npy is None else {self.png: png, self.npy: npy_bytes(self.images)}
        write_files(files)
        return list(files)


def image_grid(images: np.ndarray, levels: int, cols: int | None = None) -> np.ndarray:
    """(N, H, W) levels -> (rows * (h + 1) + 1, cols * (w + 1) + 1) uint8 grid with 1-pixel white lines;
    levels are scaled to 0..255 and small images magnified. cols None: about square."""
    n, h, w = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    scale = max(1, TILE // max(h, w))
    tiles = np.round(images * (255.0 / max(levels - 1, 1))).astype(np.uint8)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)  # (N, h*s, w*s)
    th, tw = h * scale, w * scale
    grid = np.full((rows * (th + 1) + 1, cols * (tw + 1) + 1), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[1 + r * (th + 1):1 + r * (th + 1) + th, 1 + c * (tw + 1):1 + c * (tw + 1) + tw] = tile
    return grid


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()
