"""arexport: a model (an artrain checkpoint, or any ``ARModel`` from Python) -> self-describing ONNX graphs
(step with explicit state, full, chunk), verified.

    from arexport import DataInfo, export_model
    export_model(model, DataInfo("my-text", "text", levels=96, alphabet=...), "step.onnx")

The names below load on first use (PEP 562), so ``import arexport`` (and the CLI's argument checks) do not
import torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"  # keep in step with pyproject.toml

_EXPORTS = {  # public name -> the module that owns it
    "ExportError": ".verify", "ParityError": ".verify", "VerifyReport": ".verify", "verify_onnx": ".verify",
    "DEFAULT_OPSET": ".export", "SUPPORTED_OPSETS": ".export", "ExportResult": ".export",
    "export_model": ".export", "export_onnx": ".export", "DataInfo": "artrain.checkpoint",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'arexport' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
