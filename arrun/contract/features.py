"""Log-mel features of a waveform: what a locally conditioned model (a WaveNet vocoder) takes.

``FeatureSpec`` travels with the model as JSON; ``log_mel`` computes the features the same way at training
and at run time, with numpy only. The analysis is librosa's ``melspectrogram`` with ``center=True,
pad_mode='constant'``, a periodic Hann window and Slaney's mel scale and area normalisation, so a model
trained on librosa features runs on these (the tests compare the two). Sample t is conditioned on frame
t // hop (``frame_rows``).
"""
from __future__ import annotations

import functools
import json
import math
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .codecs import audio_decode
from .errors import UsageError

BLOCK_BYTES = 64 << 20  # intermediate arrays ``log_mel`` holds at once, whatever the clip length
_TYPES = {"str": (str,), "int": (int,), "float": (int, float)}  # a field's annotation -> the JSON types it takes


@dataclass(frozen=True)
class FeatureSpec:
    """Log-mel analysis of a mono waveform in [-1, 1]: what a locally conditioned model takes.

    Checked when constructed (``from_json`` included): a malformed spec raises ValueError with a short reason.
    The mel scale and the filter normalisation are Slaney's (librosa's defaults: htk=False, norm='slaney')."""
    kind: str = "log-mel"
    sample_rate: int = 16000
    n_fft: int = 512          # even, so a clip of T samples has 1 + T // hop centred frames
    hop: int = 128            # samples per frame; sample t is conditioned on frame t // hop
    win_length: int = 512
    window: str = "hann"      # periodic Hann (scipy get_window('hann', win_length, fftbins=True)), centred in n_fft
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    power: float = 1.0        # magnitude (1) or power (2) spectrum
    log_floor: float = 1e-5   # features = ln(max(mel, log_floor))

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, _TYPES[f.type]):
                raise ValueError(f"feature spec field {f.name!r} is {value!r}, expected {f.type}")
        problems = []
        if self.kind != "log-mel":
            problems.append(f"kind {self.kind!r} is not 'log-mel'")
        if self.window != "hann":
            problems.append(f"window {self.window!r} is not 'hann'")
        sizes = dict(sample_rate=self.sample_rate, n_fft=self.n_fft, hop=self.hop, win_length=self.win_length,
                     n_mels=self.n_mels)
        problems += [f"{name} {value} is not positive" for name, value in sizes.items() if value <= 0]
        if self.n_fft % 2:
            problems.append(f"n_fft {self.n_fft} is odd")
        if self.hop > self.n_fft or self.win_length > self.n_fft:
            problems.append(f"hop {self.hop} and win_length {self.win_length} must not exceed n_fft {self.n_fft}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            problems.append(f"fmin {self.fmin} and fmax {self.fmax} are not 0 <= fmin < fmax <= sample_rate / 2")
        if not (math.isfinite(self.log_floor) and self.log_floor > 0):
            problems.append(f"log_floor {self.log_floor} is not a positive number")
        if self.power not in (1, 2):
            problems.append(f"power {self.power} is not 1 or 2")
        if problems:
            raise ValueError(f"invalid feature spec: {'; '.join(problems)}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FeatureSpec":
        """Strict read of ``to_json``: every field, no other key, each of its type and in range, else ValueError."""
        try:
            values = json.loads(text)
        except ValueError as e:
            raise ValueError(f"feature spec is not JSON ({e})") from None
        if not isinstance(values, dict):
            raise ValueError("feature spec is not a JSON object")
        names = {f.name for f in fields(cls)}
        if missing := names - values.keys():
            raise ValueError(f"feature spec lacks {', '.join(sorted(missing))}")
        if unknown := values.keys() - names:
            raise ValueError(f"feature spec has unknown keys {', '.join(sorted(unknown))}")
        return cls(**values)

    def frames(self, num_samples: int) -> int:
        """Centred frames of a clip of ``num_samples`` samples (0 included)."""
        return 1 + num_samples // self.hop


# Slaney's mel scale (Auditory Toolbox, librosa htk=False): linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3                # Hz per mel below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0  # ln(Hz ratio) per mel above 1 kHz


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    log_part = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log_part, hz / _F_SP)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log_part, _F_SP * mel)


