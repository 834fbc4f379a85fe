"""Checkpoint files that a kill cannot tear: the previous checkpoint stays whole until the new one is."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside its final name, flushes it to the disk, then renames
    it into place (a rename within one folder is atomic). Lightning's own save goes through a temporary file
    in the system's temp folder and moves it: where that folder is on another filesystem than the run's
    (a node's local /tmp, runs on shared storage), the move is a copy, and a run killed during it leaves a
    truncated checkpoint under the final name. Local paths only; remote URLs go to Lightning's save."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        write_atomically(Path(path), lambda stream: torch.save(checkpoint, stream))


def write_atomically(path: Path, write) -> None:
    """`write(stream)` into `path`'s temporary sibling (`.<name>.partial`, replaced by the next try after a
    kill), fsynced, then renamed onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as stream:
        write(stream)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(partial, path)
    # The rename itself reaches the disk with the folder's entry.
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
