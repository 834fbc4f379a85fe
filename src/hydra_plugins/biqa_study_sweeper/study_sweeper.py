"""biqa's study as a Hydra sweeper: `biqa-train -m study=NAME` (conf/hydra/sweeper/study.yaml).

Hydra instantiates sweepers only from the `hydra_plugins` namespace package; the study itself lives in
`biqa.study.launch`, imported when a sweep starts (Hydra imports this module on every start to scan it)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class StudySweeper(Sweeper):
    """Expands the composed `study` into its jobs (variants x datasets x seeds x grid, not a Cartesian product
    of the command line), skips the finished ones, hands the rest to the configured launcher, runs the
    cross-dataset tests of the finished ones, and writes the study's report.

    `action`: run | dry_run (list the jobs and their status) | report (write the report from the records) |
    status (the jobs' status, with the Slurm state of the submitted ones).
    `report`: write the report at the end of a run.
    `wait`: false submits the jobs through the launcher and returns without waiting (Slurm launchers)."""

    def __init__(self, action: str = "run", report: bool = True, wait: bool = True) -> None:
        self.action = action
        self.write_report = report
        self.wait = wait
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config

    def sweep(self, arguments: list[str]) -> Any:
        from biqa.study.launch import sweep_study

        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        return sweep_study(arguments, self.config, self.hydra_context, self.task_function, action=self.action,
                           report=self.write_report, wait=self.wait)
