"""What every job does around training, under any sweeper and launcher (plain runs, `-m` multiruns, Optuna,
studies; basic or submitit): a Hydra callback (conf/hydra/default.yaml) that writes the job's state file when
it starts and ends, logs its test predictions and scatter to its W&B run and finishes that run.

A failing job's error and traceback go to its state file; the sweeper goes on with the next job, so that one
bad variant does not stop the rest of a study."""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from biqa.lit.slurm import being_preempted, requeue_this_job
from biqa.run_folder import PREDICTIONS_FILE, SCATTER_FILE, STATE_FILE, read_json, write_state

log = logging.getLogger(__name__)

STOP_REQUESTED = threading.Event()


def request_stop(signum: int, frame) -> None:
    """SIGTERM to a sweep running its jobs in-process: no further job starts. A job in training stops at its
    next step (Lightning raises on SIGTERM and calls this handler too); one in any other phase finishes it.
    A job that crashes meanwhile (e.g. its loader workers got the same signal) counts as interrupted, not
    failed, so the next run resumes it from its last checkpoint."""
    log.warning("signal %d: the study stops; re-run the same command to resume", signum)
    STOP_REQUESTED.set()


class JobRecords(Callback):
    """The job's state file (`job.json`: running, then finished or failed with the error) and its W&B run."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        name = _job_name(config)
        if STOP_REQUESTED.is_set():
            raise SystemExit(f"{name}: not started, the study was asked to stop")
        if rank_zero_only.rank == 0:
            slurm = {"slurm_job_id": slurm_job_id()} if slurm_job_id() else {}
            write_state(Path(config.hydra.runtime.output_dir), "running", name=name,
                        fingerprint=_study_job(config).get("fingerprint"),
                        overrides=list(config.hydra.overrides.task), **slurm)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        output_dir = Path(config.hydra.runtime.output_dir)
        try:
            if job_return.status is JobStatus.COMPLETED:
                if rank_zero_only.rank == 0:
                    log_test_results_to_wandb(output_dir)
                    write_state(output_dir, "finished")
                return
            error = _error_of(job_return)
            if STOP_REQUESTED.is_set():
                raise SystemExit(f"{_job_name(config)}: interrupted ({type(error).__name__}: {error})") from error
            log.error("%s failed: %s: %s", _job_name(config), type(error).__name__, error)
            if rank_zero_only.rank == 0:
                write_state(output_dir, "failed", error=f"{type(error).__name__}: {error}",
                            traceback="".join(traceback.format_exception(error)))
        finally:
            finish_wandb_run()


def record_termination(output_dir: Path) -> None:
    """The run stopped on SIGTERM (Lightning stops at the end of the batch). A Slurm job that requeued itself
    while training (biqa.lit.slurm: time-limit warning or pre-emption) says so already; one pre-empted outside
    training (validating, testing) requeues itself now, or Slurm would not start it again; any other stop is
    an interruption. Either way the next run resumes it, so its state file must not say failed."""
    if rank_zero_only.rank != 0:
        return
    state = read_json(output_dir / STATE_FILE) or {}
    if state.get("status") in ("requeued", "preempted"):
        status = state["status"]
    elif slurm_job_id() and being_preempted() and requeue_this_job():
        status = "preempted"
    else:
        status = "interrupted"
    log.warning("SIGTERM: the run stopped at the end of its batch (%s)", status)
    write_state(output_dir, status)


def log_test_results_to_wandb(output_dir: Path) -> None:
    """The job's test predictions (a table) and scatter plot."""
    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:
        return
    predictions, scatter = output_dir / PREDICTIONS_FILE, output_dir / SCATTER_FILE
    if predictions.exists():
        import pandas as pd

        wandb.run.log({"test/predictions": wandb.Table(dataframe=pd.read_csv(predictions))})
    if scatter.exists():
        wandb.run.log({"test/scatter": wandb.Image(str(scatter))})


def finish_wandb_run() -> None:
    """Lightning's WandbLogger leaves its run open; the next job of a sequential sweep would reuse it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def slurm_job_id() -> str | None:
    """This process's Slurm job (`ARRAY_TASK` for an array task, as squeue and sacct name it)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def _study_job(config: DictConfig) -> dict[str, Any]:
    return dict(config.get("study_job") or {})


def _job_name(config: DictConfig) -> str:
    return _study_job(config).get("name") or Path(config.hydra.runtime.output_dir).name


def _error_of(job_return: JobReturn) -> BaseException:
    try:
        job_return.return_value  # noqa: B018 - raises the job's exception, the public way to get it
    except BaseException as error:  # noqa: BLE001
        return error
    return RuntimeError("the job failed without an exception")
