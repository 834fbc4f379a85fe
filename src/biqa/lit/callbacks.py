"""Callbacks that make an interrupted run resume as if it had never stopped."""

from __future__ import annotations

import os
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class ExactResume(L.Callback):
    """What resuming from a checkpoint needs beyond Lightning's own restore:

    - the training loader's position inside its epoch (`biqa.data.loading.resumable.ResumableLoader`): Lightning
      saves it, but does not hand it back when `configure_optimizers` asks for
      `trainer.estimated_stepping_batches`, as biqa's schedules do (Lightning issue #20550); loaded here,
      before the first batch is fetched;
    - the process's random generators (torch, CUDA, NumPy, Python), saved in every checkpoint and restored
      just before the first training batch, so dropout masks and any other draw continue as in the
      uninterrupted run (restored earlier, they would be moved on by the draws that starting a run makes);
    - the last validation's metrics, for a run resumed from its final checkpoint (killed while testing):
      its fit has nothing left to do and would otherwise report no validation metrics.
    """

    def __init__(self) -> None:
        self.pending_random_state: dict[str, Any] | None = None
        self.validation_metrics: dict[str, float] = {}

    def state_dict(self) -> dict[str, Any]:
        numpy_state = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            # Tensors and plain Python values only, so that checkpoints load with torch.load(weights_only=True).
            "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
            "python": random.getstate(),
            "validation_metrics": dict(self.validation_metrics),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self.validation_metrics = state.pop("validation_metrics", {})
        self.pending_random_state = state

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs before the checkpoint callbacks' on_validation_end (Lightning calls those last), so the
        # epoch's checkpoint carries the metrics it was selected on.
        if not trainer.sanity_checking:
            self.validation_metrics = {name: float(value) for name, value in trainer.callback_metrics.items()
                                       if name.startswith("val/")}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name, value in self.validation_metrics.items():
            trainer.callback_metrics.setdefault(name, torch.tensor(value))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A no-op unless the run restarts mid-epoch with loader states in its checkpoint, or once Lightning
        # has loaded them itself (it empties the list it loads from).
        trainer.fit_loop._load_combined_loader_states()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.pending_random_state is None:
            return
        state, self.pending_random_state = self.pending_random_state, None
        torch.set_rng_state(state["torch"])
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        random.setstate(_as_tuples(state["python"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    """random.setstate wants the nested tuples that a checkpoint round trip may turn into lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value


class StepCheckpoint(ModelCheckpoint):
    """`last.ckpt` every `every_n_train_steps` training steps and at the end of every epoch, after its
    validation and after the checkpoint callbacks listed before this one (the best-on-validation one saves
    there too): a run killed between those saves resumes from a checkpoint that has seen the epoch's
    validation, or from one taken before it, never from one in between. No step checkpoint at an epoch's
    last training batch: Lightning resumes from a checkpoint taken there as if the validation that follows
    had run, so a run killed during that validation would skip it (its metrics and the best-checkpoint
    choice with it)."""

    def __init__(self, every_n_train_steps: int, dirpath: str | None = None) -> None:
        super().__init__(dirpath=dirpath, save_top_k=0, save_last=True, every_n_train_steps=every_n_train_steps,
                         enable_version_counter=False)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if batch_idx + 1 < trainer.num_training_batches:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(os.path.join(self.dirpath, self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION))
