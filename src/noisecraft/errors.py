"""One exception type for bad input, so interfaces can print a one-line message instead of a traceback."""

from __future__ import annotations

from collections.abc import Iterable


class NoisecraftError(ValueError):
    """Bad input from the user: the message says what to fix."""


def check_choice(param: str, value: str, choices: Iterable[str]) -> str:
    """Return `value` if it is one of `choices`, else raise a NoisecraftError listing them."""
    choices = list(choices)
    if value not in choices:
        raise NoisecraftError(f"unknown {param} {value!r}; valid choices: {', '.join(sorted(choices))}")
    return value
