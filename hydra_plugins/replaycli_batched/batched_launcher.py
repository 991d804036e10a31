"""`hydra/launcher=batched` (configs/hydra/launcher/batched.yaml): replaycli.run.launcher does the work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class BatchedLauncher(Launcher):
    """Jobs that differ only in seed train as one group in one process; the others one by one."""

    def __init__(self, max_group: Any = 64, batch: Any = "auto") -> None:
        from replaycli.errors import choice, integer

        self.max_group = integer("hydra.launcher.max_group", max_group, 1)
        self.batch = choice("hydra.launcher.batch", str(batch).lower(), ("auto", "true", "false"))
        self.launch_with: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from replaycli.run.launcher import Launch

        self.launch_with = Launch(hydra_context, task_function, config, self.max_group, self.batch)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self.launch_with(job_overrides, initial_job_idx)
