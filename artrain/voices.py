"""The `voices` dataset: English words and whole sentences from recorded-speech Festival voices and eSpeak NG.

Closer to real speech than `speech` (eSpeak only): three Festival voices built from recordings of people
(kal_diphone and ked_diphone, American male diphone voices; cmu_us_slt_arctic_hts, an American female HMM
voice trained on the CMU ARCTIC recordings) beside six eSpeak NG voices, each saying the 30 built-in words of
`speech` and 30 sentences of this module. Every clip is resampled to 16 kHz, trimmed of leading and trailing
silence, peak-normalised, and given a noise floor of uniform dither in [-1, 1] LSB of 16-bit audio, so no
clip holds exact digital silence (runs of one sample value stay a few samples long, in both forms).

Splits: every clip of ``HELD_OUT_VOICE`` (ked_diphone, both speeds) is the test split and nothing else is;
of the other voices' clips, those with (variant + item) % 10 == 9 are validation, the rest train.
Labels: a word clip is labelled with its word's index in ``SPEECH_WORDS`` (the class ids of `speech`); a
sentence with ``SENTENCE_CLASS`` (index 30), so word-conditioned models can train on the whole set.

Built offline from Debian's festival, festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts and espeak-ng,
deterministically (the dither is seeded by clip index), and cached like `speech`.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arrun.contract.codecs import PCM16_LEVELS, audio_encode
from arrun.contract.errors import ARError

from .data import (SAMPLE_RATE, SPEECH_VOICES, SPEECH_WORDS, Dataset, _read_cache, _read_wav, _save_atomic,
                   _split, _splits, _TEST, _TRAIN, _VAL)

SENTENCES = (
    "The cat sat on the mat and looked at the bird.",
    "Turn left at the green house, then go right.",
    "Seven red apples fell from the old tree.",
    "Please stop the car before the bridge.",
    "My dog likes to run in the park every morning.",
    "She said yes, and then she said no.",
    "Two plus two makes four, and three plus three makes six.",
    "The sun is bright over the blue water today.",
    "Hello world, this is a test of the speech system.",
    "We walked down the hill to find the river.",
    "A small bird sang in the tall green tree.",
    "Open the window and let the cold air in.",
    "He counted from one to nine without a pause.",
    "The train leaves at eight in the evening.",
    "Put the red box on the table by the door.",
    "Children were playing games in the quiet street.",
    "Switch the light off when you leave the room.",
    "The weather turned cold and the rain came down.",
    "Can you hear the music coming from next door?",
    "Write your name at the top of the page.",
    "The old man read the paper by the fire.",
    "Five boats sailed slowly across the bay.",
    "Go up the stairs and wait for me there.",
    "Fresh bread smells good early in the morning.",
    "The clock on the wall says it is zero past ten.",
    "They planted flowers along the garden path.",
    "Her voice was soft, but everyone could hear it.",
    "Keep the blue pen and give me the black one.",
    "Thunder rolled across the valley at night.",
    "Learning a new language takes time and patience.",
)
SENTENCE_CLASS = "sentence"                         # the label of every sentence clip
CLASS_NAMES = (*SPEECH_WORDS, SENTENCE_CLASS)       # word i keeps its `speech` class id i


@dataclass(frozen=True)
class Variant:
    """One way of saying an item: a Festival voice at a duration stretch, or an eSpeak NG voice at a rate."""
    engine: str      # 'festival' | 'espeak'
    voice: str       # festival voice name (voice_<name>) or espeak-ng voice
    speed: float     # festival: Duration_Stretch (> 1 slower; the HTS voice ignores it), espeak: words per minute


FESTIVAL_VARIANTS = (Variant("festival", "kal_diphone", 1.0), Variant("festival", "kal_diphone", 1.25),
                     Variant("festival", "ked_diphone", 1.0), Variant("festival", "ked_diphone", 1.25),
                     Variant("festival", "cmu_us_slt_arctic_hts", 1.0))
ESPEAK_VARIANTS = tuple(Variant("espeak", v, s) for v in SPEECH_VOICES for s in (140, 180))
VARIANTS = FESTIVAL_VARIANTS + ESPEAK_VARIANTS
HELD_OUT_VOICE = "ked_diphone"    # the test split: every clip of this voice, and only those
DITHER_LSB = 1.0                  # uniform dither in [-DITHER_LSB, DITHER_LSB] / 32768 added to every sample
_SILENCE = 0.02                   # trim threshold, fraction of the clip's peak (as `speech`)
_VOICES_VERSION = 1               # bump when the recipe changes in a way the hash cannot see
_INSTALL = ("apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng "
            "(bash .ci/setup does)")


def items(words: tuple[str, ...] = SPEECH_WORDS, sentences: tuple[str, ...] = SENTENCES) -> list[tuple[str, int]]:
    """(text, label) of every item in build order: the words, then the sentences."""
    return ([(w, SPEECH_WORDS.index(w)) for w in words] +
            [(s, len(SPEECH_WORDS)) for s in sentences])


def split_of(item: int, variant: int) -> int:
    """The split code of item ``item`` said by ``VARIANTS[variant]``: test exactly for the held-out voice,
    val for one in ten of the others ((variant + item) % 10 == 9), train for the rest."""
    if VARIANTS[variant].voice == HELD_OUT_VOICE:
        return _TEST
    return _VAL if (variant + item) % 10 == 9 else _TRAIN


def clip_order(n_items: int) -> list[tuple[int, int]]:
    """(item, variant) of every clip in cache order: item-major, variants in ``VARIANTS`` order."""
    return [(i, v) for i in range(n_items) for v in range(len(VARIANTS))]


def held_out_clips(words: tuple[str, ...] = SPEECH_WORDS,
               sentences: tuple[str, ...] = SENTENCES) -> list[tuple[str, Variant]]:
    """(text, variant) of each clip of the test split, in its order: what ``load_voices().test`` says."""
    texts = items(words, sentences)
    return [(texts[i][0], VARIANTS[v]) for i, v in clip_order(len(texts)) if split_of(i, v) == _TEST]


# ---------------------------------------------------------------- synthesis

def _festival_script(voice: str, speed: float, texts: list[str], folder: Path) -> str:
    """A festival -b script that says each text with ``voice`` into folder/<index>.wav."""
    lines = [f"(voice_{voice})", f"(Parameter.set 'Duration_Stretch {speed})"]
    for k, text in enumerate(texts):
        if '"' in text or "\\" in text:
            raise ValueError(f"text for festival may not hold quotes or backslashes: {text!r}")
        lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{folder / f"{k}.wav"}" \'riff)')
    return "\n".join(lines) + "\n"


def _run(cmd: list[str], what: str) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        raise ARError(f"{what} failed ({e}); check the install: {_INSTALL}") from None


def _festival(variant: Variant, texts: list[str], folder: Path) -> list[Path]:
    """Every text said by one Festival variant, in one festival process -> the WAV paths, in order."""
    folder.mkdir(parents=True)
    script = folder / "say.scm"
    script.write_text(_festival_script(variant.voice, variant.speed, texts, folder))
    _run(["festival", "-b", str(script)], f"festival with voice {variant.voice}")
    wavs = [folder / f"{k}.wav" for k in range(len(texts))]
    if missing := [p for p in wavs if not p.exists()]:
        raise ARError(f"festival with voice {variant.voice} wrote no audio for {len(missing)} of {len(texts)} "
                      f"texts; check that the voice is installed: {_INSTALL}")
    return wavs


def _espeak(variant: Variant, texts: list[str], folder: Path) -> list[Path]:
    """Every text said by one eSpeak NG variant (one espeak-ng call per text) -> the WAV paths, in order."""
    folder.mkdir(parents=True)
    wavs = [folder / f"{k}.wav" for k in range(len(texts))]
    for text, wav in zip(texts, wavs):
        _run(["espeak-ng", "-v", variant.voice, "-s", str(int(variant.speed)), "-w", str(wav), text],
             f"espeak-ng with voice {variant.voice}")
    return wavs


def finish_clip(x: np.ndarray, seed: int, what: str) -> np.ndarray:
    """(T,) float audio at 16 kHz -> (T',) trimmed at 2 % of its peak, peak-normalised, dithered by uniform
    noise in [-1, 1] LSB of 16-bit audio from ``np.random.default_rng(seed)``, clipped to [-1, 1]."""
    peak = np.abs(x).max(initial=0.0)
    if peak == 0:
        raise ARError(f"{what} is silent; check the install: {_INSTALL}")
    x = x / peak
    loud = np.flatnonzero(np.abs(x) > _SILENCE)
    x = x[loud[0]:loud[-1] + 1]                                                     # (T',)
    noise = np.random.default_rng(seed).uniform(-DITHER_LSB, DITHER_LSB, len(x)) / 32768.0
    return np.clip(x + noise, -1.0, 1.0)


def build_voices(words: tuple[str, ...] = SPEECH_WORDS, sentences: tuple[str, ...] = SENTENCES,
                 workers: int = 2) -> dict[str, np.ndarray]:
    """Synthesise every (item, variant) clip -> the arrays the cache stores (as `speech`'s: tokens (N,) uint8
    mu-law, pcm16 (N,) int16, offsets (n + 1,), labels (n,), split (n,)), clips in ``clip_order``.
    ``workers`` variants are synthesised at once (at most 2 external processes). Raises ARError when a
    synthesiser is missing or fails."""
    for tool in ("festival", "espeak-ng"):
        if shutil.which(tool) is None:
            raise ARError(f"{tool} is needed to build the 'voices' dataset and was not found; {_INSTALL}")
    texts = items(words, sentences)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=min(workers, 2)) as pool:
        def say(v: int) -> list[np.ndarray]:
            synth = _festival if VARIANTS[v].engine == "festival" else _espeak
            return [_read_wav(p) for p in synth(VARIANTS[v], [t for t, _ in texts], Path(tmp) / str(v))]
        by_variant = list(pool.map(say, range(len(VARIANTS))))                        # [variant][item] (T,)
    order = clip_order(len(texts))
    clips = [finish_clip(by_variant[v][i], seed=k, what=f"{VARIANTS[v].voice} saying {texts[i][0]!r}")
             for k, (i, v) in enumerate(order)]
    joined = _split([audio_encode(x, 256) for x in clips], [texts[i][1] for i, _ in order])
    pcm = np.concatenate([audio_encode(x, PCM16_LEVELS) - 32768 for x in clips]).astype(np.int16)
    return {"tokens": joined.tokens.astype(np.uint8), "pcm16": pcm, "offsets": joined.offsets,
            "labels": joined.labels, "split": np.array([split_of(i, v) for i, v in order])}


def _cache_file(cache_dir: Path | None, words: tuple[str, ...], sentences: tuple[str, ...]) -> Path:
    """<cache_dir>/voices-v<version>-<recipe hash>.npz."""
    if cache_dir is None:
        cache_dir = Path(os.environ.get("ARTRAIN_CACHE") or Path.home() / ".cache" / "artrain")
    recipe = repr((words, sentences, VARIANTS, HELD_OUT_VOICE, DITHER_LSB, SAMPLE_RATE, _SILENCE)).encode()
    return Path(cache_dir) / f"voices-v{_VOICES_VERSION}-{hashlib.sha1(recipe).hexdigest()[:8]}.npz"


def load_voices(cache_dir: Path | None = None, bits: int = 8, *, words: tuple[str, ...] = SPEECH_WORDS,
                sentences: tuple[str, ...] = SENTENCES) -> Dataset:
    """The `voices` dataset (8-bit mu-law, or 16-bit linear PCM for ``bits=16``), built on first use and cached
    as one .npz in ``cache_dir`` (default $ARTRAIN_CACHE or ~/.cache/artrain). ``words`` and ``sentences``
    choose a subset (tests); the full set is 60 items x 17 variants = 1,020 clips."""
    path = _cache_file(cache_dir, tuple(words), tuple(sentences))
    arrays = _read_cache(path)
    if arrays is None:
        arrays = build_voices(tuple(words), tuple(sentences))
        _save_atomic(path, arrays)
    tokens = arrays["pcm16"].astype(np.int64) + 32768 if bits == 16 else arrays["tokens"].astype(np.int64)
    seqs = np.split(tokens, arrays["offsets"][1:-1])  # n x (T_i,)
    splits = _splits(seqs, arrays["labels"].tolist(), arrays["split"])
    return Dataset("voices", "audio", PCM16_LEVELS if bits == 16 else 256, *splits, sample_rate=SAMPLE_RATE,
                   class_names=CLASS_NAMES)
