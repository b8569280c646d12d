"""python -m arrun: the same as the ``arrun`` command."""
from .cli import main

main()
