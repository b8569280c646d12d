"""How data becomes tokens and back, shared by artrain (training data) and arrun (scoring, outputs):
mu-law, 8-bit grayscale PNG (zlib + struct), PCM and mu-law WAV (parsed here), .npy images and UTF-8 text
through an alphabet. numpy and the standard library only; bad input raises UsageError naming the file."""
from __future__ import annotations

import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UsageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_INPUT_BYTES = 1 << 30   # one input file (text, PNG, WAV) read at once
MAX_PIXELS = 1 << 26        # one decoded PNG


def read_bytes(path: Path, what: str = "file") -> bytes:
    """A regular file of at most MAX_INPUT_BYTES, read whole; UsageError otherwise (a FIFO would block)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist; give a {what}")
    if not path.is_file():
        raise UsageError(f"{path} is not a regular file; give a {what}")
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES:
        raise UsageError(f"{path} has {size / 2**30:.1f} GiB, more than the {MAX_INPUT_BYTES >> 30} GiB read at "
                         "once; split it into smaller files")
    return path.read_bytes()


# ---------------------------------------------------------------- mu-law

def mulaw_encode(x: np.ndarray, levels: int = 256) -> np.ndarray:
    """Float samples in [-1, 1] (clipped) -> int64 codes in [0, levels); 0.0 -> levels // 2."""
    mu = levels - 1
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    return np.floor((y + 1.0) / 2.0 * mu + 0.5).astype(np.int64)


def mulaw_decode(codes: np.ndarray, levels: int = 256) -> np.ndarray:
    """Int codes in [0, levels) -> float32 samples in [-1, 1]."""
    mu = levels - 1
    y = 2.0 * np.asarray(codes, dtype=np.float64) / mu - 1.0
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


def to_pcm16(x: np.ndarray) -> bytes:
    """Float samples in [-1, 1] -> little-endian 16-bit PCM bytes."""
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


# ---------------------------------------------------------------- audio tokens
# An audio model of 256 levels codes 8-bit mu-law; one of PCM16_LEVELS codes 16-bit linear PCM, token =
# sample + 32768 (a 16-bit WAV sample s reads as s / 32768, so the round trip is exact).

PCM16_LEVELS = 1 << 16


def audio_bits(levels: int) -> int:
    """The bit depth an audio model of ``levels`` levels codes: 16 (linear PCM) or 8 (mu-law)."""
    return 16 if levels == PCM16_LEVELS else 8


def audio_encode(x: np.ndarray, levels: int) -> np.ndarray:
    """Float samples in [-1, 1] -> int64 tokens: mu-law codes, or 16-bit samples + 32768 (clipped)."""
    if levels != PCM16_LEVELS:
        return mulaw_encode(x, levels)
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int64) + 32768


def audio_decode(tokens: np.ndarray, levels: int) -> np.ndarray:
    """Tokens -> float32 samples in [-1, 1] (inverse of ``audio_encode`` up to its quantisation)."""
    if levels != PCM16_LEVELS:
        return mulaw_decode(tokens, levels)
    return ((np.asarray(tokens, dtype=np.float64) - 32768.0) / 32768.0).astype(np.float32)


def audio_pcm16(tokens: np.ndarray, levels: int) -> bytes:
    """Tokens -> the little-endian 16-bit PCM bytes a WAV of them holds (16-bit tokens exactly)."""
    if levels != PCM16_LEVELS:
        return to_pcm16(mulaw_decode(tokens, levels))
    return (np.asarray(tokens) - 32768).astype("<i2").tobytes()


# ---------------------------------------------------------------- PNG