@functools.lru_cache(maxsize=16)
def mel_filterbank(spec: FeatureSpec) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float64, read-only: triangles on Slaney's mel scale, each scaled to unit area
    (2 / its width in Hz); librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm='slaney')."""
    fft_hz = np.fft.rfftfreq(spec.n_fft, 1.0 / spec.sample_rate)                     # (F,)
    mels = np.linspace(_hz_to_mel(np.float64(spec.fmin)), _hz_to_mel(np.float64(spec.fmax)), spec.n_mels + 2)
    edges = _mel_to_hz(mels)                                                         # (M + 2,) Hz
    width = np.diff(edges)                                                           # (M + 1,)
    ramps = edges[:, None] - fft_hz                                                  # (M + 2, F)
    rising = -ramps[:-2] / width[:-1, None]                                          # (M, F)
    falling = ramps[2:] / width[1:, None]                                            # (M, F)
    bank = np.maximum(0, np.minimum(rising, falling))                                # (M, F)
    bank *= (2.0 / (edges[2:] - edges[:-2]))[:, None]                                # (M, F) unit area
    bank.flags.writeable = False
    return bank


def analysis_window(spec: FeatureSpec) -> np.ndarray:
    """(n_fft,) periodic Hann of win_length, centred between zeros as librosa's pad_center does."""
    n = np.arange(spec.win_length)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / spec.win_length)                      # (W,)
    left = (spec.n_fft - spec.win_length) // 2
    return np.pad(hann, (left, spec.n_fft - spec.win_length - left))                # (n_fft,)


def _segment(audio: np.ndarray, start: int, stop: int) -> np.ndarray:
    """audio[start:stop] in float64, zeros where the range runs outside the clip (start may be negative)."""
    out = np.zeros(stop - start)
    lo, hi = max(start, 0), min(stop, len(audio))
    if lo < hi:
        out[lo - start:hi - start] = audio[lo:hi]
    return out


