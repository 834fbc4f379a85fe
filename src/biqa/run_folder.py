"""What a run's folder holds, named in one place: every layer that writes or reads a run's files uses these
names. Imports nothing else of biqa."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
"""The run's record: metrics, checkpoint, provenance, resolved config."""
EVAL_RESULT_FILE = "eval_result.json"
PREDICTIONS_FILE = "test_predictions.csv"
"""One row per test image: name, MOS, prediction, and distortion type and level where the dataset has them."""
ROUTING_FILE = "test_routing.csv"
"""Models with a mixture of experts: one row per test image, router, crop, token and chosen expert, with its
gate weight (biqa.lit.routing)."""
SCATTER_FILE = "test_scatter.png"
SPLIT_FILE = "split.json"
SKIPPED_FILE = "skipped_records.csv"
"""Rows dropped by `data.validation.on_error=skip`."""
PROBLEMS_FILE = "dataset_problems.csv"
"""Every problem found when validation stops the run."""
STATE_FILE = "job.json"
"""Written when a sweep job starts and updated when it ends: its fingerprint, overrides and status."""
WANDB_ID_FILE = "wandb_run_id.txt"
"""The id of the run's W&B run: a resumed or requeued run continues it."""
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"


def last_checkpoint(folder: Path) -> str | None:
    """The newer of checkpoints/last.ckpt and the mid-epoch checkpoint saved when Slurm warned of the job's end
    (`hpc_ckpt_<n>.ckpt`, biqa.lit.slurm)."""
    saved = [p for p in [folder / CHECKPOINT_DIR / LAST_CHECKPOINT, *folder.glob("hpc_ckpt_*.ckpt")] if p.exists()]
    return str(max(saved, key=lambda p: p.stat().st_mtime_ns)) if saved else None


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(content, indent=1, default=str))
    partial.replace(path)


def write_state(folder: Path, status: str, **fields: Any) -> None:
    """Updates the job state file with `status` and `fields`."""
    path = folder / STATE_FILE
    state = read_json(path) or {}
    state.update(fields, status=status, updated=time.strftime("%Y-%m-%dT%H:%M:%S"), host=socket.gethostname(),
                 pid=os.getpid())
    write_json(path, state)