def png_encode(gray: np.ndarray) -> bytes:
    """(H, W) uint8 -> an 8-bit grayscale PNG file's bytes (filter 0 on every row)."""
    h, w = gray.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), gray.astype(np.uint8)], axis=1).tobytes()
    return (PNG_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b""))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_decode(data: bytes, source: str) -> np.ndarray:
    """An 8-bit grayscale, non-interlaced PNG -> (H, W) uint8; anything else -> UsageError."""
    if not data.startswith(PNG_SIGNATURE):
        raise UsageError(f"{source} is not a PNG file; give 8-bit grayscale PNGs or a .npy of levels")
    pos, header, idat = len(PNG_SIGNATURE), None, []
    try:
        while pos < len(data):
            length, kind = struct.unpack(">I4s", data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + length]
            if len(body) != length:
                raise ValueError("truncated chunk")
            if kind == b"IHDR":
                header = struct.unpack(">IIBBBBB", body)
            elif kind == b"IDAT":
                idat.append(body)
            elif kind == b"IEND":
                break
            pos += 12 + length
        if header is None:
            raise ValueError("no IHDR chunk")
        w, h, depth, color, _, _, interlace = header
        if (depth, color, interlace) != (8, 0, 0):
            raise UsageError(f"{source} is not an 8-bit grayscale non-interlaced PNG (bit depth {depth}, "
                             f"color type {color}); convert it, e.g. `convert IN -depth 8 -colorspace gray OUT`")
        if w * h > MAX_PIXELS:
            raise UsageError(f"{source} declares {w}x{h} pixels, more than the {MAX_PIXELS:,} read at once; "
                             "give smaller images")
        inflater = zlib.decompressobj()
        raw = np.frombuffer(inflater.decompress(b"".join(idat), h * (w + 1) + 1), np.uint8)  # never more
        if raw.size != h * (w + 1):
            raise ValueError("image data has the wrong size")
    except (struct.error, zlib.error, ValueError) as e:
        raise UsageError(f"{source} is a corrupt PNG ({e}); re-save it") from None
    return _unfilter(raw.reshape(h, w + 1))


def _unfilter(rows: np.ndarray) -> np.ndarray:
    """(H, 1 + W) filter byte + filtered bytes -> (H, W) uint8 (one byte per pixel)."""
    h, w = rows.shape[0], rows.shape[1] - 1
    out = np.zeros((h, w), np.int64)
    prev = np.zeros(w, np.int64)
    for i in range(h):
        kind, line = rows[i, 0], rows[i, 1:].astype(np.int64)
        if kind == 0:
            cur = line
        elif kind == 1:  # Sub: cumulative sum modulo 256
            cur = np.cumsum(line) & 255
        elif kind == 2:  # Up
            cur = (line + prev) & 255
        elif kind in (3, 4):  # Average, Paeth: sequential along the row
            cur = np.zeros(w, np.int64)
            for j in range(w):
                left = cur[j - 1] if j else 0
                upper_left = prev[j - 1] if j else 0
                pred = (left + prev[j]) // 2 if kind == 3 else _paeth(left, prev[j], upper_left)
                cur[j] = (line[j] + pred) & 255
        else:
            raise UsageError(f"PNG row {i} has unknown filter type {kind}; re-save the image")
        out[i] = prev = cur
    return out.astype(np.uint8)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


# ---------------------------------------------------------------- WAV
# arrun parses RIFF/WAVE itself (the stdlib ``wave`` reads neither mu-law nor WAVE_FORMAT_EXTENSIBLE on 3.11).
# Linear PCM (format tag 1) of 8 (unsigned), 16, 24 or 32 bits, and G.711 mu-law (tag 7, 8 bits, as
# `sox IN -e mu-law OUT.wav` writes it), each also inside WAVE_FORMAT_EXTENSIBLE (tag 0xFFFE, the subformat's
# first two bytes). Anything else is refused naming the file.

WAV_PCM, WAV_MULAW, WAV_EXTENSIBLE = 1, 7, 0xFFFE
WAV_TAG_NAMES = {3: "32-bit float", 6: "A-law", 0x11: "IMA ADPCM", 0x55: "MP3"}


@dataclass(frozen=True)
class WavLayout:
    """Where a WAV's samples are: ``raw[start:end]`` holds whole frames of ``channels`` samples of ``bits``
    each, coded as ``coding`` ('pcm': linear, 8-bit unsigned or signed little-endian; 'mulaw': G.711 bytes);
    ``declared`` is the data size the header states (more than ``end - start`` when the file is cut short)."""
    coding: str
    bits: int
    channels: int
    rate: int
    start: int
    end: int
    declared: int

    @property
    def frames(self) -> int:
        return (self.end - self.start) // (self.bits // 8 * self.channels)


def parse_wav(raw: bytes, source: str) -> WavLayout:
    """A RIFF/WAVE file's bytes -> the layout of its first data chunk (after a fmt chunk); UsageError naming
    ``source`` for anything that is not a mono or multi-channel PCM or mu-law WAV arrun reads."""
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise UsageError(f"{source} is not a readable WAV file (no RIFF/WAVE header); give a PCM or mu-law WAV, "
                         "or convert it, e.g. `sox IN -b 16 OUT.wav`")
    pos, fmt = 12, None
    while pos + 8 <= len(raw):
        kind, size = struct.unpack_from("<4sI", raw, pos)
        body = pos + 8
        if kind == b"fmt ":
            fmt = raw[body:body + size]
        elif kind == b"data":
            coding, channels, rate, bits = _wav_format(fmt, source)
            block = bits // 8 * channels
            end = body + (min(body + size, len(raw)) - body) // block * block  # whole frames
            return WavLayout(coding, bits, channels, rate, body, end, size)
        pos = body + size + (size & 1)  # chunks are padded to even sizes
    raise UsageError(f"{source} is not a readable WAV file (no {'data' if fmt else 'fmt'} chunk); re-save it as a "
                     "16-bit PCM WAV")


