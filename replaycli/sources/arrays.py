"""`benchmark=arrays`: a user's .npz of x_train, y_train, x_test, y_test (optional t_train, t_test)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from replaycli.data.inputs import Samples, images_first, labels, tensor
from replaycli.data.protocols import with_protocol
from replaycli.data.stream import Benchmark
from replaycli.errors import ConfigError, choice
from replaycli.generators import by_task, ni_benchmark, split_samples

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@with_protocol
def Arrays(
    path: str | Path,
    n_experiences: int | None = None,
    return_task_id: bool = False,
    seed: int | None = None,
    class_order: Sequence[Any] | None = None,
    per_exp_classes: Mapping[int, int] | None = None,
    scenario: str = "nc",
) -> Benchmark:
    """`benchmark=arrays path=data.npz`: `x_train, y_train, x_test, y_test` (any shape and
    dtype; integer labels, remapped to 0..K-1), optional `t_train, t_test` (task labels: one
    experience per task). Without them, `scenario=nc` splits the classes over `n_experiences`,
    `ni` deals the samples over them (all classes in each)."""
    choice("scenario", scenario, ("nc", "ni"))
    path = Path(path).expanduser()
    arrays = read_npz(path)
    split = []
    for part in ("train", "test"):
        x = images_first(tensor(arrays[f"x_{part}"], f"{path}: x_{part}"))
        y = labels(arrays[f"y_{part}"], f"{path}: y_{part}", len(x))
        t = labels(arrays[f"t_{part}"], f"{path}: t_{part}", len(x)) if f"t_{part}" in arrays else None
        split.append(Samples(x, y, t))
    if split[0].t is not None:
        return by_task("Arrays", *split)
    if n_experiences is None:
        raise ConfigError(f"n_experiences=null: n_experiences is needed: {path} has no task labels (t_train, t_test)")
    if scenario == "ni":
        return ni_benchmark(split[0], split[1], n_experiences, return_task_id, seed=seed, name="Arrays")
    return split_samples(
        "Arrays", split[0], split[1], n_experiences, return_task_id, seed, class_order, per_exp_classes
    )


def read_npz(path: Path) -> dict[str, Any]:
    """The arrays of the .npz at `path` this source reads; ConfigError when it has not the four."""
    import numpy as np

    if Path(path).exists() and not Path(path).is_file():  # a FIFO would block the read for ever; a device, worse
        raise ConfigError(f"path={path} is not a regular file; allowed: an .npz file with {', '.join(NPZ_KEYS)}")
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"path={path} does not exist; allowed: an .npz file with {', '.join(NPZ_KEYS)}") from None
    except Exception as e:  # noqa: BLE001 (numpy: not a zip, a pickle, a bad header)
        raise ConfigError(f"path={path} is not a readable .npz file ({type(e).__name__}: {e})") from None
    with npz:
        keys = set(npz.files)
        missing = [k for k in NPZ_KEYS if k not in keys]
        if missing:
            raise ConfigError(
                f"path={path} has no {missing[0]}; allowed: an .npz with {', '.join(NPZ_KEYS)} "
                f"(and optional t_train, t_test); it has {', '.join(sorted(keys)) or 'nothing'}"
            )
        if ("t_train" in keys) != ("t_test" in keys):
            raise ConfigError(f"path={path} has only one of t_train, t_test; allowed: both or neither")
        check_expanded(path, npz, [k for k in keys if k in NPZ_KEYS or k in ("t_train", "t_test")])
        try:
            return {k: npz[k] for k in keys if k in NPZ_KEYS or k in ("t_train", "t_test")}
        except ValueError as e:  # an object array (pickled)
            raise ConfigError(f"path={path}: {e}") from None


def check_expanded(path: Path, npz: Any, keys: list[str]) -> None:
    """Refuse, before reading, an .npz whose arrays would not fit in the memory free now: its
    compressed members may expand a thousandfold (the zip records each one's size)."""
    import os

    sizes = {i.filename: i.file_size for i in npz.zip.infolist()}
    total = sum(sizes.get(f"{k}.npy", 0) for k in keys)
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system that says
        return
    if total > free:

        def size(n: float) -> str:
            return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"

        raise ConfigError(
            f"path={path} expands to {size(total)} of arrays ({size(Path(path).stat().st_size)} on disk), more "
            f"than the {size(free)} of memory free; allowed: arrays that fit in memory, or benchmark=folder for "
            "data larger than memory"
        )
