"""The checkpoint of a run: everything needed to go on after its last finished experience.

Written atomically into the run directory after every experience. It holds plain tensors,
dicts, lists and numbers only, so it loads with `torch.load(..., weights_only=True)`:
- `experiences_done`, `seconds` (training time so far), `resumes`;
- `config_sha256`: the digest of the run's config.yaml, which resume checks;
- `state`: the model's and the optimizer's `state_dict()`, and every attribute of the method,
  the buffer policy (its ids and extras) and the selection strategy, captured by `run/state.py`
  (so a user's method or policy resumes without writing `state_dict`);
- `rng`: torch's global RNG, the run's `torch.Generator` and CUDA's RNGs (nothing draws from
  numpy's or Python's);
- `writer`: the metrics so far (accuracy rows, histograms, per-experience records).

A resumed run restores all of it at an experience boundary, so it goes on with exactly the
numbers an uninterrupted run would have produced.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from replaycli.errors import ConfigError
from replaycli.outputs.files import write_atomic
from replaycli.outputs.rundir import CHECKPOINT, CHECKPOINTS, RunWriter
from replaycli.run import state
from replaycli.run.loop import Run

FORMAT = 3  # bump when the layout changes; older checkpoints are refused with a clear error


def refs(run: Run, generator: torch.Generator) -> state.Refs:
    """The objects of `run` that the captured ones may share, by name."""
    pools = {id(e.dataset.pool): e.dataset.pool for stream in streams(run) for e in stream}
    shared = {
        "model": run.model,
        "optimizer": run.optimizer,
        "generator": generator,
        "mask": run.mask,
        "bench": run.bench,
        "train_pool": run.bench.train_pool,
        "test_pool": run.bench.test_pool,
        **{f"pool{i}": p for i, p in enumerate(pools.values())},
        "buffer": run.buffer,
        "selection": selection(run),
        "memory": run.memory,
        "method": run.method,
        "device": run.device,
    }
    return state.Refs(shared, run.device, run.model)


def streams(run: Run) -> list[Any]:
    return [s for s in (run.bench.train_stream, run.bench.test_stream, run.bench.valid_stream) if s is not None]


def selection(run: Run) -> Any:
    return getattr(run.buffer, "selection_strategy", None)


def captured(run: Run) -> dict[str, Any]:
    """The objects whose every attribute a checkpoint keeps: the method, the buffer policy and its
    selection strategy (a user's as much as ours)."""
    return {
        name: obj
        for name, obj in (("method", run.method), ("buffer", run.buffer), ("selection", selection(run)))
        if obj is not None
    }


def run_state(run: Run, generator: torch.Generator) -> dict[str, Any]:
    """Model and optimizer by their state_dict, the rest attribute by attribute (run/state.py);
    a ConfigError naming an attribute a checkpoint cannot keep."""
    shared = refs(run, generator)
    out = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict()}
    out.update({name: state.capture_attrs(obj, shared, CONFIG_KEY[name]) for name, obj in captured(run).items()})
    return out


CONFIG_KEY = {"method": "strategy", "buffer": "buffer", "selection": "selection"}  # how an error names them


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def digest(config: Path) -> str:
    """sha256 of a run's config.yaml: what binds a checkpoint to its run."""
    return hashlib.sha256(Path(config).read_bytes()).hexdigest()


def capture(
    run: Run, generator: torch.Generator, writer: RunWriter, seconds: float, resumes: int, config_sha256: str
) -> dict[str, Any]:
    """The checkpoint of `run` right after its last finished experience."""
    return {
        "format": FORMAT,
        "config_sha256": config_sha256,
        "experiences_done": len(writer.accuracy),
        "seconds": float(seconds),
        "resumes": int(resumes),
        "state": run_state(run, generator),
        "rng": rng_state(generator),
        "writer": {"accuracy": writer.accuracy, "histograms": writer.histograms, "records": writer.records},
        "data": fingerprint(run),
    }


