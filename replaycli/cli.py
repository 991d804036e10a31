"""The `replay` command: one small function per verb."""
from __future__ import annotations

import sys

USAGE = """usage: replay VERB [ARGS]

verbs:
  run [hydra flags] [overrides]   train over an experience stream with replay (replay run --help)
  inspect PATH [--json]           what a run, a sweep or an outputs directory holds
  compare PATH... [--by KEY]      runs grouped by config keys: mean, std and n over seeds
  plot PATH                       PNG figures of a run or a sweep, written into it

examples:
  replay run
  replay run buffer=parametric groupby=class buffer.max_size=200
  replay run -m buffer.max_size=100,200,500
  replay inspect outputs
  replay compare outputs/sweeps/<sweep> --by buffer.max_size
"""


def run(args: list[str]) -> int:
    from replaycli.runner import hydra_main

    sys.argv = ["replay run", *args]
    hydra_main()
    return 0



def inspect(args: list[str]) -> int:
    from replaycli.inspecting import main as inspect_main

    return inspect_main(args)


def compare(args: list[str]) -> int:
    from replaycli.compare import main as compare_main

    return compare_main(args)


def plot(args: list[str]) -> int:
    from replaycli.plots import main as plot_main

    return plot_main(args)


VERBS = {"run": run, "inspect": inspect, "compare": compare, "plot": plot}


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
