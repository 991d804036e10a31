"""What a run shows while it trains: rich bars on a terminal, plain lines otherwise, and the
final tables (the accuracy matrix and the buffer histogram). Given a run directory (`log`), the
plain lines and the tables also go to its run.log, without colour, whatever the mode."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from replaycli.outputs.terminal import accuracy_table, histogram_table


class Reporter:
    """`mode`: rich | plain | none | auto (rich when stdout is a terminal) | job (a sweep's job
    with progress=auto: nothing on the terminal, where the sweep prints one line per job; the
    log as always). `label` (`[job 3] `) begins every line printed, so that the lines of jobs
    run side by side (a parallel launcher) say whose they are."""

    def __init__(
        self,
        n_experiences: int,
        epochs: int,
        mode: str = "auto",
        console: Console | None = None,
        log: Path | None = None,
        label: str = "",
    ):
        self.console = console or Console()
        self.log = log  # a run directory: its run.log gets the plain lines and the tables
        if mode == "auto":
            mode = "rich" if sys.stdout.isatty() else "plain"
        self.mode = mode
        self.label = label
        self.n_experiences, self.epochs = n_experiences, epochs
        self.progress: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> Reporter:
        if self.mode == "rich":
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self.progress.start()
        return self

    def __exit__(self, kind: Any, error: Any, tb: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
        if error is not None:
            self._log(f"stopped: {kind.__name__}: {error}")

    def _log(self, text: str) -> None:
        if self.log is not None:
            from replaycli.outputs.rundir import append_log

            append_log(self.log, text)

    def _say(self, text: str) -> None:
        """A plain line: printed in plain mode, logged in every mode."""
        if self.mode == "plain":
            print(self.label + text, flush=True)
        self._log(text)

    def line(self, text: str) -> None:
        """A message every mode but `job` prints (where the outputs are, a resume), logged too."""
        if self.mode != "job":
            print(self.label + text, flush=True)
        self._log(text)

    def start_experience(self, i: int, n_samples: int, memory: int) -> None:
        text = f"experience {i + 1}/{self.n_experiences}: {n_samples} samples, memory {memory}"
        if self.progress is not None:
            self.task = self.progress.add_task(text, total=None, status="")
        self._say(text)

    def step(self, epoch: int, i: int, n_steps: int) -> None:
        if self.progress is not None:
            self.progress.update(
                self.task,
                total=n_steps * self.epochs,
                completed=epoch * n_steps + i + 1,
                status=f"epoch {epoch + 1}/{self.epochs}",
            )

    def epoch_done(self, record: dict[str, Any]) -> None:
        """An epoch's record as it ends: its steps, and its seconds when timed."""
        text = f"  epoch {record['epoch'] + 1}/{self.epochs}: {record['steps']} batches"
        self._say(text + (f" ({record['seconds']:.2f} s)" if "seconds" in record else ""))

    def experience_done(self, record: dict[str, Any]) -> None:
        """The experience's line; its epochs' loss and accuracy (they reach Python only now)."""
        train = f"  train accuracy {record['train_accuracy']:.4f}" if "train_accuracy" in record else ""
        seen = seen_accuracy(record)
        text = (
            f"  loss {record['loss']:.4f}{train}  seen-so-far accuracy {seen:.4f}  stream accuracy "
            f"{record['average']:.4f}  ({record['seconds']:.2f} s)"
        )
        if self.progress is not None:  # seen: the experiences trained so far; stream: every test experience
            self.progress.update(
                self.task, status=f"loss {record['loss']:.4f} seen acc {seen:.3f} stream acc {record['average']:.3f}"
            )
        epochs = record.get("epochs", [])
        per_epoch = [
            f"{k} " + " ".join(f"{e[k]:.3f}" for e in epochs)
            for k in ("loss", "accuracy")
            if len(epochs) > 1 and all(k in e for e in epochs)
        ]
        if per_epoch:
            self._say("  per epoch: " + ", ".join(per_epoch))
        self._say(text)

    def tables(self, accuracy: list[list[float]], histograms: list[list[int]]) -> None:
        """The final tables, where the terminal shows them, and in run.log as it showed them; with
        progress=none or in a sweep's job nothing renders them (0.35 s a run, for every job of a
        sweep): accuracy.csv and buffer_histogram.csv hold them, replay inspect shows them."""
        if self.mode in ("none", "job"):
            return
        shown = (accuracy_table(accuracy), histogram_table(histograms))
        for t in shown:
            self.console.print(t)
        if self.log is not None:  # the same tables as plain text: a console on a string, no colour
            text = io.StringIO()
            plain = Console(file=text, width=self.console.width, color_system=None, force_terminal=False)
            for t in shown:
                plain.print(t)
            self._log(text.getvalue())


def seen_accuracy(record: dict[str, Any]) -> float:
    """The mean accuracy on the test experiences trained so far after this record's experience:
    what the progress shows beside the whole stream's."""
    from replaycli.outputs.formulas import seen

    return seen([record["accuracy"]], [record.get("origin_experience", record["experience"])])[0]