def fingerprint(run: Run) -> str:
    """What binds a checkpoint to the data it was trained on: sha256 of each pool's size, shape,
    dtype and labels, and of 1,024 of its samples spread over it (a few ms, however large the pool:
    other data of the same shape under the same path is told apart, with a file-by-file hash's cost)."""
    h = hashlib.sha256()
    for pool in (run.bench.train_pool, run.bench.test_pool):
        n = len(pool)
        h.update(f"{n} {tuple(pool.x.shape)} {pool.x.dtype}".encode())
        h.update(pool.y.cpu().numpy().tobytes())
        rows = torch.linspace(0, max(n - 1, 0), min(n, 1024)).long()
        h.update(pool.raw(rows.to(pool.y.device)).cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def save(run_dir: Path, checkpoint: dict[str, Any], keep: str = "last") -> None:
    """checkpoint.pt of `run_dir`; with `keep` "all" also checkpoints/<k>.pt, k its experiences done."""
    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    write_atomic(Path(run_dir) / CHECKPOINT, buf.getvalue())
    if keep == "all":
        (Path(run_dir) / CHECKPOINTS).mkdir(exist_ok=True)
        write_atomic(Path(run_dir) / CHECKPOINTS / f"{checkpoint['experiences_done']}.pt", buf.getvalue())


def load(run_dir: Path) -> dict[str, Any]:
    """Read the checkpoint of `run_dir`; a ConfigError if it is missing, truncated or not ours."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise ConfigError(
            f"no {CHECKPOINT} in {run_dir}: the run stopped before its first experience finished; "
            "start it again with replay run"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, garbage bytes, or a pickle of arbitrary objects
        if "Unsupported global" in str(e):  # torch's weights-only unpickler met a class
            raise ConfigError(
                f"checkpoint {path} holds objects other than tensors, dicts, lists and numbers; "
                "refused: checkpoints are loaded with weights_only=True"
            ) from e
        why = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0][:160]
        if "Weights only load failed" in why:  # torch's advice to load unsafely does not apply
            why = "not a torch checkpoint"
        raise ConfigError(f"checkpoint {path} is unreadable (truncated or corrupt: {why}); cannot resume") from e
    keys = {"format", "experiences_done", "seconds", "resumes", "state", "rng", "writer"}
    if not isinstance(ckpt, dict) or not keys <= set(ckpt):
        raise ConfigError(f"checkpoint {path} is not a replaycli checkpoint (expected keys {sorted(keys)})")
    if ckpt["format"] != FORMAT:
        raise ConfigError(f"checkpoint {path} has format {ckpt['format']!r}; this replaycli reads format {FORMAT}")
    return ckpt


def restore(ckpt: dict[str, Any], run: Run, generator: torch.Generator, writer: RunWriter, source: Path) -> None:
    """Put `run`, `generator` and `writer` back in the state saved in `ckpt` (read from `source`)."""
    done = ckpt["experiences_done"]
    acc = ckpt["writer"]["accuracy"]
    objs = captured(run)
    rows_fit = isinstance(acc, list) and all(isinstance(row, list) and len(row) == writer.n_test for row in acc)
    if (
        not isinstance(done, int)
        or isinstance(done, bool)
        or not 0 <= done <= run.bench.n_experiences
        or len(acc) != done
        or not rows_fit
        or set(ckpt["state"]) != {"model", "optimizer", *objs}
    ):
        raise ConfigError(
            f"checkpoint {source} does not match the run's config.yaml "
            f"({done} experiences done of {run.bench.n_experiences}; state of {sorted(ckpt['state'])})"
        )
    if "data" in ckpt and ckpt["data"] != fingerprint(run):
        raise ConfigError(
            f"checkpoint {source} was trained on other data than the run's config.yaml reads now (its samples or "
            "labels changed); refused: resume over the data it began with, or start again with replay run"
        )
    try:
        max_size = run.buffer.max_size if run.buffer is not None else 0  # as the config built it
        run.model.load_state_dict(ckpt["state"]["model"])
        run.optimizer.load_state_dict(ckpt["state"]["optimizer"])
        shared = refs(run, generator)
        for name, obj in objs.items():
            state.restore_attrs(obj, ckpt["state"][name], shared, CONFIG_KEY[name])
        check_tables(ckpt["writer"], done, writer.n_test, run.bench.n_classes)
        check_buffer(run, max_size)
        writer.accuracy = [list(map(float, row)) for row in acc]
        writer.histograms = [list(map(int, row)) for row in ckpt["writer"]["histograms"]]
        writer.records = list(ckpt["writer"]["records"])
        set_rng_state(ckpt["rng"], generator)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(f"checkpoint {source} does not match the run's config.yaml: {why}") from e


def check_tables(saved: dict[str, Any], done: int, n_test: int, n_classes: int) -> None:
    """The metrics a checkpoint holds, as a run writes them: accuracies in [0, 1], one histogram of
    `n_classes` counts and one JSON record per finished experience; ValueError naming the first
    that is not (a doctored checkpoint gave tracebacks, or tables the config contradicts)."""
    import json
    import math

    acc, hists, records = saved["accuracy"], saved["histograms"], saved["records"]
    if any(not isinstance(v, float) or not 0.0 <= v <= 1.0 or math.isnan(v) for row in acc for v in row):
        raise ValueError(f"an accuracy outside [0, 1] in its {n_test}-column rows")
    if (
        not isinstance(hists, list)
        or len(hists) != done
        or any(not isinstance(h, list) or len(h) != n_classes for h in hists)
    ):
        raise ValueError(f"its histograms are not {done} rows of {n_classes} class counts")
    if any(not isinstance(c, int) or isinstance(c, bool) or c < 0 for h in hists for c in h):
        raise ValueError("a class count that is not a whole number >= 0")
    if not isinstance(records, list) or len(records) != done or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"its records are not {done} objects")
    try:
        json.dumps(records)  # a tensor or an object there would be a traceback when metrics.jsonl is written
    except (TypeError, ValueError) as e:
        raise ValueError(f"a record that is no JSON ({e})") from None


def check_buffer(run: Run, max_size: int) -> None:
    """The restored memory against the run: at most the config's `max_size` samples, ids of its
    stream's samples, every field one row per sample."""
    if run.buffer is None:
        return
    store = run.buffer.store
    if run.buffer.max_size != max_size:
        raise ValueError(f"buffer.max_size={run.buffer.max_size} where the config says {max_size}")
    n = len(store.ids)
    if store.ids.dtype != torch.int64 or store.ids.dim() != 1 or n > max_size:
        raise ValueError(f"the buffer holds {n} ids of {store.ids.dtype} (at most {max_size} int64)")
    if n and (int(store.ids.min()) < 0 or int(store.ids.max()) >= len(run.bench.train_pool)):
        raise ValueError(f"a buffer id outside the stream's {len(run.bench.train_pool)} samples")
    rows = [store.tasks, store.exps, store.groups, store.scores, *store.extras.values()]
    if any(len(t) != n for t in rows):
        raise ValueError("the buffer's fields are not one row per stored sample")
