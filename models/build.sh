#!/usr/bin/env bash
# Rebuild one shipped model from scratch, after `bash .ci/setup`:
#   bash models/build.sh NAME        (NAME: a folder of models/ holding a train.json)
# Trains with artrain fit and the options committed beside the model (train.json names the family, the
# data and every option), into runs/NAME, ships its checkpoint (model.safetensors and config.json, so every
# arexport command works on models/NAME), then exports the step and full graphs into models/NAME, and a
# softmax WaveNet's chunk graph (each verified against PyTorch; a mixture head is sampled in numpy, no chunk graph), and the step graph's int8 and fp16 variants (each
# gated on the validation split; one that fails its gate is left out).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: bash models/build.sh NAME (one of: $(cd models && ls -d */ | tr -d / | tr '\n' ' '))}
[ -f "models/$name/train.json" ] || { echo "models/$name/train.json does not exist" >&2; exit 2; }
bin=.venv/bin
"$bin/artrain" fit --config "models/$name/train.json" --out "runs/$name"
cp "runs/$name/model.safetensors" "runs/$name/config.json" "models/$name/"
"$bin/arexport" onnx "runs/$name" --step-graph --out "models/$name/step.onnx" --force
"$bin/arexport" onnx "runs/$name" --full-graph --out "models/$name/full.onnx" --force
if grep -q '"family": "wavenet"' "models/$name/train.json" && ! grep -q '"mixtures"' "models/$name/train.json"; then
  "$bin/arexport" onnx "runs/$name" --chunk-graph --out "models/$name/chunk.onnx" --force
fi
for precision in int8 fp16; do  # a variant that fails its gate is left out (the error says why)
  "$bin/arexport" quantize "models/$name/step.onnx" "runs/$name" --precision "$precision" --force \
    || echo "models/$name: no $precision variant" >&2
done
