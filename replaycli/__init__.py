"""replaycli: a fast experiment runner for replay-based continual learning.

Import from the submodules (`replaycli.benchmarks`, `replaycli.buffers`, `replaycli.selection`,
`replaycli.loaders`, `replaycli.models`); this package imports nothing heavy on its own, so
that `replay inspect` starts instantly.
"""

__version__ = "0.1.0"
