"""Error types shared by the library and the CLI.

Library code raises :class:`UserInputError` (a ``ValueError``) for bad user input. The message always
names the rule, the offending value and the fix; the CLI turns it into a one-line message and exit code 2.
"""

from __future__ import annotations

__all__ = ["UserInputError", "SearchFailedError", "user_error"]


class UserInputError(ValueError):
    """Bad user input: an unknown name, an out-of-range value, a missing file.

    The message states the rule, the value and the fix, e.g.
    ``unknown model 'resnet7': choose one of cnn1d, mlp, ... or 'tv:<torchvision name>'``.
    """


class SearchFailedError(RuntimeError):
    """A search ended without a single successful evaluation (every trial failed)."""


def user_error(what: str, value: object, fix: str) -> UserInputError:
    """Build a :class:`UserInputError` with the house message format.

    Args:
        what: The rule or the thing that was wrong, e.g. ``"unknown importance"``.
        value: The offending value, shown with ``repr``.
        fix: What the user should do instead.

    Returns:
        The error, ready to ``raise``.
    """
    return UserInputError(f"{what} {value!r}: {fix}")
