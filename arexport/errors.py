"""The domain exception of arexport; the CLI turns it into a one-line message and an exit code."""
from artrain.errors import ArtrainError


class ExportError(ArtrainError):
    """Export or verification failed (exit code 1); the message says what and what to do next."""
    exit_code = 1


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (capped), for one-line reports."""
    return (str(e).strip().splitlines() or [""])[0][:300]