def _wav_format(fmt: bytes | None, source: str) -> tuple[str, int, int, int]:
    """A fmt chunk -> (coding, channels, rate, bits); UsageError for what arrun does not read."""
    if fmt is None or len(fmt) < 16:
        raise UsageError(f"{source} is not a readable WAV file (no complete fmt chunk before its data); re-save it "
                         "as a 16-bit PCM WAV")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == WAV_EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # the subformat GUID's first two bytes
    if tag not in (WAV_PCM, WAV_MULAW):
        name = WAV_TAG_NAMES.get(tag, f"format tag {tag}")
        raise UsageError(f"{source} is {name} audio; arrun reads PCM and mu-law WAVs: convert it, e.g. "
                         "`sox IN -b 16 OUT.wav`")
    if (bits not in (8, 16, 24, 32) or tag == WAV_MULAW and bits != 8) or channels < 1 or rate < 1:
        raise UsageError(f"{source} has an unsupported format ({bits}-bit {'mu-law' if tag == WAV_MULAW else 'PCM'}, "
                         f"{channels} channels, sample rate {rate} Hz); re-save it as a 16-bit PCM WAV")
    return ("mulaw" if tag == WAV_MULAW else "pcm"), channels, rate, bits


def g711_mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 mu-law bytes (WAV format tag 7) -> int64 samples on the 16-bit scale, -32124..32124 (ITU-T
    G.711: the byte inverted; sign, 3-bit exponent e, 4-bit mantissa m; magnitude ((m << 3) + 132) << e - 132).
    Bytes 0x7F and 0xFF both decode to 0."""
    u = ~np.asarray(codes, dtype=np.int64) & 0xFF
    magnitude = (((u & 0x0F) << 3) + 0x84 << ((u >> 4) & 7)) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude)


def g711_levels(codes: np.ndarray) -> np.ndarray:
    """G.711 mu-law bytes <-> levels 0..255 in the order of their values (its own inverse): bytes 0..127
    (negative, rising to -0) stay, bytes 255..128 (+0 rising to the largest) become 128..255. A 256-level
    mu-law model codes a mu-law WAV's bytes as these levels: they are its mu-law codes, each within one level
    of ``mulaw_encode`` of the byte's value, and the map is one to one, so a file comes back byte for byte."""
    codes = np.asarray(codes, dtype=np.int64)
    return np.where(codes < 128, codes, 383 - codes)


