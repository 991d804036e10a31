"""Errors meant for users: they name the bad value and what is allowed."""


class ConfigError(ValueError):
    """A bad value given by the user (a config key, an argument, a path).

    The CLI prints its message as one line and exits with code 2; no traceback.
    """