def log_mel(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """(T,) float waveform -> (spec.frames(T), n_mels) float32 log-mel frames. Centred STFT: the signal is
    padded with n_fft // 2 zeros on both sides (librosa center=True, pad_mode='constant'), frame f starts at
    f * hop of the padded signal; periodic Hann window of win_length zero-padded to n_fft (centred);
    |rfft| ** power; mel filterbank; ln(max(., log_floor)). T may be 0 (one frame of ln(log_floor)).
    Computed in float64, returned float32, in blocks of frames so that a long clip never holds more than
    about ``BLOCK_BYTES`` of intermediate arrays. Raises ValueError unless ``audio`` is one-dimensional."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"log_mel takes a mono waveform (T,), got shape {audio.shape}")
    window, bank = analysis_window(spec), mel_filterbank(spec)                       # (n_fft,), (M, F)
    half, n = spec.n_fft // 2, spec.frames(len(audio))
    out = np.empty((n, spec.n_mels), np.float32)                                     # (N, M)
    # per frame: its samples, the windowed frame, its spectrum (complex, then real) and its mel row, float64
    block = max(1, BLOCK_BYTES // (8 * (spec.hop + 3 * spec.n_fft + spec.n_mels)))
    for f0 in range(0, n, block):
        f1 = min(n, f0 + block)
        samples = _segment(audio, f0 * spec.hop - half, (f1 - 1) * spec.hop - half + spec.n_fft)
        frames = sliding_window_view(samples, spec.n_fft)[::spec.hop]                # (B, n_fft)
        spectrum = np.abs(np.fft.rfft(frames * window, axis=-1)) ** spec.power       # (B, F)
        out[f0:f1] = np.log(np.maximum(spectrum @ bank.T, spec.log_floor))           # (B, M)
    return out


def frame_rows(num_samples: int, hop: int, start: int = 0) -> np.ndarray:
    """(num_samples,) int64 index of the frame each sample start..start+num_samples-1 is conditioned on: t // hop."""
    return np.arange(start, start + num_samples, dtype=np.int64) // hop


def mulaw_features(codes: np.ndarray, spec: FeatureSpec, levels: int) -> np.ndarray:
    """Audio tokens (T,) (mu-law codes, or 16-bit samples: ``codecs.audio_decode``) -> (spec.frames(T), n_mels)
    float32: the features of the decoded waveform, what a vocoder is conditioned on at training
    (``artrain.data``) and in ``arrun score`` and ``arrun vocode``."""
    return log_mel(audio_decode(codes, levels), spec)


MAX_FEATURE_BYTES = 1 << 30  # one features file, loaded whole (an hour of 80-band frames at hop 128 is 0.5 GB)


def read_features(path: Path, spec: FeatureSpec) -> np.ndarray:
    """A .npy of frames (F, n_mels), F >= 1, finite floats, e.g. ``log_mel`` of a clip saved with numpy.save
    -> (F, n_mels) float32. Never unpickles; the header is read first (memory-mapped), so a file declaring more
    than MAX_FEATURE_BYTES or more than it holds allocates nothing. UsageError naming the problem otherwise."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} is not a regular file; give a .npy of log-mel frames (frames, {spec.n_mels})")
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):  # a hostile header overflows numpy's sums
            warnings.simplefilter("ignore")
            frames = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, EOFError, OSError, MemoryError, OverflowError):
        raise UsageError(f"{path} is not a readable .npy array (or holds less than its header declares); save the "
                         f"frames with numpy.save(path, array) from a float array (frames, {spec.n_mels})") from None
    if frames.ndim != 2 or not np.issubdtype(frames.dtype, np.floating) or not frames.shape[0]:
        raise UsageError(f"{path} holds a {frames.dtype} array of shape {frames.shape}; give float frames "
                         f"(frames, {spec.n_mels}), at least one")
    if frames.shape[1] != spec.n_mels:
        raise UsageError(f"{path} has {frames.shape[1]} mel bins per frame and the model takes {spec.n_mels}; compute "
                         "the features with the model's analysis (`arrun info MODEL` shows it)")
    if frames.shape[0] * spec.n_mels * 4 > MAX_FEATURE_BYTES:
        raise UsageError(f"{path} holds {frames.shape[0]:,} frames, {frames.shape[0] * spec.n_mels * 4 / 2**30:.1f} GiB, "
                         f"more than the {MAX_FEATURE_BYTES >> 30} GiB one run loads; split it into shorter files")
    frames = np.asarray(frames, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(frames).all(axis=1))
    if len(bad):
        raise UsageError(f"{path} has {len(bad)} frames with NaN or infinite values (the first is frame {bad[0]}); "
                         "compute the features again")
    return frames


# ---------------------------------------------------------------- linear prediction from the features
# A source-filter vocoder (LPCNet, Valin and Skoglund 2019) predicts each sample from the last `order` ones
# with coefficients read off the frame's spectral envelope. The exporter computes the same numbers in the graph
# (artrain/source_filter.py, float64, from ``lpc_constants``); tests/test_lpc.py holds the two equal.
LPC_PREEMPHASIS = 0.85      # the predictor works on e_t = s_t - 0.85 s_{t-1} (LPCNet's pre-emphasis)
LPC_LAG_WINDOW_HZ = 60.0    # Gaussian lag window: the envelope smoothed by a 60 Hz-wide Gaussian
LPC_NOISE_FLOOR = 1e-9      # added to every bin of the power spectrum: an all-floor frame gives a white one
LPC_WHITE_NOISE = 1e-4      # r_0 *= 1 + 1e-4 (a -40 dB white floor): keeps Levinson-Durbin well conditioned


def lpc_constants(spec: FeatureSpec, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fixed parts of ``lpc_from_log_mel``, float64: the filterbank's pseudo-inverse (n_fft // 2 + 1, M),
    the pre-emphasis filter's power response per bin (n_fft // 2 + 1,) and the lag window (order + 1,)."""
    if not 1 <= order < spec.n_fft // 2:
        raise ValueError(f"LPC order {order} is not in 1 .. {spec.n_fft // 2 - 1}")
    inverse = np.linalg.pinv(mel_filterbank(spec))                                   # (F, M)
    w = 2 * np.pi * np.fft.rfftfreq(spec.n_fft)                                      # (F,) rad/sample
    emphasis = 1 + LPC_PREEMPHASIS**2 - 2 * LPC_PREEMPHASIS * np.cos(w)              # (F,) |1 - 0.85 z^-1|^2
    lags = np.arange(order + 1)
    lag_window = np.exp(-0.5 * (2 * np.pi * LPC_LAG_WINDOW_HZ * lags / spec.sample_rate) ** 2)  # (order+1,)
    lag_window[0] *= 1 + LPC_WHITE_NOISE
    return inverse, emphasis, lag_window


def lpc_power_spectrum(frames: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Log-mel frames (F, M) -> the pre-emphasised power spectrum they describe (F, n_fft // 2 + 1), float64:
    exp, the filterbank's pseudo-inverse, negatives clipped to 0, squared for a magnitude spec, times the
    pre-emphasis response, plus LPC_NOISE_FLOOR."""
    inverse, emphasis, _ = lpc_constants(spec, 1)
    linear = np.maximum(np.exp(np.asarray(frames, np.float64)) @ inverse.T, 0.0)    # (F, bins)
    return linear ** (2 / spec.power) * emphasis + LPC_NOISE_FLOOR                  # (F, bins)


def levinson_durbin(r: np.ndarray) -> np.ndarray:
    """Autocorrelations (F, p + 1) -> predictor coefficients a (F, p), x_t ~ sum_k a[:, k-1] x_{t-k}: the
    solution of the Toeplitz system R a = r[1:]. Stable (every reflection coefficient inside (-1, 1)) when R is
    positive definite, which the noise floor and the white-noise correction of ``lpc_from_log_mel`` ensure."""
    r = np.asarray(r, np.float64)
    a = np.zeros((r.shape[0], 0))                                                    # (F, i)
    error = r[:, 0]                                                                  # (F,)
    for i in range(r.shape[1] - 1):
        k = (r[:, i + 1] - (a * r[:, i:0:-1]).sum(-1)) / error                      # (F,) reflection i+1
        a = np.concatenate([a - k[:, None] * a[:, ::-1], k[:, None]], axis=1)       # (F, i + 1)
        error = error * (1 - k * k)
    return a


def lpc_from_log_mel(frames: np.ndarray, spec: FeatureSpec, order: int = 16) -> np.ndarray:
    """Log-mel frames (F, M) of ``spec`` -> predictor coefficients (F, order) float64 of the pre-emphasised
    signal e_t = s_t - LPC_PREEMPHASIS s_{t-1}: e_t ~ sum_k a[f, k-1] e_{t-k} for a sample t of frame f.
    Mel -> power spectrum (``lpc_power_spectrum``) -> autocorrelation (inverse real FFT) -> lag window and
    white-noise correction (``lpc_constants``) -> Levinson-Durbin. Finite frames always give a stable
    predictor (an all-floor, silent frame: the whitening filter of the floor's own spectrum; the prediction
    of a silent past is 0, so silence is a legitimate input). Frames with NaN or
    infinite values raise ValueError (``read_features`` refuses them first)."""
    frames = np.asarray(frames, np.float64)
    if frames.ndim != 2 or frames.shape[1] != spec.n_mels:
        raise ValueError(f"lpc_from_log_mel takes frames (F, {spec.n_mels}), got shape {frames.shape}")
    if not np.isfinite(frames).all():
        raise ValueError("lpc_from_log_mel takes finite frames; NaN or infinite values give no predictor")
    _, _, lag_window = lpc_constants(spec, order)
    r = np.fft.irfft(lpc_power_spectrum(frames, spec), n=spec.n_fft, axis=-1)[:, :order + 1]  # (F, order+1)
    return levinson_durbin(r * lag_window)
