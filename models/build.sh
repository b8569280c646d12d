#!/usr/bin/env bash
# Rebuild one shipped model from scratch, after `bash .ci/setup`:
#   bash models/build.sh digits-pixelcnn|pydoc-transformer|speech-wavenet
# Trains with artrain fit and the options committed beside the model (train.json), into runs/NAME,
# then exports the step and full graphs into models/NAME (each verified against PyTorch).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: bash models/build.sh digits-pixelcnn|pydoc-transformer|speech-wavenet}
case "$name" in
  digits-pixelcnn)   family=pixelcnn;    data=digits ;;
  pydoc-transformer) family=transformer; data=text ;;
  speech-wavenet)    family=wavenet;     data=speech ;;
  *) echo "unknown model $name" >&2; exit 2 ;;
esac
bin=.venv/bin
"$bin/artrain" fit --model "$family" --data "$data" --config "models/$name/train.json" --out "runs/$name"
"$bin/arexport" onnx "runs/$name" --step-graph --out "models/$name/step.onnx" --force
"$bin/arexport" onnx "runs/$name" --full-graph --out "models/$name/full.onnx" --force
