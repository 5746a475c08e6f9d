"""Exit codes, and the one place where exceptions become a single line on stderr.

0    success
1    runtime failure: every backend failed, a deadline passed, a stream broke, an I/O error
2    usage or bad input: unknown option, bad value, invalid intent, unreadable or invalid config
3    no route: no configured backend can serve the intent (the line says why for each)
4    verification failed: a receipt or the ledger does not verify
130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

import typer

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_NO_ROUTE",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_VERIFY",
    "CliError",
    "exit_code_for",
    "read_failure",
    "report",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NO_ROUTE = 3
EXIT_VERIFY = 4
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """An error the CLI itself detected, with the exit code it means."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for an exception."""
    from intentmesh.errors import (
        ConfigurationError,
        IntentValidationError,
        ReceiptError,
        RoutingError,
    )

    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, typer.Exit):
        return int(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, IntentValidationError | ConfigurationError):
        return EXIT_USAGE
    if isinstance(exc, RoutingError):
        return EXIT_NO_ROUTE
    if isinstance(exc, ReceiptError):
        return EXIT_VERIFY
    return EXIT_FAILURE


def _message(exc: BaseException) -> str:
    from intentmesh.errors import IntentmeshError, NoRouteError

    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, typer.Abort):
        return "aborted"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, NoRouteError) and not exc.rejections:
        return (
            text
            + " Run `intentmesh config init` to write a starter config, or try `intentmesh demo`."
        )
    if isinstance(exc, CliError | IntentmeshError):
        return text
    if isinstance(exc, OSError):
        return f"{exc.strerror or text}" + (f": {exc.filename}" if exc.filename else "")
    return f"internal error ({type(exc).__name__}): {text}; run with --verbose for the trace"


def read_failure(path: object, exc: OSError, what: str = "") -> CliError:
    """``PATH: no such file`` (the one wording for a file a command cannot read), exit 2."""
    from intentmesh.errors import unreadable

    return CliError(f"{what}{path}: {unreadable(exc)}", EXIT_USAGE)


def report(exc: BaseException, verbose: bool) -> int:
    """Print one line (and the trace with ``verbose``) to stderr; return the exit code."""
    code = exit_code_for(exc)
    if verbose and not isinstance(exc, KeyboardInterrupt | CliError):
        traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.write(f"error: {_message(exc)}\n")
    sys.stderr.flush()
    return code


def usage_line(message: str, command_path: str) -> str:
    """A click usage error as one line, pointing at the right ``--help``."""
    return f"error: {' '.join(message.split())} (see `{command_path} --help`)\n"


def wants_verbose(argv: Sequence[str]) -> bool:
    """``--verbose``/``-v`` anywhere before ``--``: known even when parsing fails."""
    for arg in argv:
        if arg == "--":
            return False
        if arg in ("--verbose", "-v"):
            return True
    return False
