"""What a data loader worker does when it starts, beyond Lightning's seeding.

Slurm signals every process of a job: the time-limit warning (SIGUSR1 for Lightning, SIGUSR2 for submitit)
and the SIGTERM of a requeue or a pre-emption reach the loader workers too. A worker would run the main
process's handler of the warning (copied into it when it was forked: a checkpoint and a requeue per worker)
and die on SIGTERM, and the main process would then fail with "DataLoader worker ... is killed by signal:
Terminated" before it could stop as a requeued job. Workers ignore all three: the main process handles them
and shuts its workers down; a SIGKILL still ends them."""

from __future__ import annotations

import os
import signal

from lightning.fabric.utilities.seed import pl_worker_init_function


def start_worker(worker_id: int) -> None:
    for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    # What Lightning's seed_everything(workers=True) installs on a loader without its own worker_init_fn.
    if os.environ.get("PL_SEED_WORKERS") == "1":
        pl_worker_init_function(worker_id)
