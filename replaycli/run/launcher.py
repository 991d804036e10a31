"""`hydra/launcher=batched`: the jobs of a sweep that differ only in `seed` train as one group in
one process (run/together.py), each job still writing its own run directory, its `.hydra/` files
and its row of summary.csv, as Hydra's own launcher has it; every other job runs as Hydra's basic
launcher runs it. The launcher class Hydra finds is in `hydra_plugins/replaycli_batched/`."""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core import utils as hydra_utils  # its _save_config is made atomic by run/sweep.py's callback
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from replaycli.run.sweep import say_whole


def seedless(overrides: Sequence[str]) -> tuple[str, ...]:
    """A job's overrides without its seed: the jobs with the same are one group."""
    return tuple(o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "seed")


def groups(jobs: list[tuple[int, list[str]]], max_group: int) -> list[list[tuple[int, list[str]]]]:
    """The jobs in groups of at most `max_group` that differ only in seed, in the order of their
    first job."""
    by_key: dict[tuple[str, ...], list[tuple[int, list[str]]]] = {}
    for job in jobs:
        by_key.setdefault(seedless(job[1]), []).append(job)
    return [members[i : i + max_group] for members in by_key.values() for i in range(0, len(members), max_group)]


class Launch:
    """What `BatchedLauncher.launch` does, given what Hydra set it up with."""

    def __init__(self, context: HydraContext, task: TaskFunction, config: DictConfig, max_group: int, batch: str):
        self.context, self.task, self.config, self.max_group, self.batch = context, task, config, max_group, batch

    def __call__(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        jobs = [(initial_job_idx + n, list(o)) for n, o in enumerate(job_overrides)]
        returns: dict[int, JobReturn] = {}
        for members in groups(jobs, self.max_group):
            if len(members) == 1 or self.config.hydra.job.chdir:  # a job alone runs as Hydra's basic launcher runs it
                for idx, overrides in members:
                    returns[idx] = self.alone(idx, overrides)
            else:
                returns.update(self.together(members))
        return [returns[idx] for idx, _ in jobs]

    def sweep_config(self, idx: int, overrides: list[str]) -> DictConfig:
        cfg = self.context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg):
            cfg.hydra.job.id = idx
            cfg.hydra.job.num = idx
        return cfg

    def alone(self, idx: int, overrides: list[str]) -> JobReturn:
        ret = run_job(
            hydra_context=self.context,
            task_function=self.task,
            config=self.sweep_config(idx, overrides),
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret

    def start(self, idx: int, overrides: list[str]) -> tuple[DictConfig, JobReturn]:
        """A member's job up to its task, as Hydra's `run_job` has it: its config, its output
        directory and `.hydra/` files, the callbacks' `on_job_start`."""
        cfg = self.sweep_config(idx, overrides)
        HydraConfig.instance().set_config(cfg)
        out = os.path.join(
            str(OmegaConf.select(cfg, "hydra.sweep.dir")), str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
        )
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = os.path.abspath(out)
        HydraConfig.instance().set_config(cfg)
        task_cfg, hydra_cfg = copy.deepcopy(cfg), copy.deepcopy(HydraConfig.instance().cfg)
        assert isinstance(hydra_cfg, DictConfig)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        ret = JobReturn(cfg=task_cfg, hydra_cfg=hydra_cfg, working_dir=os.getcwd(), task_name=cfg.hydra.job.name)
        ret.overrides = list(OmegaConf.to_container(cfg.hydra.overrides.task))
        Path(out).mkdir(parents=True, exist_ok=True)
        if cfg.hydra.output_subdir is not None:
            hydra_output = Path(cfg.hydra.runtime.output_dir) / str(cfg.hydra.output_subdir)
            hydra_utils._save_config(task_cfg, "config.yaml", hydra_output)
            hydra_utils._save_config(hydra_cfg, "hydra.yaml", hydra_output)
            hydra_utils._save_config(cfg.hydra.overrides.task, "overrides.yaml", hydra_output)
        self.context.callbacks.on_job_start(config=cfg, task_function=self.task)
        return cfg, ret

    def together(self, members: list[tuple[int, list[str]]]) -> dict[int, JobReturn]:
        """The members' jobs, each in a thread of its own, as one group (run/together.py)."""
        from replaycli.run.runner import job_of
        from replaycli.run.together import Group

        group = Group(len(members), self.batch)
        started = [self.start(idx, overrides) for idx, overrides in members]

        def member(j: int) -> None:
            cfg, ret = started[j]
            try:
                ret.return_value = job_of(task_cfg_of(ret), cfg.hydra, True, together=(group, j))
                ret.status = JobStatus.COMPLETED
            except Exception as e:  # noqa: BLE001 (a failed job, as Hydra's run_job records it)
                ret.return_value = e
                ret.status = JobStatus.FAILED
            except BaseException as e:  # noqa: BLE001 (Ctrl-C: the member stopped; its run says interrupted)
                ret.return_value = e
                ret.status = JobStatus.FAILED
            finally:
                group.gone(j)

        threads = [threading.Thread(target=member, args=(j,), daemon=True) for j in range(len(members))]
        for t in threads:
            t.start()
        say_whole(announce(group, members))
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            group.stop()  # each member raises at its next meeting, records itself interrupted, and ends
            for t in threads:
                t.join()
            raise
        returns = {}
        for cfg, ret in started:
            HydraConfig.instance().set_config(cfg)
            self.context.callbacks.on_job_end(config=cfg, job_return=ret)
            returns[int(cfg.hydra.job.num)] = ret
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns


def announce(group: Any, members: list[tuple[int, list[str]]]) -> str:
    """One line once the group has decided: batched, or by turns and why."""
    with group.cond:
        while group.mode is None:
            group.cond.wait()
    first, last = members[0][0], members[-1][0]
    seeds = ",".join(next((o.split("=", 1)[1] for o in ov if seedless([o]) == ()), "?") for _, ov in members)
    if group.mode == "batched":
        return f"[jobs {first}-{last}] seed={seeds}: {len(members)} runs train as one batched model"
    return f"[jobs {first}-{last}] seed={seeds}: one after another in this process ({group.why})"


def register() -> None:
    """Make `hydra/launcher=batched` known to Hydra where its plugin scan cannot see it: an editable
    install keeps hydra_plugins/replaycli_batched outside the namespace's folders."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.replaycli_batched.batched_launcher import BatchedLauncher

    name = f"{BatchedLauncher.__module__}.{BatchedLauncher.__name__}"
    Plugins.instance().class_name_to_class.setdefault(name, BatchedLauncher)


def task_cfg_of(ret: JobReturn) -> DictConfig:
    assert ret.cfg is not None
    return ret.cfg
