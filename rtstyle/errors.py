"""The project's own exception types for mistakes a user can fix: the CLI prints them as one line and exits 2.

Anything raised as (a subclass of) `UserError` is a message for the person at the keyboard: a missing extra,
a model that cannot run on the chosen backend, an input that names nothing. Every other exception is a
bug, and the CLI lets it show its traceback. Library errors that already existed keep their own classes
(`WeightsError`, `ModelNotFound`, `InputError`, ...) and are listed next to `UserError` in `USER_ERRORS`.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem in what was asked for, not in rtstyle; the message says what to do instead.

    A ValueError, so code (and tests) written against the ValueErrors these messages used to be still work.
    """


class BackendUnavailable(UserError, RuntimeError):
    """The backend's library or device is missing; the message says what to install."""


class MissingExtra(UserError, ModuleNotFoundError):
    """An optional dependency is not installed; the message names the pip extra that brings it."""


def require(module: str, extra: str):
    """`import module`, or a MissingExtra saying `pip install -e '.[extra]'` (not a bare ModuleNotFoundError)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtra(f"{module} is needed for this ({e}); install it with `pip install -e '.[{extra}]'`") from None
