"""`replay prune PATH... [--failed-days N] [--yes]`: the disk a finished run no longer needs.

What goes: the checkpoints of complete runs (`checkpoint.pt`, `checkpoints/`: resume needs them
only while a run is unfinished; `keep_checkpoint=none` does this at the end of a run), and whole
runs that failed (summary.json or a sweep job's failure.json says so) at least `--failed-days`
days ago (default 7). What stays: every other file of a complete run, runs that are incomplete or
interrupted (resumable), a run in use by a live process (its lock), and a directory holding
anything replaycli did not write. Nothing is removed without `--yes`: the default lists what
would go and how much it frees. Torch-free.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from replaycli.outputs import sweepdir
from replaycli.outputs.files import disk_bytes
from replaycli.outputs.rundir import CHECKPOINT, CHECKPOINTS


def failed_since(run: Path) -> float | None:
    """When the run failed (seconds since the epoch: its record's last change); None unless failed."""
    if sweepdir.status(run) != "failed":
        return None
    records = [run / name for name in ("summary.json", sweepdir.FAILURE) if (run / name).is_file()]
    return max(p.stat().st_mtime for p in records) if records else None


def plan(paths: list[str | Path], failed_days: float, now: float | None = None) -> list[dict[str, Any]]:
    """What `replay prune` removes from `paths`: {path, bytes, why} for each file or directory."""
    from replaycli.outputs.compare import run_dirs

    now = time.time() if now is None else now
    items = []
    for run in run_dirs(paths):
        if run.is_symlink():  # reached through a link: outside the tree given
            continue
        state = sweepdir.status(run)
        if state == "complete":
            for name in (CHECKPOINT, CHECKPOINTS):
                if (run / name).exists():
                    items.append(
                        {"path": run / name, "bytes": disk_bytes(run / name), "why": "a complete run's checkpoint"}
                    )
            continue
        since = failed_since(run)
        if since is not None and now - since >= failed_days * 86400:
            other = sweepdir.foreign(run, False)
            if other is None:
                days = (now - since) / 86400
                items.append({"path": run, "bytes": disk_bytes(run), "why": f"a run that failed {days:.0f} days ago"})
    return items


def apply(items: list[dict[str, Any]]) -> list[str]:
    """Remove `items`; each run is held while its files go (a run being resumed right now is left,
    and said); returns what was left and why."""
    from replaycli.errors import ConfigError
    from replaycli.run.runner import held

    left = []
    for item in items:
        path: Path = item["path"]
        run = path if path.name not in (CHECKPOINT, CHECKPOINTS) else path.parent
        try:
            with held(run):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        except ConfigError as e:  # in use: a live resume of it
            left.append(str(e))
    return left


def megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def main(args: list[str]) -> int:
    """`replay prune PATH... [--failed-days N] [--yes]`."""
    from replaycli.errors import ConfigError
    from replaycli.outputs.terminal import CONTROL
    from replaycli.outputs.verbargs import ArgParser

    p = ArgParser(
        prog="replay prune",
        description="Remove the checkpoints of complete runs and runs that failed long ago (a dry run without --yes).",
    )
    p.add_argument("paths", metavar="PATH", nargs="+", help="run, sweep or outputs directories")
    p.add_argument(
        "--failed-days", type=float, default=7.0, metavar="N", help="remove runs that failed N days ago or more (7)"
    )
    p.add_argument("--yes", action="store_true", help="remove them (default: list what would go)")
    a = p.parse_args(args)
    if not a.failed_days >= 0:
        raise ConfigError(f"--failed-days {a.failed_days} is not allowed; allowed: a number of days >= 0")
    items = plan(a.paths, a.failed_days)
    total = sum(i["bytes"] for i in items)
    for i in items:
        path = CONTROL.sub("?", str(i["path"]))
        print(f"{'removed' if a.yes else 'would remove'} {path} ({megabytes(i['bytes'])}): {i['why']}")
    left = apply(items) if a.yes else []
    for why in left:
        print(f"left: {why}")
    if not items:
        print("nothing to prune: no complete run keeps a checkpoint, no run failed long enough ago")
    elif a.yes:
        print(f"freed {megabytes(total)} in {len(items) - len(left)} of {len(items)}")
    else:
        again = f"replay prune {' '.join(a.paths)} --yes"
        print(f"{megabytes(total)} in {len(items)}; nothing was removed: {again} removes them")
    return 0
