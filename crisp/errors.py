"""The one exception type for mistakes a user can fix, and the CLIs' way of reporting it."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from typing import NoReturn


class UserError(ValueError):
    """Bad input from the user: the CLIs print its message on one line and exit with status 2.

    The message names the bad value and what is allowed, e.g.
    ``UserError("class id 120 out of range: allowed 0..99")``.
    """


Main = Callable[[list[str] | None], int]
"""A console script's entry: ``main(argv) -> exit status``."""


def one_line(text: str) -> str:
    """``text`` on one line: a message quoting a parser's multi-line error keeps its words."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


INTERRUPTED = 130
"""Exit status after Ctrl-C (SIGINT), as a shell reports a process killed by SIGINT."""

BROKEN_PIPE = 141
"""Exit status when the reader of stdout has gone (``| head``), as a shell reports a process
killed by SIGPIPE."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes (an unknown flag, a missing argument, a value its
    ``type`` refuses) are a UserError, so the CLIs print them on one line instead of the usage
    block; ``--help`` still prints the usage."""

    def error(self, message: str) -> NoReturn:
        """Raise ``UserError("<prog>: <message> (see <prog> --help)")``."""
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


def exit_on_user_error(main: Main) -> Main:
    """Wrap a CLI ``main``: a UserError becomes ``error: <message>`` on stderr and exit status 2;
    Ctrl-C becomes one line (the KeyboardInterrupt's message, or ``interrupted``) and status
    `INTERRUPTED`; a reader of stdout that has gone (``accel-sim layers ... | head``) ends the
    command quietly with status `BROKEN_PIPE`.

    Any other exception is a bug and keeps its traceback.
    """

    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except UserError as err:
            print(f"error: {one_line(str(err))}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as err:
            print(str(err) or "interrupted", file=sys.stderr)
            return INTERRUPTED
        except BrokenPipeError:
            # stdout's last flush at exit must not fail again (Python's signal docs, SIGPIPE)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return BROKEN_PIPE

    return wrapped


def command_line(parser: Callable[[], argparse.ArgumentParser]) -> Main:
    """A console-script ``main(argv) -> exit status`` for a parser whose subcommands set ``func``.

    ``func(args)`` returns the exit status; a UserError becomes one line and status 2.
    """

    @exit_on_user_error
    def main(argv: list[str] | None = None) -> int:
        args = parser().parse_args(argv)
        return args.func(args)

    return main
