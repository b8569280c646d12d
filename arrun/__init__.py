"""arrun: sample, score and benchmark exported step graphs on onnxruntime, without torch.

Data flow: ``session`` opens and checks a model (metadata read once through ``schema``), ``generate`` runs
the step loop with ``sampling``'s numpy samplers, ``outputs`` writes what it produced, ``score`` and
``bench`` reuse the same loop; ``commands`` holds the workers and ``cli`` only the Typer edge.
"""
