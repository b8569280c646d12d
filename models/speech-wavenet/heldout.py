"""Write the `voices` test split (the held-out voice ked_diphone, 120 clips) as mu-law WAVs, one subfolder per
class, so `arrun score` measures the card's figures:

    python models/speech-wavenet/heldout.py /tmp/heldout
    arrun score models/speech-wavenet/full.onnx /tmp/heldout/labelled --json   # each clip under its class
    arrun score models/speech-wavenet/full.onnx /tmp/heldout/flat --json       # all unconditioned

``flat/`` holds the same clips without class folders (no --condition: the unconditioned class);
``words/`` only the word clips, flat; ``labelled_words/`` those under their words (a 30-word model scores it).

    python models/speech-wavenet/heldout.py --hear sample-0.wav ...

prints, per WAV, the word pocketsphinx hears among the 30 (``benchmarks/bench_speech.py``'s recogniser) and
its RMS per 100 ms.
"""
from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np

from arrun.contract.codecs import mulaw_decode, to_pcm16
from artrain.voices import SENTENCE_CLASS, load_voices


def write(path: Path, codes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setparams((1, 2, 16000, 0, "NONE", "not compressed"))
        w.writeframes(to_pcm16(mulaw_decode(codes)))


def main(out: Path) -> None:
    data = load_voices()
    test = data.test
    for i in range(len(test)):
        name = data.class_names[int(test.labels[i])]
        write(out / "labelled" / name / f"{i:03d}.wav", test.sequence(i))
        write(out / "flat" / f"{i:03d}.wav", test.sequence(i))
        if name != SENTENCE_CLASS:
            write(out / "words" / f"{i:03d}.wav", test.sequence(i))
            write(out / "labelled_words" / name / f"{i:03d}.wav", test.sequence(i))
    print(f"{len(test)} clips into {out}")


def hear(paths: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from bench_speech import Recogniser

    from artrain.data import SPEECH_WORDS
    recognise = Recogniser(tuple(SPEECH_WORDS))
    for path in paths:
        with wave.open(path) as w:
            x = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768  # (T,) in [-1, 1)
        rms = [np.sqrt(np.mean(x[i:i + 1600] ** 2)) for i in range(0, len(x) - 1599, 1600)]
        print(f"{path}: heard {recognise(x)!r}; RMS per 100 ms {' '.join(f'{r:.2f}' for r in rms)}")


if __name__ == "__main__":
    hear(sys.argv[2:]) if sys.argv[1] == "--hear" else main(Path(sys.argv[1]))
