"""Errors meant for users: they name the bad value and what is allowed; the checks of single
values that constructors share, so each rule has one message."""
from __future__ import annotations

import math
from typing import Any


class ConfigError(ValueError):
    """A bad value given by the user (a config key, an argument, a path).

    The CLI prints its message as one line and exits with code 2; no traceback.
    """


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its class name when it has none)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def integer(key: str, value: Any, minimum: int = 1) -> int:
    """`value` if it is an int >= `minimum`, else a ConfigError naming `key`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{key}={value!r} must be {what}")
    return value


def number(key: str, value: Any, minimum: float = 0.0) -> float:
    """`value` as a float if it is a finite number >= `minimum`, else a ConfigError naming `key`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value < math.inf:
        raise ConfigError(f"{key}={value!r} must be a finite number >= {minimum:g}")
    return float(value)
