"""The `voices` dataset: a tiny subset built for real (Festival and espeak-ng), its splits, labels, forms
and noise floor; the full set is not built here."""
import shutil

import numpy as np
import pytest

from artrain import voices
from artrain.data import SPEECH_WORDS, data_kind, is_builtin, load_dataset
from arrun.contract.codecs import mulaw_encode

pytestmark = pytest.mark.skipif(shutil.which("festival") is None or shutil.which("espeak-ng") is None,
                                reason="festival and espeak-ng are installed by .ci/setup")

WORDS = ("seven", "stop")
SENTENCES = voices.SENTENCES[:1]


def longest_run(x: np.ndarray) -> int:
    """Length of the longest run of one repeated value in (T,) x."""
    changes = np.flatnonzero(np.diff(x) != 0)
    return int(np.diff(np.r_[-1, changes, len(x) - 1]).max())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The subset of 2 words and 1 sentence, 8-bit and 16-bit, built once into a fresh cache."""
    cache = tmp_path_factory.mktemp("voices-cache")
    return (voices.load_voices(cache, words=WORDS, sentences=SENTENCES),
            voices.load_voices(cache, bits=16, words=WORDS, sentences=SENTENCES), cache)


def test_longest_run_helper():
    assert longest_run(np.array([1, 1, 2, 2, 2, 1])) == 3
    assert longest_run(np.array([5])) == 1


def test_registered_as_builtin_audio():
    assert is_builtin("voices") and data_kind("voices") == "audio"


def test_test_split_is_exactly_the_held_out_voice(tiny):
    data, _, _ = tiny
    n_items, n_variants = len(WORDS) + len(SENTENCES), len(voices.VARIANTS)
    held = [v for v in voices.VARIANTS if v.voice == voices.HELD_OUT_VOICE]
    assert len(data.test) == n_items * len(held) == 6
    assert [variant.voice for _, variant in voices.held_out_clips(WORDS, SENTENCES)] == [voices.HELD_OUT_VOICE] * 6
    assert len(data.train) + len(data.val) + len(data.test) == n_items * n_variants
    assert len(data.val) >= 1 and len(data.train) > 10 * len(data.val) // 2


def test_labels_are_word_ids_then_the_sentence_class(tiny):
    data, _, _ = tiny
    assert data.class_names[:len(SPEECH_WORDS)] == SPEECH_WORDS
    assert data.class_names[data.test.labels[-1]] == voices.SENTENCE_CLASS
    texts = [text for text, _ in voices.held_out_clips(WORDS, SENTENCES)]
    assert [data.class_names[label] for label in data.test.labels[:4]] == texts[:4] == ["seven", "seven", "stop", "stop"]


def test_sentences_are_longer_than_words(tiny):
    data, _, _ = tiny
    lengths = np.diff(data.test.offsets) / data.sample_rate          # (6,) seconds
    assert lengths[-2:].min() > 1.5 and lengths[:4].max() < 1.2


def test_both_forms_are_the_same_audio(tiny):
    data8, data16, _ = tiny
    assert data8.levels == 256 and data16.levels == 65536 and data8.sample_rate == 16000
    for i in range(len(data8.train)):
        pcm = (data16.train.sequence(i) - 32768) / 32768.0          # (T,) the 16-bit form, as floats
        codes = mulaw_encode(pcm)                                    # (T,) may differ by the 16-bit rounding
        assert np.abs(codes - data8.train.sequence(i)).max() <= 1, i
        assert np.mean(codes == data8.train.sequence(i)) > 0.9, i


def test_no_clip_holds_digital_silence(tiny):
    data8, data16, _ = tiny
    for data, bound in ((data8, 160), (data16, 32)):   # 10 ms of one mu-law code; 2 ms of one 16-bit value
        for split in (data.train, data.val, data.test):
            runs = [longest_run(split.sequence(i)) for i in range(len(split))]
            assert max(runs) <= bound, (data.levels, max(runs))


def test_dither_breaks_exact_silence():
    x = np.r_[np.ones(10), np.zeros(16000), np.ones(10)] * 0.5      # a second of exact zeros inside
    y = voices.finish_clip(x, seed=0, what="test")
    assert len(y) == len(x)
    assert longest_run(mulaw_encode(y)) < 40
    assert np.abs(y[10:-10]).max() <= 1 / 32768 and np.all(y[10:-10] != 0)
    assert np.array_equal(y, voices.finish_clip(x, seed=0, what="test"))


def test_build_is_deterministic_and_cached(tiny, tmp_path):
    _, _, cache = tiny
    [cached] = cache.glob("voices-v*.npz")
    again = voices.build_voices(WORDS[:1], (), workers=1)   # the first item's clips, each with the same seed
    with np.load(cached) as arrays:
        assert np.array_equal(again["pcm16"], arrays["pcm16"][:len(again["pcm16"])])


def test_loads_through_load_dataset(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(voices, "load_voices", lambda cache_dir, bits: calls.append((cache_dir, bits)) or "data")
    assert load_dataset("voices", cache_dir=tmp_path, bits=16) == "data"
    assert calls == [(tmp_path, 16)]
