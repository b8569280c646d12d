"""arrun: sample, score and benchmark exported step graphs on onnxruntime, without torch.

Data flow: ``session`` opens and checks a model (metadata read once through ``contract.schema``, its
data kind through ``kinds``), ``runtime`` holds the one step loop (``Stepper``) that ``generate``,
``score``, ``bench``, ``arexport verify`` and ``benchmarks/`` all drive, ``streams`` a batch of slots that
streams join and leave (the Python API for serving several streams at once), ``sampling`` holds the numpy
samplers, ``outputs`` the sinks; ``commands`` holds the workers and ``cli`` only the Typer edge.
This module imports nothing, so ``arrun.contract`` can be imported without onnxruntime.
"""
