"""An artrain model family outside the artrain repository: a stack of diagonal linear recurrences."""
from .model import DiagonalRecurrence, DiagonalRecurrenceConfig

__all__ = ["DiagonalRecurrence", "DiagonalRecurrenceConfig"]
