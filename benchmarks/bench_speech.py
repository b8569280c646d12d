"""Speech a listener could use (issue 25): vocoders against Griffin-Lim and the originals on the held-out voice.

    python benchmarks/bench_speech.py [CHUNK.onnx ...] [--full FULL.onnx ...] [--quick | --all] [--figures DIR]

Data: the test split of the `voices` dataset, every clip of the Festival voice ``artrain.voices.HELD_OUT_VOICE``
(ked_diphone, never heard in training), at 8-bit mu-law 16 kHz: by default the clips of ``BENCH_WORDS`` and
``BENCH_SENTENCES`` at both speeds (48 clips, 40 s of audio); ``--all`` every held-out clip (120, 169 s), which
takes about 4 times as long. Each vocoder chunk graph (default
models/speech-vocoder/chunk.onnx) resynthesises each chosen clip from its own log-mel frames through arrun's
sampling loop (seed = clip index, one thread), and Griffin-Lim (benchmarks/quality.py: librosa, 64 iterations)
inverts the same frames. In one run, all against the original:
- words recognised: pocketsphinx (its bundled en-us model) with a JSGF grammar of ``BENCH_WORDS`` (20 built-in
  words), on those words' held-out clips; the rate for the originals, Griffin-Lim and each vocoder. A vocoder
  samples: one draw per clip moves its rate by 15 points from seed to seed, so each word clip is vocoded
  ``WORD_SEEDS`` times (seeds i, i + 1000, ...) and the rate is over every draw, with the range over seeds;
- wide-band PESQ (``pesq``, mode 'wb') and STOI (``pystoi``) on the held-out clips of ``BENCH_SENTENCES``;
- the longest run of one repeated sample where the original has sound (its 8 ms frame's RMS above
  ``SILENCE_FLOOR_DB`` dBFS; the clips are peak-normalised), over every chosen clip, in ms;
- log-spectral distance (benchmarks/quality.py), reported but not a goal: Griffin-Lim is built to match it;
- bits/sample given the features: ``arrun score`` of a full graph (``--full``, default each chunk graph's
  full.onnx beside it) on the same clips as WAVs, beside ``xz -9e`` and ``flac -8`` on the same mu-law bytes
  (without training context);
- real-time factor: ``arrun bench`` of the chunk graph (batch 1, one thread, best of three) and ``arrun vocode``
  end to end on the first held-out sentence.
``--quick``: 4 words and 1 sentence, one bench round, for a smoke run. ``--figures DIR``: the first held-out
sentence as WAVs (original, Griffin-Lim, each vocoder) and their spectrograms stacked in one PNG.
"""
from __future__ import annotations

import argparse
import json
import lzma
import platform
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/quality.py, run as a script or imported
from quality import distances, flac_bits, griffin_lim, log_power, resynthesise  # noqa: E402

from artrain.data import SPEECH_WORDS, Split  # noqa: E402
from artrain.voices import HELD_OUT_VOICE, SENTENCES, held_out_clips, load_voices  # noqa: E402
from arrun.contract.codecs import mulaw_decode, png_encode, to_pcm16  # noqa: E402
from arrun.contract.features import mulaw_features  # noqa: E402
from arrun.session import open_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BENCH_WORDS = SPEECH_WORDS[:20]      # zero .. nine, yes, no, up, down, left, right, go, stop, on, off
BENCH_SENTENCES = SENTENCES[:4]
WORD_SEEDS = 3                       # draws per word clip of each vocoder (the rate is over all of them)
SILENCE_FLOOR_DB = -40.0             # a frame has sound where its RMS in the original is above this, in dBFS
RATE = 16000


# ---------------------------------------------------------------- pure measures

