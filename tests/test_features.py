"""Log-mel features against librosa: the filterbank, the centred STFT on several signals and both powers,
the strict JSON spec, the frame each sample is conditioned on."""
import dataclasses
import json
import math

import librosa
import numpy as np
import pytest

from arrun.contract.features import FeatureSpec, frame_rows, log_mel, mel_filterbank

WIDE = FeatureSpec(sample_rate=22050, n_fft=1024, hop=256, win_length=800, n_mels=64, fmin=50.0, fmax=7600.0)


def _librosa_log_mel(x: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=x, sr=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop, win_length=spec.win_length,
        window="hann", center=True, pad_mode="constant", power=spec.power, n_mels=spec.n_mels, fmin=spec.fmin,
        fmax=spec.fmax, htk=False, norm="slaney", dtype=np.float64)                  # (M, N)
    return np.log(np.maximum(mel, spec.log_floor)).T                                 # (N, M)


@pytest.mark.parametrize("spec", [FeatureSpec(), WIDE], ids=["default", "wide"])
def test_filterbank_is_librosas(spec):
    expected = librosa.filters.mel(sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels, fmin=spec.fmin,
                                   fmax=spec.fmax)
    bank = mel_filterbank(spec)
    assert bank.shape == (spec.n_mels, spec.n_fft // 2 + 1) and bank.dtype == np.float64
    np.testing.assert_allclose(bank, expected, rtol=1e-6, atol=0)
    assert mel_filterbank(spec) is bank and not bank.flags.writeable  # cached, so read-only


def _signals(spec: FeatureSpec) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(spec.sample_rate) / spec.sample_rate
    return {
        "noise 1 s": rng.uniform(-1, 1, spec.sample_rate),
        "noise 300": rng.uniform(-1, 1, 300),
        "chirp": 0.8 * np.sin(2 * np.pi * (100 * t + 3000 * t ** 2)),
        "hop * 7": rng.uniform(-1, 1, spec.hop * 7),
        "one sample": np.array([0.5]),
    }


@pytest.mark.filterwarnings("ignore:n_fft=.* is too large for input signal:UserWarning")  # librosa on short clips
@pytest.mark.parametrize("spec", [FeatureSpec(), FeatureSpec(power=2.0), WIDE], ids=["default", "power", "wide"])
def test_log_mel_is_librosas(spec):
    for name, x in _signals(spec).items():
        features = log_mel(x, spec)
        expected = _librosa_log_mel(x, spec)
        assert features.shape == expected.shape == (spec.frames(len(x)), spec.n_mels), name
        assert features.dtype == np.float32
        assert np.abs(features - expected).max() < 1e-4, name


def test_log_mel_in_blocks(monkeypatch):
    """A clip longer than one block gives the frames it gives in one block."""
    spec, x = FeatureSpec(), np.random.default_rng(1).uniform(-1, 1, 5000).astype(np.float32)
    whole = log_mel(x, spec)
    monkeypatch.setattr("arrun.contract.features.BLOCK_BYTES", 1)  # one frame per block
    np.testing.assert_array_equal(log_mel(x, spec), whole)


def test_empty_clip_is_one_floor_frame():
    spec = FeatureSpec()
    features = log_mel(np.zeros(0, np.float32), spec)
    assert features.shape == (1, spec.n_mels)
    np.testing.assert_array_equal(features, np.float32(math.log(spec.log_floor)))


def test_log_mel_takes_mono_only():
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 100)), FeatureSpec())


def test_spec_json_round_trip():
    for spec in (FeatureSpec(), WIDE, FeatureSpec(power=2.0, log_floor=1e-9)):
        assert FeatureSpec.from_json(spec.to_json()) == spec
    assert list(json.loads(WIDE.to_json())) == sorted(f.name for f in dataclasses.fields(FeatureSpec))


def _json_with(**changes) -> str:
    values = json.loads(FeatureSpec().to_json())
    values.update(changes)
    return json.dumps({k: v for k, v in values.items() if v is not None})


@pytest.mark.parametrize("text, reason", [
    ("{not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    (_json_with(hop=None), "lacks hop"),
    (_json_with(extra=1), "unknown keys extra"),
    (_json_with(n_fft="512"), "'n_fft'"),
    (_json_with(n_mels=80.0), "'n_mels'"),
    (_json_with(power=True), "'power'"),
    (_json_with(kind="mfcc"), "kind"),
    (_json_with(window="hamming"), "window"),
    (_json_with(n_mels=0), "n_mels 0 is not positive"),
    (_json_with(n_fft=511, win_length=400), "odd"),
    (_json_with(hop=1024), "must not exceed"),
    (_json_with(win_length=1024), "must not exceed"),
    (_json_with(fmax=8001.0), "fmax"),
    (_json_with(fmin=8000.0), "fmin"),
    (_json_with(fmin=-1.0), "fmin"),
    (_json_with(log_floor=0.0), "log_floor"),
    (_json_with(power=1.5), "power"),
])
def test_from_json_rejects_malformed(text, reason):
    with pytest.raises(ValueError, match=reason):
        FeatureSpec.from_json(text)


def test_frame_rows():
    rows = frame_rows(1000, 128, start=300)
    assert rows.dtype == np.int64 and rows.shape == (1000,)
    np.testing.assert_array_equal(rows, np.arange(300, 1300) // 128)
    assert rows[0] == 2 and rows[-1] == 1299 // 128
    assert frame_rows(0, 128).shape == (0,)
