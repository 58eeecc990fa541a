"""The one exception type for mistakes a user can fix (bad flags, files, values)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


class UserError(ValueError):
    """Bad input from the user: the CLIs print its message on one line and exit with status 2.

    The message names the bad value and what is allowed, e.g.
    ``UserError("class id 120 out of range: allowed 0..99")``.
    """


def exit_on_user_error(
    main: Callable[[list[str] | None], int],
) -> Callable[[list[str] | None], int]:
    """Wrap a CLI ``main``: a UserError becomes ``error: <message>`` on stderr and exit status 2.

    Any other exception is a bug and keeps its traceback.
    """

    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    return wrapped