def longest_sound_run(original: np.ndarray, rebuilt: np.ndarray, hop: int,
                      floor_db: float = SILENCE_FLOOR_DB) -> int:
    """The longest run of one repeated value in ``rebuilt`` (T,) counted only over samples whose frame
    (samples hop f .. hop f + hop - 1) of ``original`` (T,) float in [-1, 1] has an RMS above ``floor_db``
    dBFS; a silent frame ends a run. -> samples (0 when no frame has sound)."""
    frames = -(-len(original) // hop)
    padded = np.zeros(frames * hop)
    padded[:len(original)] = original
    rms = np.sqrt((padded.reshape(frames, hop) ** 2).mean(axis=1))              # (F,)
    sound = np.repeat(rms > 10 ** (floor_db / 20), hop)[:len(rebuilt)]           # (T,) bool
    same = np.r_[False, rebuilt[1:] == rebuilt[:-1]] & sound & np.r_[False, sound[:-1]]  # (T,) continues a run
    best, current = 0, 0
    for s, keep in zip(sound, same):   # run length of the value at each sample, reset at silence and changes
        current = current + 1 if keep else int(s)
        best = max(best, current)
    return best


def grammar(words: tuple[str, ...]) -> str:
    """A JSGF grammar that accepts exactly one of ``words``."""
    return "#JSGF V1.0;\ngrammar words;\npublic <word> = " + " | ".join(words) + " ;\n"


class Recogniser:
    """pocketsphinx's en-us model held to a grammar of ``words``: ``(audio) -> the word heard ('' for none)``."""

    def __init__(self, words: tuple[str, ...]):
        from pocketsphinx import Decoder
        self.decoder = Decoder(samprate=RATE, loglevel="FATAL")
        self.decoder.add_jsgf_string("words", grammar(words))
        self.decoder.activate_search("words")

    def __call__(self, audio: np.ndarray) -> str:
        """(T,) float samples in [-1, 1] at 16 kHz, padded by 0.25 s of silence each side -> the word."""
        pad = np.zeros(RATE // 4)
        self.decoder.start_utt()
        self.decoder.process_raw(to_pcm16(np.r_[pad, audio, pad]), full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp else ""


def pesq_stoi(reference: np.ndarray, degraded: np.ndarray) -> tuple[float, float]:
    """Wide-band PESQ (NaN where it finds no utterance) and STOI of (T,) float audio at 16 kHz."""
    from pesq import pesq
    from pystoi import stoi
    try:
        quality = pesq(RATE, reference, degraded, "wb")
    except Exception:  # pesq's NoUtterancesError and its C errors share no base class
        quality = float("nan")
    return quality, stoi(reference, degraded, RATE, extended=False)


def xz_bits(codes: np.ndarray) -> float:
    """xz -9e on the codes as one byte each -> bits per code."""
    return len(lzma.compress(codes.astype(np.uint8).tobytes(), preset=9 | lzma.PRESET_EXTREME)) * 8 / len(codes)


def write_wav(path: Path, codes: np.ndarray) -> None:
    """Mu-law codes (T,) -> 16-bit PCM mono WAV at 16 kHz (``arrun`` reads the same codes back)."""
    with wave.open(str(path), "wb") as w:
        w.setparams((1, 2, RATE, 0, "NONE", "not compressed"))
        w.writeframes(to_pcm16(mulaw_decode(codes)))


def arrun_json(*args: str) -> dict:
    """``arrun ARGS --json`` in a fresh process -> its record."""
    result = subprocess.run([sys.executable, "-m", "arrun", *args, "--json"], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"arrun {' '.join(args)} failed: {result.stderr.strip()[-500:]}")
    return json.loads(result.stdout)


# ---------------------------------------------------------------- the run

@dataclass
class Column:
    """Every figure of one method (original, Griffin-Lim or a vocoder) over the selected clips."""
    words: list[bool] = field(default_factory=list)         # recognised, per word clip and draw (draw-minor)
    draws: int = 1                                          # draws per word clip
    pesq: list[float] = field(default_factory=list)         # per sentence clip
    stoi: list[float] = field(default_factory=list)
    run: int = 0                                            # samples
    lsd: list[float] = field(default_factory=list)          # (LSD summed over frames) per clip
    frames: int = 0
    cells: dict[str, str] = field(default_factory=dict)     # figures measured once (bits, speed)


def label(chunk: Path) -> str:
    """A vocoder's column name: its folder and file, e.g. speech-vocoder/chunk.onnx."""
    return f"{chunk.parent.name}/{chunk.name}"


def selection(scope: str) -> list[tuple[int, str, bool]]:
    """(test index, text, is a word) of the clips measured: 'all' every held-out clip; 'bench' those of
    ``BENCH_WORDS`` and ``BENCH_SENTENCES`` (both speeds); 'quick' 4 words and 1 sentence at speed 1."""
    texts = {"all": None, "bench": (*BENCH_WORDS, *BENCH_SENTENCES), "quick": (*BENCH_WORDS[:4], BENCH_SENTENCES[0])}[scope]
    return [(i, text, text in SPEECH_WORDS) for i, (text, variant) in enumerate(held_out_clips())
            if texts is None or (text in texts and (scope != "quick" or variant.speed == 1.0))]


def measure(column: Column, recognise: Recogniser, codes: np.ndarray, original: np.ndarray, text: str,
            hop: int, spec, levels: int) -> None:
    """Add one clip's figures (``codes``: (T,) the method's mu-law codes; ``original``: the held-out codes)."""
    audio, reference = mulaw_decode(codes).astype(np.float64), mulaw_decode(original).astype(np.float64)
    if text in BENCH_WORDS:
        column.words.append(recognise(audio) == text)
    if text in BENCH_SENTENCES and codes is not original:
        quality, intelligibility = pesq_stoi(reference, audio)
        column.pesq.append(quality)
        column.stoi.append(intelligibility)
    column.run = max(column.run, longest_sound_run(reference, codes, hop))
    if codes is not original:
        column.lsd.append(distances(original, codes, spec, levels)[0])
    column.frames += spec.frames(len(codes))


def speed_cells(chunk: Path, full: Path | None, test: Split, chosen: list, rounds: int, steps: int) -> dict:
    """bits/sample (arrun score of ``full`` on the chosen clips), RTF of arrun bench (best of ``rounds``) and of
    arrun vocode on the first chosen sentence."""
    cells = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "clips"
        folder.mkdir()
        for i, _, _ in chosen:
            write_wav(folder / f"clip-{i:03d}.wav", test.sequence(i))
        if full is not None and full.exists():
            cells["bits"] = f"{arrun_json('score', str(full), str(folder))['bits_per_dim']:.3f}"
        best = max(arrun_json("bench", str(chunk), "--steps", str(steps))["tokens_per_s"] for _ in range(rounds))
        cells["bench"] = f"{RATE / best:.2f}"
        sentence = next(i for i, text, word in chosen if not word)
        record = arrun_json("vocode", str(chunk), str(folder / f"clip-{sentence:03d}.wav"), "--out", f"{tmp}/v.wav")
        cells["vocode"] = f"{record['real_time_factor']:.2f}"
    return cells


def spectrogram_png(panels: list[np.ndarray], spec) -> bytes:
    """Mu-law codes (T,) of each method -> one grayscale PNG: a spectrogram per method stacked top to bottom
    (low frequencies at the bottom of each, white = loud: 10 log10 power from 90 dB below the loudest bin of
    the first panel up to it), a white line between them."""
    powers = [log_power(mulaw_decode(codes), spec).T[::-1] for codes in panels]      # (K, F) each, high bins first
    top = powers[0].max()
    gray = [np.clip((p - top + 90) / 90 * 255, 0, 255).astype(np.uint8) for p in powers]
    line = np.full((2, gray[0].shape[1]), 255, np.uint8)
    return png_encode(np.concatenate([x for g in gray for x in (g, line)][:-1]))        # (n K + 2 (n - 1), F)


def write_figures(folder: Path, name: str, rebuilt: dict[str, np.ndarray], spec) -> list[Path]:
    """One clip as each method made it: folder/NAME-METHOD.wav, and folder/NAME-spectrogram.png with the
    methods top to bottom in ``rebuilt``'s order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for method, codes in rebuilt.items():
        paths.append(folder / f"{name}-{method.replace('/', '-')}.wav")
        write_wav(paths[-1], codes)
    paths.append(folder / f"{name}-spectrogram.png")
    paths[-1].write_bytes(spectrogram_png(list(rebuilt.values()), spec))
    return paths


def run(chunks: list[Path], fulls: list[Path | None], scope: str,
        figures: Path | None = None) -> tuple[dict[str, Column], dict]:
    """Every figure of the table over the clips of ``selection(scope)`` -> (method name -> Column, facts).
    ``figures``: write the first chosen sentence's WAVs and spectrograms there (``write_figures``)."""
    test = load_voices().test
    chosen, quick = selection(scope), scope == "quick"
    models = [open_model(chunk, threads=1) for chunk in chunks]
    if missing := [str(chunk) for chunk, model in zip(chunks, models) if not model.info.features]:
        raise SystemExit(f"{', '.join(missing)} takes no features: give vocoder graphs (exported with mel_bins > 0)")
    spec, levels = models[0].info.features, models[0].info.vocab_size
    recognise = Recogniser(BENCH_WORDS)
    names = [label(chunk) for chunk in chunks]
    columns = {"original": Column(), "Griffin-Lim": Column(), **{name: Column(draws=WORD_SEEDS) for name in names}}
    audio_seconds, start = 0.0, time.perf_counter()
    first_sentence = next((k for k, _, word in chosen if not word), None)
    for i, text, _ in chosen:
        original = test.sequence(i)                                                   # (T,)
        frames = mulaw_features(original, spec, levels)                               # (F, M)
        rebuilt = {"original": original, "Griffin-Lim": griffin_lim(frames, spec, len(original), i, levels)}
        for name, model in zip(names, models):
            rebuilt[name] = resynthesise(model, frames, len(original), seed=i)[0]
            if text in BENCH_WORDS:  # the other draws, for the recognition rate only
                for draw in range(1, WORD_SEEDS):
                    codes = resynthesise(model, frames, len(original), seed=i + 1000 * draw)[0]
                    columns[name].words.append(recognise(mulaw_decode(codes).astype(np.float64)) == text)
        if figures is not None and i == first_sentence:
            write_figures(figures, f"held-out-{i:03d}", rebuilt, spec)
        for name, codes in rebuilt.items():
            measure(columns[name], recognise, codes, original, text, spec.hop, spec, levels)
        audio_seconds += len(original) / RATE
    codes = np.concatenate([test.sequence(i) for i, _, _ in chosen])
    columns["original"].cells = {"xz": f"{xz_bits(codes):.3f}",
                                 "flac": f"{flac_bits(Split(codes, np.array([0, len(codes)]), None), RATE, 256):.3f}"}
    for name, chunk, full in zip(names, chunks, fulls):
        columns[name].cells = speed_cells(chunk, full, test, chosen, 1 if quick else 3, 2000 if quick else 8000)
    facts = {"clips": len(chosen), "seconds": audio_seconds, "wall": time.perf_counter() - start}
    return columns, facts


def table(columns: dict[str, Column], facts: dict) -> str:
    """The markdown table: one row per figure, goals beside, one column per method."""
    original = columns["original"]
    base = np.mean(original.words) if original.words else float("nan")
    gl = columns["Griffin-Lim"]

    def mean(xs: list[float], digits: int = 2) -> str:
        return f"{np.nanmean(xs):.{digits}f}" if xs else "—"

    def words(c: Column) -> str:
        if not c.words:
            return "—"
        if c.draws == 1:
            return f"{np.mean(c.words):.0%}"
        by_draw = [np.mean(c.words[d::c.draws]) for d in range(c.draws)]
        return f"{np.mean(c.words):.0%} ({min(by_draw):.0%}–{max(by_draw):.0%} by seed)"

    rows = [
        (f"words recognised ({len(original.words)} clips; a vocoder {WORD_SEEDS} draws each)",
         f"≥ {0.9 * base:.0%} (90 % of the originals')", words),
        (f"wide-band PESQ ({len(gl.pesq)} sentence clips)", "≥ 2.5", lambda c: mean(c.pesq)),
        ("STOI", f"≥ {np.mean(gl.stoi) - 0.05:.2f} (Griffin-Lim's − 0.05)" if gl.stoi else "within 0.05 of Griffin-Lim",
         lambda c: mean(c.stoi)),
        (f"longest run of one sample where the original has sound ({facts['clips']} clips)", "≤ 20 ms",
         lambda c: f"{1000 * c.run / RATE:.1f} ms"),
        ("log-spectral distance (not a goal)", "—", lambda c: f"{sum(c.lsd) / c.frames:.2f} dB" if c.lsd else "—"),
        ("bits/sample given the features (`arrun score`)",
         f"≤ 3.8, below xz -9e {original.cells['xz']} and FLAC -8 {original.cells['flac']}",
         lambda c: c.cells.get("bits", "—")),
        ("real-time factor, `arrun bench` of the chunk graph (1 thread, batch 1)", "≤ 1.0",
         lambda c: c.cells.get("bench", "—")),
        ("real-time factor, `arrun vocode` end to end", "—", lambda c: c.cells.get("vocode", "—")),
    ]
    lines = ["| figure | goal | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    lines += [f"| {name} | {goal} | " + " | ".join(cell(c) for c in columns.values()) + " |" for name, goal, cell in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chunks", nargs="*", type=Path, default=[ROOT / "models" / "speech-vocoder" / "chunk.onnx"],
                        help="Vocoder chunk graphs (or step graphs) to measure.")
    parser.add_argument("--full", nargs="*", type=Path, default=None,
                        help="Full graphs to score, one per chunk graph (default: full.onnx beside each).")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--quick", action="store_true", help="4 words, 1 sentence, 1 bench round: a smoke run.")
    scope.add_argument("--all", action="store_true", help="Every held-out clip (all 60 items, both speeds).")
    parser.add_argument("--figures", type=Path, default=None,
                        help="Write the first held-out sentence here: a WAV per method and their spectrograms (PNG).")
    args = parser.parse_args()
    fulls = args.full if args.full is not None else [chunk.parent / "full.onnx" for chunk in args.chunks]
    if len(fulls) != len(args.chunks):
        parser.error(f"--full gives {len(fulls)} graphs for {len(args.chunks)} chunk graphs; give one per chunk graph")
    if missing := [str(chunk) for chunk in args.chunks if not chunk.is_file()]:
        parser.error(f"no such graph: {', '.join(missing)}")
    if len({label(chunk) for chunk in args.chunks}) != len(args.chunks):
        parser.error("two chunk graphs share a folder and file name; give each its own folder")
    columns, facts = run(args.chunks, fulls, "quick" if args.quick else "all" if args.all else "bench",
                         args.figures)
    print(f"Held-out voice {HELD_OUT_VOICE} of `voices`: {facts['clips']} clips, {facts['seconds']:.1f} s of audio; "
          f"{date.today()}, {platform.processor() or platform.machine()}, {facts['wall']:.0f} s for resynthesis and "
          f"measures.\n")
    print(table(columns, facts))


if __name__ == "__main__":
    main()
