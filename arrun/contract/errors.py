"""The one error root of artrain, arexport and arrun.

Library code raises these; only the command-line edge (``edge.run``) turns them into one
``error: what is wrong; what to do`` line on stderr and an exit code.
"""


class ARError(Exception):
    """A problem the user can act on (exit code 1); the message is one line: what is wrong; what to do."""
    exit_code = 1


class UsageError(ARError):
    """Bad arguments or input files given by the user (exit code 2)."""
    exit_code = 2


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (onnxruntime's run to many lines), cut to ``limit``."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]


class Interrupted(ARError):
    """Ctrl-C or SIGTERM stopped the command (exit code 130); the message says what was kept."""
    exit_code = 130
