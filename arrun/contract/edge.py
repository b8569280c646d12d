"""The one command-line edge of artrain, arexport and arrun.

``run(work)`` calls ``work()`` and turns what escapes into one line on stderr and an exit code:
- ``ARError``: ``error: <message>`` and its exit code (2 usage, 1 runtime, 130 interrupted);
- Ctrl-C, or SIGTERM (what ``kill``, systemd and container runtimes send, handled like Ctrl-C):
  ``error: interrupted; no output was written``, exit 130;
- anything else is a bug: one line naming it, then "rerun with AR_DEBUG=1 for the traceback", exit 1.
With ``AR_DEBUG=1`` every exception propagates with its traceback instead. ``typer_app`` builds a Typer
app whose parse errors (an unknown option, a bad choice, a missing argument) are one such line too, with
exit code 2, instead of a usage block, and imports onnxruntime quietly (``quiet_onnxruntime_import``).
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
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
    except BrokenPipeError:  # the reader went away (`arrun sample ... | head`): stop quietly
        _silence_stdout()
        raise SystemExit(141) from None
    except KeyboardInterrupt:
        if debugging():
            raise
        error = Interrupted("interrupted; no output was written")
    except ARError as e:
        if debugging():
            raise
        error = e
    except MemoryError:
        if debugging():
            raise
        error = ARError("out of memory; ask for less at once (a smaller batch, length, model or file)")
    except Exception as e:
        if debugging():
            raise
        error = ARError(f"unexpected {type(e).__name__}: {first_line(e)}; "
                        "rerun with AR_DEBUG=1 for the traceback and report it")
    fail(str(error), error.exit_code)


def fail(message: str, exit_code: int):
    """Print ``error: message`` as one line on stderr and exit with ``exit_code``."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    sys.stderr.flush()
    raise SystemExit(exit_code)


def typer_app(*, prog: str, **kwargs):
    """A ``typer.Typer`` whose command-line parse errors are one ``error:`` line (exit 2) naming the valid
    choices, like every other error, with a ``--version`` option; ``--help`` and the rest of Typer are
    unchanged."""
    import typer
    from typer.core import TyperGroup

    quiet_onnxruntime_import()

    try:
        from typer import _click as click  # typer >= 0.20 vendors click
    except ImportError:  # pragma: no cover - older typer depends on click itself
        import click

    class OneLineErrors(TyperGroup):
        def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
            try:
                code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            except click.exceptions.NoArgsIsHelpError as e:
                sys.stdout.write(e.ctx.get_help() + "\n")
                raise SystemExit(2) from None
            except click.exceptions.UsageError as e:
                where = f"`{e.ctx.command_path} --help`" if e.ctx else "--help"
                fail(f"{_lower_first(e.format_message().replace('Value error, ', ''))}; see {where}", 2)
            except click.exceptions.ClickException as e:
                fail(e.format_message(), e.exit_code)
            except typer.Abort:
                fail("interrupted; no output was written", 130)
            raise SystemExit(code if isinstance(code, int) else 0)

    app = typer.Typer(cls=OneLineErrors, add_completion=False, pretty_exceptions_enable=False,
                      rich_markup_mode=None, **kwargs)

    def show_version(value: bool) -> None:
        if value:
            sys.stdout.write(f"{prog} {package_version()}\n")
            raise typer.Exit()

    @app.callback()
    def root(show: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                       callback=show_version)) -> None:
        pass

    return app


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds onnxruntime as usual and runs its import with file descriptor 2 on /dev/null: onnxruntime's C++
    logger writes warnings while the module loads, before any setting can lower its severity (where the home
    directory cannot be written: "[W:onnxruntime:Default, telemetry_1ds.cc:613] Failed to persist telemetry
    device ID"). Its failures still raise; every later log line is governed by the severity arrun sets."""

    def find_spec(self, name, path=None, target=None):
        if name != "onnxruntime":
            return None
        sys.meta_path.remove(self)  # the one import this is for; then the ordinary finders again
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            run_module = spec.loader.exec_module

            def exec_module(module):
                with _stderr_fd_to_devnull():
                    run_module(module)

            spec.loader.exec_module = exec_module
        return spec


def quiet_onnxruntime_import() -> None:
    """Make the process's first ``import onnxruntime`` quiet on stderr (not with AR_DEBUG=1, which shows
    onnxruntime's log)."""
    if debugging() or "onnxruntime" in sys.modules or any(isinstance(f, _QuietImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietImport())


@contextlib.contextmanager
def _stderr_fd_to_devnull():
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def package_version() -> str:
    """The installed version of this project (artrain, arexport and arrun are released together)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("autoregressive-on-device")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:].rstrip(".")


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _sigterm_as_interrupt() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
