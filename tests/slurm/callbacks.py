"""Callbacks the real-cluster tests add to a job's command line (`+callbacks.NAME._target_=tests.slurm...`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L
import torch


def first_attempt_under_slurm() -> bool:
    """A Slurm job that has not been requeued yet (SLURM_RESTART_COUNT counts the requeues)."""
    return "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_RESTART_COUNT", "0") == "0"


class SlowFirstAttempt(L.Callback):
    """Sleeps `seconds` before each training batch of a Slurm job's first attempt, so that the time-limit signal
    or a pre-emption finds it training; writes `marker` once `after_step` steps are done. Results are those of
    a run at full speed: sleeping changes no state."""

    def __init__(self, seconds: float, marker: str, after_step: int = 0) -> None:
        self.seconds, self.marker, self.after_step = seconds, Path(marker), after_step

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        if not first_attempt_under_slurm():
            return
        if trainer.global_step >= self.after_step and not self.marker.exists():
            self.marker.write_text(f"{os.environ['SLURM_JOB_ID']} step {trainer.global_step}\n")
        time.sleep(self.seconds)


class SaveParameters(L.Callback):
    """At the end of training, each rank saves its parameters, world size, process group backend and Slurm
    task id to `folder/rank<N>.pt`."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        torch.save({"parameters": {k: v.detach().cpu() for k, v in pl_module.state_dict().items()},
                    "world_size": trainer.world_size,
                    "backend": torch.distributed.get_backend() if distributed else None,
                    "slurm_procid": os.environ.get("SLURM_PROCID")},
                   self.folder / f"rank{trainer.global_rank}.pt")
