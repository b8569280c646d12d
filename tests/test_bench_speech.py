"""benchmarks/bench_speech.py's pure measures: the silence-run measure on signals with a known answer, the
recogniser on a held-out original and on noise, PESQ/STOI's ordering, the clip selection."""
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_bench_speech():
    spec = importlib.util.spec_from_file_location("bench_speech", ROOT / "benchmarks" / "bench_speech.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_speech"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _load_bench_speech()
HOP = 128
needs_synth = pytest.mark.skipif(shutil.which("festival") is None or shutil.which("espeak-ng") is None,
                                 reason="festival and espeak-ng are installed by .ci/setup")


def loud_then_quiet(n_loud_frames: int, n_quiet_frames: int) -> np.ndarray:
    """A 440 Hz tone at 0.5 for n_loud_frames frames of HOP samples, then exact silence."""
    t = np.arange(n_loud_frames * HOP)
    return np.r_[0.5 * np.sin(2 * np.pi * 440 * t / 16000), np.zeros(n_quiet_frames * HOP)]


def test_run_in_sound_is_counted_and_run_in_silence_is_not():
    original = loud_then_quiet(20, 20)                         # samples 0..2559 loud, 2560..5119 silent
    rebuilt = np.arange(len(original)) % 7                     # never repeats
    rebuilt[1000:1300] = 42                                    # 300 repeated samples inside the sound
    rebuilt[3000:5000] = 42                                    # 2,000 inside the silence: not a trap
    assert bench.longest_sound_run(original, rebuilt, HOP) == 300


def test_run_is_cut_where_the_sound_ends():
    original = loud_then_quiet(20, 20)
    rebuilt = np.arange(len(original)) % 7
    rebuilt[2500:4000] = 9                                     # 60 samples before the silence begins
    assert bench.longest_sound_run(original, rebuilt, HOP) == 60


def test_floor_decides_what_has_sound():
    original = np.full(10 * HOP, 10 ** (-45 / 20))             # a -45 dBFS constant: below -40, above -50
    rebuilt = np.zeros(10 * HOP, np.int64)                     # one value throughout
    assert bench.longest_sound_run(original, rebuilt, HOP, floor_db=-40) == 0
    assert bench.longest_sound_run(original, rebuilt, HOP, floor_db=-50) == 10 * HOP


def test_changing_signal_has_runs_of_one():
    original = loud_then_quiet(4, 0)
    assert bench.longest_sound_run(original, np.arange(len(original)), HOP) == 1


def test_grammar_lists_each_word_once():
    text = bench.grammar(("yes", "no"))
    assert text.startswith("#JSGF V1.0;") and "public <word> = yes | no ;" in text


@needs_synth
def test_recogniser_hears_a_held_out_word_and_not_noise(tmp_path):
    from arrun.contract.codecs import mulaw_decode
    data = bench.load_voices(tmp_path, words=("seven", "yes"), sentences=())
    clips = bench.held_out_clips(("seven", "yes"), ())
    recognise = bench.Recogniser(bench.BENCH_WORDS)
    i = next(k for k, (text, variant) in enumerate(clips) if text == "seven" and variant.speed == 1.0)
    assert recognise(mulaw_decode(data.test.sequence(i)).astype(np.float64)) == "seven"
    noise = np.random.default_rng(0).normal(0, 0.3, 8000)
    assert recognise(noise) != "seven"


def test_pesq_and_stoi_rank_a_copy_above_noise():
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    speechlike = np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * 0.5
    speechlike += 0.05 * rng.normal(size=len(t)) * (np.sin(2 * np.pi * 3 * t) > 0)
    same = bench.pesq_stoi(speechlike, speechlike)
    noisy = bench.pesq_stoi(speechlike, speechlike + 0.3 * rng.normal(size=len(t)))
    assert same[1] > 0.99 and noisy[1] < same[1] - 0.2
    assert noisy[0] < same[0] - 1


def test_selection_matches_the_held_out_clips():
    quick, default, every = (bench.selection(s) for s in ("quick", "bench", "all"))
    assert len(every) == 120 and len(default) == 2 * (len(bench.BENCH_WORDS) + len(bench.BENCH_SENTENCES))
    assert [text for _, text, _ in quick] == [*bench.BENCH_WORDS[:4], bench.BENCH_SENTENCES[0]]
    assert [word for _, _, word in quick] == [True] * 4 + [False]
    assert set(default) <= set(every) and set(quick) <= set(default)


def test_spectrogram_png_stacks_one_panel_per_method(tmp_path):
    from arrun.contract.codecs import mulaw_encode, png_decode
    from arrun.contract.features import FeatureSpec
    spec = FeatureSpec()                                                      # 512-point STFT, hop 128
    tone = mulaw_encode(loud_then_quiet(40, 0))                               # 440 Hz: bin 14 of 257
    silence = mulaw_encode(np.zeros(len(tone)))
    paths = bench.write_figures(tmp_path / "figs", "clip", {"original": tone, "a/b.onnx": silence}, spec)
    assert [p.name for p in paths] == ["clip-original.wav", "clip-a-b.onnx.wav", "clip-spectrogram.png"]
    gray = png_decode(paths[-1].read_bytes(), "test")                         # (2 * 257 + 2, F)
    assert gray.shape == (2 * 257 + 2, spec.frames(len(tone)))
    tone_row = 256 - 14                                                       # bins run top (high) to bottom (low)
    assert gray[tone_row, 5:-5].min() >= 250 and gray[tone_row - 50, 5:-5].max() < 100   # the tone, not bin 64
    assert gray[257:259].min() == 255 and gray[259:].mean() < 5                        # the line; the quiet panel


def test_table_puts_goals_beside_each_method():
    original = bench.Column(words=[True] * 8 + [False] * 2, run=16,
                            cells={"xz": "4.700", "flac": "5.400"})
    griffin = bench.Column(words=[True] * 10, pesq=[4.0, 4.2], stoi=[0.9, 0.8], run=32, lsd=[60.0], frames=10)
    vocoder = bench.Column(words=[True, False] * 3 + [True, True] * 2, draws=2,        # 5 clips, 2 draws each:
                           pesq=[1.0, float("nan")], stoi=[0.5, 0.7], run=3200,         # draw 0 hits 5/5, draw 1 2/5
                           lsd=[150.0], frames=10, cells={"bits": "4.791", "bench": "2.46", "vocode": "2.60"})
    lines = bench.table({"original": original, "Griffin-Lim": griffin, "v/chunk.onnx": vocoder},
                        {"clips": 3}).splitlines()
    assert lines[0] == "| figure | goal | original | Griffin-Lim | v/chunk.onnx |"
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in lines[2:]}
    assert rows[f"words recognised (10 clips; a vocoder {bench.WORD_SEEDS} draws each)"] == [
        "≥ 72% (90 % of the originals')", "80%", "100%", "70% (40%–100% by seed) |"]
    assert rows["wide-band PESQ (2 sentence clips)"][2:] == ["4.10", "1.00 |"]   # PESQ's NaN left out of the mean
    assert rows["STOI"][0].startswith("≥ 0.80") and rows["STOI"][2:] == ["0.85", "0.60 |"]
    assert rows["longest run of one sample where the original has sound (3 clips)"][1:] == ["1.0 ms", "2.0 ms", "200.0 ms |"]
    assert rows["log-spectral distance (not a goal)"][2:] == ["6.00 dB", "15.00 dB |"]
    assert "below xz -9e 4.700 and FLAC -8 5.400" in rows["bits/sample given the features (`arrun score`)"][0]
