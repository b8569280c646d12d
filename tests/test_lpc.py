"""Linear prediction from log-mel frames (arrun.contract.features.lpc_from_log_mel) against independent
computations: scipy's Toeplitz solver on the same autocorrelation, librosa's lpc on a synthetic AR signal whose
envelope the frames describe, the torch copy the exporter puts in the graph; stability; bad frames refused."""
import librosa
import numpy as np
import pytest
import scipy.linalg
import scipy.signal
import torch

from arrun.contract.features import (LPC_PREEMPHASIS, FeatureSpec, levinson_durbin, log_mel, lpc_constants,
                                     lpc_from_log_mel, lpc_power_spectrum)
from artrain.source_filter import LPCAnalysis

SPEC = FeatureSpec()
ORDER = 16


def _frames(seed: int = 0, count: int = 40) -> np.ndarray:
    """Log-mel-like frames (count, 80): a smooth random envelope plus noise, floor to loud."""
    rng = np.random.default_rng(seed)
    envelope = np.cumsum(rng.normal(0, 0.4, (count, SPEC.n_mels)), axis=1)           # (count, M)
    return np.clip(envelope + rng.uniform(-9, 1, (count, 1)), np.log(SPEC.log_floor), 3).astype(np.float32)


def _ar_signal(seconds: float = 2.0) -> np.ndarray:
    """A stationary AR(4) signal: two resonances (500 Hz and 2.2 kHz), 16 kHz, amplitude around 0.05."""
    poles = [0.97 * np.exp(1j * 2 * np.pi * f / SPEC.sample_rate) for f in (500, 2200)]
    denominator = np.real(np.poly(poles + [p.conjugate() for p in poles]))            # (5,)
    noise = np.random.default_rng(1).standard_normal(int(seconds * SPEC.sample_rate))
    x = scipy.signal.lfilter([1.0], denominator, noise)
    return 0.05 * x / x.std()


def test_levinson_solves_the_toeplitz_system_scipy_solves():
    _, _, lag_window = lpc_constants(SPEC, ORDER)
    power = lpc_power_spectrum(_frames(), SPEC)                                       # (F, bins)
    r = np.fft.irfft(power, n=SPEC.n_fft, axis=-1)[:, :ORDER + 1] * lag_window        # (F, order+1)
    ours = levinson_durbin(r)
    for row, coeffs in zip(r, ours):
        expected = scipy.linalg.solve_toeplitz(row[:-1], row[1:])
        np.testing.assert_allclose(coeffs, expected, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(lpc_from_log_mel(_frames(), SPEC, ORDER), ours, rtol=1e-12)


def test_the_frames_of_an_ar_signal_give_its_predictor():
    """librosa.lpc on the pre-emphasised signal is the least-squares predictor; the one read off the log-mel
    frames must whiten the signal nearly as well: residual power within 8 % of librosa's in the median frame,
    30 % in the worst (one 512-sample window is a noisy estimate of the envelope)."""
    x = _ar_signal()
    emphasised = np.append(x[0], x[1:] - LPC_PREEMPHASIS * x[:-1])
    best = -librosa.lpc(emphasised, order=ORDER)[1:]                                   # predictor convention

    def residual(coeffs):
        return np.mean(scipy.signal.lfilter(np.r_[1.0, -coeffs], [1.0], emphasised)[ORDER:] ** 2)

    ours = lpc_from_log_mel(log_mel(x, SPEC), SPEC, ORDER)[5:-5]                       # frames inside the clip
    gains = np.array([residual(a) for a in ours]) / residual(best)
    assert residual(best) < 0.2 * np.var(emphasised)  # the signal is predictable, so the check can fail
    assert np.median(gains) < 1.08 and gains.max() < 1.3, (np.median(gains), gains.max())
    white = np.zeros(ORDER)
    assert residual(white) / residual(best) > 4  # a predictor of nothing is far worse


@pytest.mark.parametrize("level", [np.log(SPEC.log_floor), -6.0, 0.0, 5.0], ids=["floor", "quiet", "loud", "clipped"])
def test_every_finite_frame_gives_a_stable_predictor(level):
    frames = np.vstack([_frames(2), np.full((1, SPEC.n_mels), level, np.float32)])
    for coeffs in lpc_from_log_mel(frames, SPEC, ORDER):
        roots = np.roots(np.r_[1.0, -coeffs])
        assert np.all(np.abs(roots) < 1.0), np.abs(roots).max()


def test_silence_predicts_silence():
    frames = log_mel(np.zeros(1000), SPEC)                                            # all at the floor
    coeffs = lpc_from_log_mel(frames, SPEC, ORDER)
    assert np.isfinite(coeffs).all()
    assert np.all(np.abs(np.roots(np.r_[1.0, -coeffs[0]])) < 1.0)


@pytest.mark.parametrize("value", [np.nan, -np.inf, np.inf])
def test_frames_that_give_no_predictor_are_refused(value):
    frames = _frames()
    frames[3, 7] = value
    with pytest.raises(ValueError, match="finite"):
        lpc_from_log_mel(frames, SPEC, ORDER)


def test_the_graphs_torch_copy_computes_the_same_numbers():
    """The exporter computes the predictor in the graph (artrain.source_filter.LPCAnalysis), in float64."""
    frames = np.vstack([_frames(3), log_mel(_ar_signal(0.1), SPEC)])
    expected = lpc_from_log_mel(frames, SPEC, ORDER)
    with torch.no_grad():
        ours = LPCAnalysis(SPEC, ORDER)(torch.from_numpy(frames)).numpy()
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-9 * np.abs(expected).max())
