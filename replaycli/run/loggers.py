"""Loggers that see each finished experience: none (the default), TensorBoard event files, Weights &
Biases or MLflow. Each logs the same numbers (`scalars`): per experience the stream accuracy, the
accuracy on each test experience, the losses, the seconds and the memory size, and the buffer's
class histogram; W&B and MLflow log the run's config too. Each writes inside the run directory
unless the user's own environment says otherwise (WANDB_MODE, WANDB_BASE_URL, MLFLOW_TRACKING_URI):
a received config never sends a resumed run's numbers anywhere else. A resumed run logs into the
same W&B or MLflow run (its id is kept in the run directory), at the same steps."""

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


def scalars(record: dict[str, Any]) -> list[tuple[str, float, int]]:
    """(tag, value, step) of every number a logger logs for a finished experience's `record`: one
    step per experience, and per epoch (experience * epochs + epoch) for the epochs' records."""
    step = record["experience"]
    out = [("accuracy/stream", record["average"], step)]
    out += [(f"accuracy/experience_{j}", a, step) for j, a in enumerate(record["accuracy"])]
    out.append(("loss/train", record["loss"], step))
    for key, tag in (("train_accuracy", "accuracy/train"), ("stream_loss", "loss/test_stream")):
        if key in record:  # metrics=[accuracy, loss, ...]
            out.append((tag, record[key], step))
    for e in record.get("epochs", []):
        for key in ("loss", "accuracy"):
            if key in e:
                out.append((f"{key}/train_epoch", e[key], step * len(record["epochs"]) + e["epoch"]))
    out += [
        (f"time/{key}", record[key], step)
        for key in ("seconds", "train_seconds", "buffer_seconds", "eval_seconds")
        if key in record
    ]
    out.append(("buffer/size", sum(record["histogram"]), step))
    return out


def inside(run_dir: Path, subdir: str) -> Path:
    """`<run_dir>/<subdir>`, refused when `subdir` leaves the run directory (a received config
    writes into its run only)."""
    if Path(subdir).is_absolute() or ".." in Path(subdir).parts:
        raise ConfigError(f"subdir={subdir!r} leaves the run directory; allowed: a folder inside it, e.g. logs")
    return Path(run_dir) / subdir


def needs(module: str, package: str, logger: str) -> Any:
    """`module` imported, or a ConfigError that names the `package` to install (replaycli's extra of
    the same name)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(
            f"logger={logger} needs the {package} package: pip install 'replaycli[{package}]'; allowed without it: "
            "logger=none"
        ) from e


def run_config(run_dir: Path) -> dict[str, Any]:
    """The run's config.yaml as a plain dict (what W&B and MLflow record of the run)."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    tree = yaml.safe_load(path.read_text()) if path.is_file() else {}
    return tree if isinstance(tree, dict) else {}


