"""python -m arexport: the same as the ``arexport`` command."""
from .cli import main

main()
