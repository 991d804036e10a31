"""Argument parsing for the verbs that read outputs (inspect, compare, plot): argparse whose
errors are one-line ConfigErrors (exit 2), not a usage dump."""

from __future__ import annotations

import argparse

from replaycli.errors import ConfigError


class ArgParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}")


def keys(values: list[str] | None) -> list[str]:
    """`--by a --by b,c` -> ['a', 'b', 'c']."""
    return [k.strip() for v in values or [] for k in v.split(",") if k.strip()]


def label_option(p: ArgParser, what: str) -> None:
    """`--label OLD=NEW`, repeatable: display names (replaycli.outputs.compare.displayed)."""
    p.add_argument(
        "--label",
        action="append",
        metavar="OLD=NEW",
        help=f"{what}, e.g. --label der_seq_mnist=DER --label buffer.max_size=memory",
    )
