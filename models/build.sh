#!/usr/bin/env bash
# Rebuild one shipped model, after `bash .ci/setup`:
#   bash models/build.sh NAME             (NAME: a folder of models/ holding a train.json)
#   bash models/build.sh --export NAME    re-export only, from the checkpoint shipped in models/NAME (no training)
# Trains with artrain fit and the options committed beside the model (train.json names the family, the
# data and every option), into runs/NAME, ships its checkpoint (model.safetensors and config.json, so every
# arexport command works on models/NAME), then exports the step and full graphs into models/NAME, and a
# softmax WaveNet's chunk graph (each verified against PyTorch; a mixture head is sampled in numpy, no chunk graph), and the step graph's int8 and fp16 variants (each
# gated on the validation split; one that fails its gate is left out).
set -euo pipefail
cd "$(dirname "$0")/.."
export_only=0
if [ "${1:-}" = --export ]; then export_only=1; shift; fi
name=${1:?usage: bash models/build.sh [--export] NAME (one of: $(cd models && ls -d */ | tr -d / | tr '\n' ' '))}
[ -f "models/$name/train.json" ] || { echo "models/$name/train.json does not exist" >&2; exit 2; }
bin=.venv/bin
checkpoint="models/$name"
if [ "$export_only" = 0 ]; then
  "$bin/artrain" fit --config "models/$name/train.json" --out "runs/$name"
  cp "runs/$name/model.safetensors" "runs/$name/config.json" "models/$name/"
fi
"$bin/arexport" onnx "$checkpoint" --graph step --out "models/$name/step.onnx" --force
"$bin/arexport" onnx "$checkpoint" --graph full --out "models/$name/full.onnx" --force
if grep -q '"family": "wavenet"' "models/$name/train.json" && ! grep -q '"mixtures"' "models/$name/train.json"; then
  "$bin/arexport" onnx "$checkpoint" --graph chunk --out "models/$name/chunk.onnx" --force
fi
for precision in int8 fp16; do  # a variant that fails its gate is left out (the error says why)
  rm -f "models/$name/step.$precision.onnx"  # never a variant of the previous weights
  "$bin/arexport" quantize "models/$name/step.onnx" "$checkpoint" --precision "$precision" --force \
    || echo "models/$name: no $precision variant" >&2
done
