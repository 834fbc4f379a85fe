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

Partition pre-emption (PreemptMode=REQUEUE) warns with SIGTERM instead, GraceTime seconds before SIGKILL, and
Slurm requeues the job only if it is still running then: a job that stops on SIGTERM, as Lightning's do at the
end of their batch, would end there, neither requeued nor finished. So a SIGTERM that Slurm sent to pre-empt
(`scontrol show job` gives the job a PreemptTime) is answered as the warning is: checkpoint at the batch end,
requeue, state file `preempted`. Any other SIGTERM (scancel, the one that follows a requeue) stops the run.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
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
        self.requeued = False

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
        if self.requeue_handler is None or self.requeued:
            return
        preempted = trainer.received_sigterm and being_preempted()
        wanted = self.pending or preempted
        requeue = wanted if trainer.world_size == 1 else trainer.strategy.reduce_boolean_decision(wanted, all=False)
        if requeue:
            if preempted:
                log.info("SIGTERM of a pre-emption: checkpoint and requeue at the end of this training batch")
            self.pending, self.requeued = False, True
            self.requeue_handler(signal.SIGUSR1, None)
            if trainer.is_global_zero:
                write_state(Path(trainer.default_root_dir), "preempted" if preempted else "requeued")


def requeue_this_job() -> bool:
    """`scontrol requeue` of this Slurm job; whether Slurm accepted it."""
    job_id = os.environ.get("SLURM_JOB_ID")
    try:
        subprocess.run(["scontrol", "requeue", str(job_id)], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        log.warning("scontrol requeue %s failed (%s)", job_id, error)
        return False
    return True


def being_preempted() -> bool:
    """Whether Slurm is pre-empting this job now (it has a PreemptTime)."""
    job_id = os.environ.get("SLURM_JOB_ID")
    try:
        shown = subprocess.run(["scontrol", "show", "job", "--oneliner", str(job_id)], capture_output=True,
                               text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as error:
        log.warning("SIGTERM: cannot ask Slurm whether job %s is being pre-empted (%s); it stops", job_id, error)
        return False
    return oneliner_fields(shown).get("PreemptTime", "None") not in ("None", "Unknown")


def oneliner_fields(line: str) -> dict[str, str]:
    """The KEY=VALUE fields of one entry of `scontrol show ... --oneliner`."""
    return dict(field.split("=", 1) for field in line.split() if "=" in field)
