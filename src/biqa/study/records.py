"""Where a study job keeps its state, and how a re-run of the study tells finished jobs from the rest.

A job folder holds `job.json` (written when the job starts: its fingerprint, overrides and status) and,
once it has finished, `result.json` (the run's record, whose config carries the `study_job` metadata).
A record counts as finished only if its fingerprint is the one the study expects now: a variant whose
overrides were edited since is stale, and its old folder is set aside rather than resumed.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from biqa.run_folder import RESULT_FILE, STATE_FILE, read_json
from biqa.study.spec import Job


class Status(str, Enum):
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    """Started but neither finished nor failed (killed, timed out, pre-empted): re-run, resuming."""
    STALE = "stale"
    MISSING = "missing"
    QUEUED = "queued"
    """Submitted to Slurm and waiting there (its Slurm job id is in its state file)."""
    RUNNING = "running"
    """Running under Slurm now."""

    @property
    def runnable(self) -> bool:
        """A re-run of the study (re)starts it: not finished, and not queued or running elsewhere."""
        return self not in (Status.FINISHED, Status.QUEUED, Status.RUNNING)


def record_fingerprint(record: dict[str, Any]) -> str | None:
    return ((record.get("config") or {}).get("study_job") or {}).get("fingerprint")


def job_status(folder: Path, job: Job) -> Status:
    record = read_json(folder / RESULT_FILE)
    if record is not None:
        return Status.FINISHED if record_fingerprint(record) == job.fingerprint else Status.STALE
    state = read_json(folder / STATE_FILE)
    if state is None:
        return Status.MISSING
    if state.get("fingerprint") != job.fingerprint:
        return Status.STALE
    return Status.FAILED if state.get("status") == "failed" else Status.INTERRUPTED


def set_aside(folder: Path) -> Path:
    """Renames a stale job folder out of the way (never deletes results)."""
    for n in range(1, 10_000):
        target = folder.with_name(f"{folder.name}.stale-{n}")
        if not target.exists():
            folder.rename(target)
            return target
    raise RuntimeError(f"too many stale copies of {folder}")
