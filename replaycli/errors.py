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


def integer(key: str, value: Any, minimum: int = 1, maximum: int | None = None, otherwise: str = "") -> int:
    """`value` if it is an int in [`minimum`, `maximum`], else a ConfigError naming `key` (and
    `otherwise`, a value allowed beside the integers: `auto`)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        what = (
            ("a positive integer" if minimum == 1 else f"an integer >= {minimum}")
            if maximum is None
            else (f"an integer in [{minimum}, {maximum}]")
        )
        raise ConfigError(f"{key}={value!r} must be {what}" + (f", or {otherwise}" if otherwise else ""))
    return value


MAX_BATCH = 2**20  # samples one batch may hold: a batch, and an epoch's positions, are built in memory


def batch(key: str, value: Any) -> int:
    """`value` if it is a batch size, an int in [1, MAX_BATCH], else a ConfigError naming `key`."""
    return integer(key, value, 1, MAX_BATCH)


def choice(key: str, value: Any, allowed: tuple) -> Any:
    """`value` if it is one of `allowed`, else a ConfigError naming `key` and the allowed values
    (None written null and booleans lowercase, as in YAML)."""
    if value not in allowed:
        names = ", ".join("null" if a is None else str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)
        raise ConfigError(f"{key}={value!r} is not allowed; allowed: {names}")
    return value


def flag(key: str, value: Any) -> bool:
    """`value` if it is true or false, else a ConfigError naming `key`."""
    if value is not True and value is not False:
        raise ConfigError(f"{key}={value!r} is not allowed; allowed: true, false")
    return value


def number(key: str, value: Any, minimum: float = 0.0, below: float = math.inf) -> float:
    """`value` as a float if it is a finite number in [`minimum`, `below`), else a ConfigError naming `key`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value < below:
        what = f"a finite number >= {minimum:g}" if below == math.inf else f"a number in [{minimum:g}, {below:g})"
        raise ConfigError(f"{key}={value!r} must be {what}")
    return float(value)


def fraction(key: str, value: Any) -> float:
    """`value` as a float if it is a number strictly between 0 and 1, else a ConfigError naming `key`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(f"{key}={value!r} must be a fraction in (0, 1), e.g. 0.1")
    return float(value)