def wav_samples(raw: bytes, layout: WavLayout) -> np.ndarray:
    """The (frames, channels) float64 samples in [-1, 1] of ``raw`` laid out as ``layout``: 8-bit PCM as
    (b - 128) / 128, signed PCM as s / 2^(bits - 1), mu-law as its G.711 value / 32768."""
    data = np.frombuffer(raw, np.uint8, layout.end - layout.start, layout.start)
    if layout.coding == "mulaw":
        x = g711_mulaw_decode(data) / 32768.0
    elif layout.bits == 8:  # 8-bit PCM is unsigned
        x = (data - 128.0) / 128.0
    elif layout.bits == 24:
        b = data.reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16) << 8 >> 8) / 2.0 ** 23  # sign-extend 24 bits
    else:
        x = np.frombuffer(data.tobytes(), f"<i{layout.bits // 8}") / 2.0 ** (layout.bits - 1)
    return x.reshape(-1, layout.channels)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A PCM (8/16/24/32-bit) or mu-law WAV of any channels -> ((T,) float64 mono in [-1, 1], sample rate)."""
    raw = read_bytes(path, "WAV file")
    return _mono(raw, parse_wav(raw, str(path)), path)


def _mono(raw: bytes, layout: WavLayout, path: Path) -> tuple[np.ndarray, int]:
    """The WAV ``raw`` laid out as ``layout`` -> ((T,) float64 mono, rate); UsageError if cut short or empty."""
    block = layout.bits // 8 * layout.channels
    if layout.declared > layout.end - layout.start:
        raise UsageError(f"{path} is truncated: its header declares {layout.declared // block:,} frames and it holds "
                         f"{layout.frames:,}; re-save it")
    if not layout.frames:
        raise UsageError(f"{path} holds no audio; give a WAV file with some samples")
    return wav_samples(raw, layout).mean(axis=1), layout.rate


def read_wav_tokens(path: Path, levels: int, rate: int) -> np.ndarray:
    """A WAV -> the (T,) int64 tokens of an audio model of ``levels`` levels at ``rate`` Hz. A mono mu-law
    WAV at ``rate`` for a 256-level model: its bytes as levels (``g711_levels``), exactly what ``arrun
    compress`` codes; anything else: decoded (``read_wav``), resampled to ``rate`` and encoded
    (``audio_encode``); a 16-bit WAV written by ``arrun sample`` gives back the codes it was written from."""
    raw = read_bytes(path, "WAV file")
    layout = parse_wav(raw, str(path))
    if (layout.coding, layout.channels, layout.rate, levels) == ("mulaw", 1, rate, 256) \
            and layout.declared == layout.end - layout.start and layout.frames:
        return g711_levels(np.frombuffer(raw, np.uint8, layout.frames, layout.start))
    x, source_rate = _mono(raw, layout, path)
    return audio_encode(resample_poly(x, source_rate, rate, str(path)), levels)


MAX_SAMPLES = 1 << 28  # samples of one clip after resampling


def resampled_length(length: int, rate: int, target: int, source: str) -> int:
    """Samples a clip of ``length`` at ``rate`` Hz has at ``target`` Hz; UsageError beyond MAX_SAMPLES."""
    n = max(1, round(length * target / rate))
    if n > MAX_SAMPLES:
        raise UsageError(f"{source} becomes {n:,} samples at {target} Hz, more than the {MAX_SAMPLES:,} read at "
                         "once; give shorter clips (or a file with its real sample rate)")
    return n


def resample_poly(x: np.ndarray, rate: int, target: int, source: str = "the audio") -> np.ndarray:
    """(T,) float samples at ``rate`` Hz -> (ceil(T * up / down),) float64 at ``target`` Hz, up/down =
    target/rate in lowest terms: scipy.signal.resample_poly(x, up, down) with its defaults (Kaiser window,
    beta 5, 20 * max(up, down) + 1 taps; zeros outside the clip) to 1e-9, in numpy, never clipped. Computed
    polyphase in blocks of ~48 MB. A rate or target below 1 Hz, or a result too long, raises UsageError."""
    if rate < 1 or target < 1:
        raise UsageError(f"cannot resample {source} from {rate} Hz to {target} Hz; sample rates must be >= 1 Hz")
    x = np.asarray(x, dtype=np.float64)
    g = int(np.gcd(rate, target))
    up, down = target // g, rate // g
    if up == down == 1:
        return x.copy()
    resampled_length(len(x), rate, target, source)
    half_len = 10 * max(up, down)
    m = np.arange(2 * half_len + 1) - half_len                 # (L,) tap offsets from the centre
    h = np.sinc(m / max(up, down)) * np.kaiser(len(m), 5.0)    # firwin: windowed sinc, cutoff 1 / max_rate
    h *= up / h.sum()                                          # DC gain 1, times up for the zero-stuffing
    taps = -(-len(h) // up)
    phases = np.zeros(up * taps)
    phases[:len(h)] = h
    phases = phases.reshape(taps, up).T                        # (up, taps): phases[r, t] = h[r + up * t]
    # Output j is the stuffed signal filtered at p = half_len + j * down (filter centred on input j * down / up);
    # only input samples base - t with base = p // up meet nonzero taps, of phase r = p % up.
    n_out = -(-len(x) * up // down)
    p_last = half_len + (n_out - 1) * down
    xpad = np.concatenate([np.zeros(taps - 1), x, np.zeros(max(0, p_last // up - len(x) + 1))])
    y = np.empty(n_out)
    block = max(1, 2**21 // taps)                              # three (block, taps) arrays of 16 MB
    for start in range(0, n_out, block):
        p = half_len + np.arange(start, min(start + block, n_out)) * down   # (B,)
        idx = (p // up + taps - 1)[:, None] - np.arange(taps)               # (B, taps) into xpad
        y[start:start + len(p)] = np.einsum("bt,bt->b", phases[p % up], xpad[idx])
    return y


# ---------------------------------------------------------------- text

def read_text(path: Path) -> str:
    """A UTF-8 file (a BOM is dropped), decoded strictly; empty or not UTF-8 -> UsageError."""
    try:
        text = read_bytes(path, "UTF-8 text file").decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not valid UTF-8 (byte {e.start}); convert it to UTF-8, "
                         "e.g. iconv -f latin1 -t utf-8") from None
    if not text:
        raise UsageError(f"{path} is empty; give a text file with some content")
    return text


def encode_text(text: str, alphabet: str, source: str, unknown: str = "error") -> np.ndarray:
    """Text -> (len,) int64 indices into ``alphabet``. A character outside it raises UsageError (``unknown``
    'error'), is dropped ('skip') or becomes a space, or the alphabet's first character ('replace')."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)       # (T,) code points
    alpha = np.frombuffer(alphabet.encode("utf-32-le"), dtype=np.uint32)   # (V,)
    order = np.argsort(alpha)
    pos = np.minimum(np.searchsorted(alpha[order], codes), len(alpha) - 1)  # (T,)
    found = alpha[order][pos] == codes
    tokens = order[pos].astype(np.int64)
    if found.all():
        return tokens
    if unknown == "skip":
        return tokens[found]
    if unknown == "replace":
        return np.where(found, tokens, alphabet.find(" ") if " " in alphabet else 0)
    shown = "".join(chr(c) for c in np.unique(codes[~found])[:10])
    raise UsageError(f"{source} has characters outside the model's alphabet ({shown!r}); remove them, or pass "
                     "--unknown skip or --unknown replace (`arrun info MODEL` lists the alphabet)")


