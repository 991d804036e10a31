"""`replay check [--config-dir DIR] [overrides]`: does a run of these overrides resume to the
numbers it would have reached without stopping? In a temporary folder, the run is trained once
through, and once stopped at the start of its middle experience and resumed from its checkpoint
by `replay resume`'s own path (config.yaml read back from disk); the tables must be identical
byte for byte and the final checkpoints value for value. What a new method, buffer policy or
selection strategy must pass before its results are trusted; the suite runs it for every option
that replaycli ships."""

from __future__ import annotations

import tempfile
from pathlib import Path

from omegaconf import DictConfig

from replaycli.errors import ConfigError

USAGE = "usage: replay check [--config-dir DIR] [group=option ...] [key=value ...]"


def main(args: list[str]) -> int:
    """Print one line per compared file, then the verdict; exit 0 when every file is identical."""
    if args in (["-h"], ["--help"]):
        print(
            f"{USAGE}\n  train the run whole, and stopped midway then resumed, in a temporary folder; "
            "compare their tables and checkpoints"
        )
        return 0
    from replaycli.run.cmdline import config_dir

    overrides, extra = config_dir(args)
    flags = [a for a in overrides if a.startswith("-")]
    if flags:
        raise ConfigError(f"check: unknown flag {flags[0]}; {USAGE}")
    n, compared, differences = compare(compose(overrides, extra))
    print(
        f"trained {n} experiences whole, and stopped before experience {n // 2 + 1} then resumed; compared "
        f"{', '.join(compared)}"
    )
    for line in differences:
        print(line)
    print(
        "resume: identical to the uninterrupted run"
        if not differences
        else f"resume: {len(differences)} difference(s) from the uninterrupted run"
    )
    return 0 if not differences else 1


def compose(overrides: list[str], extra: str | None) -> DictConfig:
    """The config `replay run [--config-dir extra] OVERRIDES` runs, without its progress display."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from replaycli.run.cmdline import hydra_message

    search = [f"hydra.searchpath=[file://{Path(extra).absolute()}]"] if extra else []
    with initialize_config_module("replaycli.configs", version_base="1.3"):
        try:
            return hydra_compose("config", overrides=[*overrides, "progress=none", *search])
        except (HydraException, OmegaConfBaseException) as e:
            raise ConfigError(hydra_message(e)) from None


def compare(cfg: DictConfig) -> tuple[int, list[str], list[str]]:
    """The run of `cfg` trained through and stopped-then-resumed: (its experiences, the files
    compared, their differences)."""
    import contextlib
    import io

    import torch

    from replaycli.outputs.rundir import CHECKPOINT
    from replaycli.run.state import first_difference

    with tempfile.TemporaryDirectory(prefix="replay-check-") as tmp:
        whole, cut = Path(tmp) / "whole", Path(tmp) / "cut"
        with contextlib.redirect_stdout(io.StringIO()):  # the runs' own lines name folders about to go
            n = train(cfg, whole, stop_at=None)
            if n < 2:
                raise ConfigError(
                    f"the stream has {n} experience; allowed: at least 2 (a run resumes between experiences)"
                )
            train(cfg, cut, stop_at=n // 2)
            resume(cut, cfg)
        tables = sorted(p.name for p in whole.glob("*.csv"))
        out = [
            f"{name}: differs"
            for name in tables
            if not (cut / name).is_file() or (cut / name).read_bytes() != (whole / name).read_bytes()
        ]
        a, b = (torch.load(d / CHECKPOINT, weights_only=True)["state"] for d in (cut, whole))
        where = first_difference(a, b, "checkpoint")
        return n, [*tables, CHECKPOINT], out + ([f"{where}: differs"] if where else [])


def train(cfg: DictConfig, out: Path, stop_at: int | None) -> int:
    """Run `cfg` into `out`, stopped at the start of experience `stop_at` (None: to the end);
    the number of experiences it finished."""
    from replaycli.outputs.rundir import read_run
    from replaycli.run.runner import Stopped, execute

    try:
        execute(cfg, out, stop_before=stop_at)
    except Stopped:
        pass
    return len(read_run(out).accuracy)


def resume(run_dir: Path, cfg: DictConfig) -> None:
    """`replay resume run_dir`, trusting the targets the user's own command line named."""
    from omegaconf import OmegaConf

    from replaycli.run.rules import targets
    from replaycli.run.runner import resume_run

    trusted = tuple(t for _, t in targets(OmegaConf.to_container(cfg, resolve=True)))
    resume_run(run_dir, trusted)
