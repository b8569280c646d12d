"""arexport: artrain checkpoint -> self-describing ONNX graph (step with explicit state, or full), verified."""
__version__ = "0.1.0"  # keep in step with pyproject.toml

from .verify import ExportError, ParityError, VerifyReport, verify_onnx
from .export import DEFAULT_OPSET, SUPPORTED_OPSETS, ExportResult, export_onnx

__all__ = ["ExportError", "ParityError", "VerifyReport", "verify_onnx", "DEFAULT_OPSET", "SUPPORTED_OPSETS",
           "ExportResult", "export_onnx", "__version__"]