# ---------------------------------------------------------------- .npy images

def read_npy_images(path: Path) -> np.ndarray:
    """A .npy of images (N, H, W), N >= 1, of non-negative integer levels; never unpickles, and reads the
    header first (memory-mapped), so a header declaring more than the file holds allocates nothing."""
    if not Path(path).exists():
        raise UsageError(f"{path} does not exist; give a .npy of images")
    if not Path(path).is_file():
        raise UsageError(f"{path} is not a regular file; give a .npy of images")
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):  # a hostile header overflows numpy's sums
            warnings.simplefilter("ignore")
            images = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, EOFError, OSError, MemoryError, OverflowError):  # numpy's own message suggests allow_pickle, which we never want
        raise UsageError(f"{path} is not a readable .npy array (or holds less than its header declares); save "
                         "the images with numpy.save(path, array) from an integer array (N, H, W)") from None
    if images.ndim != 3 or not np.issubdtype(images.dtype, np.integer) or not images.size:
        raise UsageError(f"{path} holds a {images.dtype} array of shape {images.shape}; "
                         "images must be a non-empty integer array (N, H, W)")
    if images.size > MAX_INPUT_BYTES // 8:
        raise UsageError(f"{path} holds {images.size:,} levels, more than the {MAX_INPUT_BYTES // 8:,} read at "
                         "once; split it into smaller files")
    images = np.array(images)  # (N, H, W) in memory
    if images.min() < 0:
        raise UsageError(f"{path} has negative values; images must hold levels 0, 1, 2, ...")
    return images


def read_npz_images(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """A .npz of ``images`` (N, H, W) integer levels and ``labels`` (N,) class ids >= 0, with optional
    ``class_names`` (C,) strings -> (images, labels, class names; default '0', '1', ...). Never unpickles."""
    read_bytes(path, ".npz of labelled images")  # a regular file of a size read at once
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, MemoryError, zipfile.BadZipFile):
        raise UsageError(f"{path} is not a readable .npz; save it with numpy.savez(path, images=..., labels=..., "
                         "class_names=...)") from None
    if "images" not in arrays or "labels" not in arrays:
        raise UsageError(f"{path} holds {', '.join(arrays) or 'nothing'}; a .npz needs 'images' (N, H, W) and "
                         "'labels' (N,), and may have 'class_names'")
    images, labels = arrays["images"], arrays["labels"]
    if images.ndim != 3 or not np.issubdtype(images.dtype, np.integer) or not images.size or images.min() < 0:
        raise UsageError(f"{path}: 'images' is a {images.dtype} array of shape {images.shape}; it must be a "
                         "non-empty integer array (N, H, W) of levels >= 0")
    if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise UsageError(f"{path}: 'labels' must be {images.shape[0]} class ids >= 0, got a {labels.dtype} array "
                         f"of shape {labels.shape}")
    count = int(labels.max()) + 1
    names = tuple(str(c) for c in arrays.get("class_names", np.arange(count)).tolist())
    if len(names) < count:
        raise UsageError(f"{path}: 'class_names' names {len(names)} classes but the labels go up to {count - 1}")
    return images, labels.astype(np.int64), names
