"""The `replay` command: one small function per verb."""
from __future__ import annotations

import sys

USAGE = """usage: replay VERB [ARGS]

verbs:
  run [hydra flags] [overrides]   train over an experience stream with replay (replay run --help)

examples:
  replay run
  replay run buffer=parametric groupby=class buffer.max_size=200
  replay run -m buffer.max_size=100,200,500
"""


def run(args: list[str]) -> int:
    from replaycli.runner import hydra_main

    sys.argv = ["replay run", *args]
    hydra_main()
    return 0


VERBS = {"run": run}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    verb = argv[0]
    if verb not in VERBS:
        print(f"error: unknown verb {verb!r}; allowed: {', '.join(VERBS)}", file=sys.stderr)
        return 2
    return VERBS[verb](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
