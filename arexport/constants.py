"""arexport's settings that its command line shows or checks before any export runs (option defaults, help
texts, the choices of an option). Torch-free, so `arexport --help` and a typo are quick; the modules that
export, verify and quantize import them from here."""

DEFAULT_OPSET = 18
# Opset -> the oldest onnxruntime that ran every family's step and full graphs (conditional or not)
# within the verify_onnx figures, one throwaway environment per release. 1.14.1 is the first release
# with opset 18; benchmarks/ort_compat.py runs every shipped graph on it, 1.17.3, 1.20.1 and the newest
# release (the README's matrix). 1.15.1 has no opset-19 kernels and 1.16.3 rejects opset 20. Opset 17 is
# not offered: the exporter's down-conversion keeps opset-18 Split attributes, which the checker rejects.
MIN_ONNXRUNTIME = {18: "1.14.1", 19: "1.16.3", 20: "1.17.3"}
SUPPORTED_OPSETS = tuple(MIN_ONNXRUNTIME)

VARIANTS = ("int8", "fp16")  # the precisions `arexport quantize` writes from an fp32 graph

DEFAULT_MAX_LENGTH = 4096  # positions of an onnxruntime-genai export (its KV cache grows to this)
