"""Data loaders whose worker processes leave Slurm's signals to the main process.

Slurm signals every process of a job: the time-limit warning (SIGUSR1 for Lightning, SIGUSR2 for submitit)
and the SIGTERM of a requeue or a pre-emption reach the loader workers too. A worker would run the main
process's handler of the warning (copied into it when it was forked: a checkpoint and a requeue per worker)
and die on SIGTERM, and the main process would then fail with "DataLoader worker ... is killed by signal:
Terminated" before it could stop as a requeued job. Workers ignore all three: the main process handles them
and shuts its workers down; a SIGKILL still ends them."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader

JOB_SIGNALS = {signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM}


class SignalSafeLoader(DataLoader):
    """Starts its workers with Slurm's signals blocked, so that a signal arriving while a worker starts waits
    until the worker ignores it (and reaches the main process once its workers are started)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("worker_init_fn", start_worker)
        super().__init__(*args, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, JOB_SIGNALS)
        try:
            return super().__iter__()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def start_worker(worker_id: int) -> None:
    for signum in JOB_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, JOB_SIGNALS)
    # What Lightning's seed_everything(workers=True) installs on a loader without its own worker_init_fn.
    if os.environ.get("PL_SEED_WORKERS") == "1":
        pl_worker_init_function(worker_id)