def flat(tree: Any, prefix: str = "") -> dict[str, str]:
    """A nested config as `a.b.c` -> value text (MLflow's parameters)."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: str(tree)}


def kept_id(folder: Path) -> str | None:
    """The id of the W&B or MLflow run this run directory logs to, when it has one already (a resume)."""
    path = folder / "run_id"
    return path.read_text().strip() or None if path.is_file() else None


class TensorBoardLogger:
    """logger=tensorboard: one step per experience, event files in `<run_dir>/<subdir>`.

    The directory is made at the first finished experience, so a run refused up front leaves none.
    """

    def __init__(self, run_dir: Path, subdir: str = "tensorboard"):
        writer = needs("torch.utils.tensorboard", "tensorboard", "tensorboard")
        self.log_dir = inside(run_dir, subdir)
        self._make = writer.SummaryWriter
        self._writer: Any = None

    def experience_done(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            self._writer = self._make(log_dir=str(self.log_dir))
        w, step = self._writer, record["experience"]
        for tag, value, at in scalars(record):
            w.add_scalar(tag, value, at)
        hist = record["histogram"]  # samples per class in the buffer
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


class WandbLogger:
    """logger=wandb: a Weights & Biases run with the run's config and, per experience, `scalars`
    and the buffer's class histogram. Its files go to `<run_dir>/<subdir>`; offline
    (WANDB_MODE=offline, or `mode: offline`) nothing leaves the machine and `wandb sync` uploads
    later. The directory is made at the first finished experience."""

    def __init__(self, run_dir: Path, project: str = "replaycli", subdir: str = "wandb", mode: str | None = None):
        from replaycli.errors import choice

        self.wandb = needs("wandb", "wandb", "wandb")
        self.run_dir, self.folder, self.project = Path(run_dir), inside(run_dir, subdir), str(project)
        self.mode = None if mode is None else choice("logger.mode", mode, ("online", "offline", "disabled"))
        self.run: Any = None

    def experience_done(self, record: dict[str, Any]) -> None:
        if self.run is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            known = kept_id(self.folder)
            self.run = self.wandb.init(
                project=self.project,
                dir=str(self.folder),
                id=known,
                resume="allow" if known else None,
                name=self.run_dir.name,
                config=run_config(self.run_dir),
                mode=self.mode,
                reinit="create_new",  # runs side by side in one process (a batched group) are each their own
            )
            (self.folder / "run_id").write_text(self.run.id + "\n")
            self.run.define_metric("experience")
            self.run.define_metric("epoch")
            for tag in ("loss/train_epoch", "accuracy/train_epoch"):
                self.run.define_metric(tag, step_metric="epoch")
            self.run.define_metric("*", step_metric="experience")
        numbers = scalars(record)
        for at in sorted({at for tag, _, at in numbers if tag.endswith("_epoch")}):  # the epochs' records first
            self.run.log({tag: v for tag, v, a in numbers if tag.endswith("_epoch") and a == at} | {"epoch": at})
        logged: dict[str, Any] = {tag: v for tag, v, _ in numbers if not tag.endswith("_epoch")}
        hist = record["histogram"]
        if sum(hist) > 0:
            bins = [k - 0.5 for k in range(len(hist) + 1)]
            logged["buffer/classes"] = self.wandb.Histogram(np_histogram=(list(hist), bins))
        self.run.log({**logged, "experience": record["experience"]})

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()


class MLflowLogger:
    """logger=mlflow: an MLflow run with the run's config as parameters (and config.yaml as an
    artifact) and, per experience, `scalars` and the memory's samples of each class. The store is
    `<run_dir>/<subdir>`, a local file store, unless MLFLOW_TRACKING_URI names the user's own."""

    def __init__(self, run_dir: Path, experiment: str = "replaycli", subdir: str = "mlruns"):
        import os

        needs("mlflow", "mlflow", "mlflow")
        self.run_dir, self.folder, self.experiment = Path(run_dir), inside(run_dir, subdir), str(experiment)
        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or self.folder.absolute().as_uri()
        self.client: Any = None
        self.run_id: str | None = None

    def experience_done(self, record: dict[str, Any]) -> None:
        import os
        import time

        if self.client is None:
            from mlflow.tracking import MlflowClient

            if self.uri.startswith("file:"):  # MLflow 3 keeps its file store, in maintenance: asked for here
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            self.folder.mkdir(parents=True, exist_ok=True)
            self.client = MlflowClient(tracking_uri=self.uri)
            self.run_id = kept_id(self.folder)
            if self.run_id is None:
                found = self.client.get_experiment_by_name(self.experiment)
                exp = found.experiment_id if found else self.client.create_experiment(self.experiment)
                run = self.client.create_run(exp, run_name=self.run_dir.name)
                self.run_id = run.info.run_id
                from mlflow.entities import Param

                params = [
                    Param(k, v[:6000]) for k, v in flat(run_config(self.run_dir)).items()
                ]  # MLflow's limit on a value
                for i in range(0, len(params), 100):  # MLflow's limit on a batch: one call per 100, not one per key
                    self.client.log_batch(self.run_id, params=params[i : i + 100])
                if (self.run_dir / "config.yaml").is_file():
                    self.client.log_artifact(self.run_id, str(self.run_dir / "config.yaml"))
                (self.folder / "run_id").write_text(self.run_id + "\n")
        now = int(time.time() * 1000)
        from mlflow.entities import Metric

        metrics = [Metric(tag, float(value), now, at) for tag, value, at in scalars(record)]
        metrics += [
            Metric(f"buffer/class_{k}", float(c), now, record["experience"]) for k, c in enumerate(record["histogram"])
        ]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id)
