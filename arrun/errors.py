"""The one domain exception of arrun; only ``cli.py`` turns it into a message and an exit code."""


class RunError(Exception):
    """A problem the user can act on; the message is one line saying what is wrong and what to do."""
    exit_code = 1


class UsageError(RunError):
    """Bad arguments or input files given by the user (exit code 2)."""
    exit_code = 2


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (onnxruntime's messages run to many lines), cut to ``limit``."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]
