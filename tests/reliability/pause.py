"""A callback for the kill-and-resume test: it holds a training run still, once, so the test can kill it at a
known point (SIGKILL from outside, as a scheduler or the OOM killer would)."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L


class PauseOnce(L.Callback):
    """Before the first batch after `after_step` optimizer steps, writes `marker` and sleeps; a run that finds
    the marker already there (the same command, restarted) does not pause."""

    def __init__(self, after_step: int, marker: str) -> None:
        self.after_step, self.marker = after_step, Path(marker)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step >= self.after_step and not self.marker.exists():
            self.marker.write_text(f"epoch {trainer.current_epoch} batch {batch_idx} step {trainer.global_step}\n")
            time.sleep(600)
