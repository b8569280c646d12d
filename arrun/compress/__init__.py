"""Lossless compression with a model: ``arrun compress`` and ``arrun decompress``.

The step graph gives every element a distribution; a range coder (constriction's queue coder) spends about
-log2 p(element) bits on it, and the decoder, stepping the same model on the elements it has decoded so far,
recovers them. Both sides make exactly the same ``Stepper.step`` calls (CPU provider, one intra-op thread, the
same batch shapes and inputs) and the same numpy calls after them, so the floats, the probabilities and the
coder's integer tables agree bit for bit.

One module per part:
- ``digits``: an element as base-256 digits coded against the head's CDF (needs outputs and a head, no model);
- ``loop``: the step loop both sides run, chunks side by side in a batch;
- ``container``: the .arz container and its header;
- ``workers``: ``compress`` and ``decompress``, which the CLI calls (``decompress`` is ``unpack``,
  ``check_archive`` and ``decode``, then the one write).
How a file becomes elements and the bytes around them is its data kind's (``arrun.kinds``: ``frame`` and
``unframe``): text is its characters, a WAV its samples, a .npy its levels, every other byte kept verbatim.

The floats depend on the onnxruntime and numpy builds and the CPU's instruction set: decompress with the
versions that compressed, on a CPU of the same kind. A mismatch is caught by the checksum, and nothing is written.
"""
from .container import CONTAINER_VERSION, MAGIC, pack, unpack
from .digits import decode_elements, digits_of, encode_elements
from .loop import run_chunks
from .workers import EXTRA, check_archive, compress, decode, decompress

__all__ = ["CONTAINER_VERSION", "EXTRA", "MAGIC", "check_archive", "compress", "decode", "decode_elements",
           "decompress", "digits_of", "encode_elements", "pack", "run_chunks", "unpack"]
