"""Loggers that see each finished experience: none (the default) or TensorBoard event files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from replaycli.errors import ConfigError


class Logger(Protocol):
    def experience_done(self, record: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class NullLogger:
    """logger=none: logs nothing."""

    def __init__(self, run_dir: Path | None = None):
        pass

    def experience_done(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """logger=tensorboard: one step per experience, event files in `<run_dir>/<subdir>`.

    The directory is made at the first finished experience, so a run refused up front leaves none.
    """

    def __init__(self, run_dir: Path, subdir: str = "tensorboard"):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ConfigError(
                "logger=tensorboard needs the tensorboard package: pip install 'replaycli[tensorboard]'; "
                "allowed without it: logger=none"
            ) from e
        if Path(subdir).is_absolute() or ".." in Path(subdir).parts:  # a received config writes into its run only
            raise ConfigError(
                f"subdir={subdir!r} leaves the run directory; allowed: a folder inside it, e.g. tensorboard"
            )
        self.log_dir = Path(run_dir) / subdir
        self._make = SummaryWriter
        self._writer: Any = None

    def experience_done(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            self._writer = self._make(log_dir=str(self.log_dir))
        w, step = self._writer, record["experience"]
        w.add_scalar("accuracy/stream", record["average"], step)
        for j, a in enumerate(record["accuracy"]):
            w.add_scalar(f"accuracy/experience_{j}", a, step)
        w.add_scalar("loss/train", record["loss"], step)
        for key, tag in (("train_accuracy", "accuracy/train"), ("stream_loss", "loss/test_stream")):
            if key in record:  # metrics=[accuracy, loss, ...]
                w.add_scalar(tag, record[key], step)
        for e in record.get("epochs", []):  # one step per epoch: experience * epochs + epoch
            for key in ("loss", "accuracy"):
                if key in e:
                    w.add_scalar(f"{key}/train_epoch", e[key], step * len(record["epochs"]) + e["epoch"])
        for key in ("seconds", "train_seconds", "buffer_seconds", "eval_seconds"):
            if key in record:
                w.add_scalar(f"time/{key}", record[key], step)
        hist = record["histogram"]  # samples per class in the buffer
        w.add_scalar("buffer/size", sum(hist), step)
        if sum(hist) > 0:  # values are class ids, each counted as often as the buffer holds it
            present = [k for k, c in enumerate(hist) if c]
            w.add_histogram_raw(
                "buffer/classes",
                min=present[0],
                max=present[-1],
                num=sum(hist),
                sum=sum(k * c for k, c in enumerate(hist)),
                sum_squares=sum(k * k * c for k, c in enumerate(hist)),
                bucket_limits=[k + 0.5 for k in range(len(hist))],
                bucket_counts=list(hist),
                global_step=step,
            )
        w.flush()  # a run that dies later keeps what it logged

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
