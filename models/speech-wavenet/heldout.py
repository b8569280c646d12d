"""Write the `voices` test split (the held-out voice ked_diphone, 120 clips) as mu-law WAVs, one subfolder per
class, so `arrun score` measures the card's figures:

    python models/speech-wavenet/heldout.py /tmp/heldout
    arrun score models/speech-wavenet/full.onnx /tmp/heldout/labelled --json   # each clip under its class
    arrun score models/speech-wavenet/full.onnx /tmp/heldout/flat --json       # all unconditioned

``flat/`` holds the same clips without class folders (no --condition: the unconditioned class);
``words/`` only the word clips, flat.
"""
from __future__ import annotations

import sys
import wave
from pathlib import Path

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
    print(f"{len(test)} clips into {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
