"""The one command-line edge of artrain, arexport and arrun.

``run(work)`` calls ``work()`` and turns what escapes into one line on stderr and an exit code:
- ``ARError``: ``error: <message>`` and its exit code (2 usage, 1 runtime, 130 interrupted);
- Ctrl-C, or SIGTERM (what ``kill``, systemd and container runtimes send, handled like Ctrl-C):
  ``error: interrupted; no output was written``, exit 130;
- anything else is a bug: one line naming it, then "rerun with AR_DEBUG=1 for the traceback", exit 1.
With ``AR_DEBUG=1`` every exception propagates with its traceback instead.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable, TypeVar

from .errors import ARError, Interrupted, first_line

T = TypeVar("T")


def debugging() -> bool:
    return os.environ.get("AR_DEBUG") == "1"


def run(work: Callable[[], T]) -> T:
    """The edge: ``work()``'s result, or SystemExit with the exit code after one ``error:`` line."""
    _sigterm_as_interrupt()
    try:
        return work()
    except KeyboardInterrupt:
        if debugging():
            raise
        error = Interrupted("interrupted; no output was written")
    except ARError as e:
        if debugging():
            raise
        error = e
    except Exception as e:
        if debugging():
            raise
        error = ARError(f"unexpected {type(e).__name__}: {first_line(e)}; "
                        "rerun with AR_DEBUG=1 for the traceback and report it")
    sys.stderr.write(f"error: {' '.join(str(error).split())}\n")
    sys.stderr.flush()
    raise SystemExit(error.exit_code)


def _sigterm_as_interrupt() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
