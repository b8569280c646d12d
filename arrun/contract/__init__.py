"""The contract between artrain, arexport and arrun, importing neither torch nor onnxruntime.

- ``schema``: the .onnx metadata keys, graph I/O names, format version, ``ModelInfo`` and ``StateSpec``;
- ``codecs``: how data becomes tokens and back (text, mu-law, WAV, PNG, .npy, resampling);
- ``features``: the log-mel analysis a vocoder is conditioned on (``FeatureSpec``, ``log_mel``);
- ``scoring``: the held-out scoring rule (chunks) and the bits/dim arithmetic;
- ``errors``: the one error root; ``edge``: the one command-line edge; ``files``: the one atomic write.
"""
