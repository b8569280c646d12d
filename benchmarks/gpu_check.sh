#!/usr/bin/env bash
# One-command GPU check: arrun on onnxruntime's CUDA provider against the CPU, artrain on CUDA, artrain under
# torchrun; prints one Markdown table (benchmarks/gpu_check.py says what each row checks). Offline.
#
#   bash benchmarks/gpu_check.sh [--wheel onnxruntime_gpu-*.whl] [--python PY]
#
# --wheel   install this onnxruntime-gpu wheel (no dependencies, no index) into a folder under ${TMPDIR:-/tmp},
#           removed at exit, and put it first on PYTHONPATH, where it shadows a CPU onnxruntime
# --python  the interpreter (default: .venv/bin/python if present, else python3); it needs numpy, typer,
#           onnxruntime and torch; the repository's packages are put on PYTHONPATH
# Exit status: 0 every row passed, 1 some row failed, 2 bad arguments, 3 no NVIDIA GPU here.
set -euo pipefail

usage() { echo "usage: bash benchmarks/gpu_check.sh [--wheel onnxruntime_gpu-*.whl] [--python PY]" >&2; exit "$1"; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wheel=""
python=""
while (($#)); do
  case $1 in
    --wheel) (($# >= 2)) || usage 2; wheel=$2; shift 2 ;;
    --python) (($# >= 2)) || usage 2; python=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "error: unknown argument $1" >&2; usage 2 ;;
  esac
done
if [[ -z $python ]]; then
  if [[ -x $repo/.venv/bin/python ]]; then python=$repo/.venv/bin/python; else python=python3; fi
fi
command -v "$python" >/dev/null || { echo "error: no python at $python; give one with --python" >&2; exit 2; }

pythonpath=$repo
if [[ -n $wheel ]]; then
  [[ -f $wheel ]] || { echo "error: no wheel at $wheel; give the onnxruntime-gpu .whl file" >&2; exit 2; }
  target=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-ort.XXXXXX")
  trap 'rm -rf "$target"' EXIT
  echo "installing $(basename "$wheel") into $target" >&2
  "$python" -m pip install --quiet --no-deps --no-index --target "$target" "$wheel"
  # onnxruntime.preload_dlls looks for the nvidia-* pip packages (CUDA, cuDNN) beside onnxruntime: show it the
  # python's own.
  nvidia=$("$python" -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null || true)
  if [[ -n $nvidia && ! -e $target/nvidia ]]; then ln -s "$nvidia" "$target/nvidia"; fi
  pythonpath=$target:$repo
fi
export PYTHONPATH=$pythonpath${PYTHONPATH:+:$PYTHONPATH}
"$python" "$repo/benchmarks/gpu_check.py"
