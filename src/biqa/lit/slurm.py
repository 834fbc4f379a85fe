"""Slurm pre-emption and time limits: checkpoint mid-epoch and requeue when Slurm warns.

The Slurm launcher asks for SIGUSR1 some seconds before the job is stopped (`--signal=USR1@90`, conf/hydra/
launcher/slurm.yaml). Under Slurm, Lightning's SLURM environment (auto_requeue, on by default) answers it by
saving `hpc_ckpt_<n>.ckpt` in the run folder and calling `scontrol requeue <job id>`; the requeued job runs the
same command, and `biqa.engine` resumes from the newest checkpoint of the run folder.

Lightning does that inside the signal handler, in the middle of whatever the process was doing: a training
step half done would be saved with its batch counted but its update not made. `RequeueAtBatchEnd` defers it to
the end of the current training batch, where a checkpoint resumes exactly (as the step checkpoints of
callbacks=resumable do), and under DDP to the same batch on every rank. The run's state file then says
`requeued` before Slurm's SIGTERM arrives, so that no view of the run folder takes the job for a failed one.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment

from biqa.run_folder import write_state

log = logging.getLogger(__name__)


class RequeueAtBatchEnd(L.Callback):
    def __init__(self) -> None:
        self.requeue_handler: Any = None
        self.pending = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not SLURMEnvironment.detect():
            return
        handler = signal.getsignal(signal.SIGUSR1)
        if callable(handler):  # Lightning's, installed when fitting starts unless auto_requeue is off
            self.requeue_handler = handler
            signal.signal(signal.SIGUSR1, self._defer)

    def _defer(self, signum: int, frame: FrameType | None) -> None:
        log.info("SIGUSR1: checkpoint and requeue at the end of this training batch")
        self.pending = True

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.requeue_handler is None:
            return
        requeue = self.pending if trainer.world_size == 1 else trainer.strategy.reduce_boolean_decision(
            self.pending, all=False)
        if requeue:
            self.pending = False
            self.requeue_handler(signal.SIGUSR1, None)
            if trainer.is_global_zero:
                write_state(Path(trainer.default_root_dir), "requeued")
