"""A study's jobs on Slurm without a waiting sweeper: submit and return, ask Slurm where each job is, and
never submit a job again while Slurm still holds it.

Each job's state file records its Slurm job id (`slurm_job_id`), written at submission and again by the job
itself when it starts (a requeued job keeps its id). A job that has neither finished nor failed is looked up
in `squeue` (queued or running now) and, when squeue no longer lists it, in `sacct` (how it ended)."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from biqa.run_folder import STATE_FILE, read_json, write_state
from biqa.study.records import Status
from biqa.study.spec import Job

log = logging.getLogger(__name__)

QUEUED_STATES = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


def submit(launcher: Any, jobs: Sequence[Job], job_overrides: Sequence[Sequence[str]], study_dir: Path) -> None:
    """Hands `jobs` to the launcher's `submit` (a Slurm job array) and records each one's Slurm job id."""
    if not hasattr(launcher, "submit"):
        raise ValueError(f"hydra.sweeper.wait=false submits jobs and returns, which {type(launcher).__name__} "
                         "cannot do: use hydra/launcher=slurm")
    handles = launcher.submit([list(o) for o in job_overrides], initial_job_idx=0)
    for job, handle in zip(jobs, handles, strict=True):
        write_state(study_dir / job.name, "submitted", name=job.name, fingerprint=job.fingerprint,
                    slurm_job_id=str(handle.job_id))
        print(f"  submitted  {handle.job_id:>12s} {job.name}", flush=True)


def slurm_states(job_ids: Sequence[str]) -> dict[str, str]:
    """Slurm's state of each job id (array tasks as `ARRAY_TASK`): squeue for the jobs it still holds, sacct
    for the others. Ids neither knows are left out."""
    states: dict[str, str] = {}
    if not job_ids:
        return states
    for line in _run(["squeue", "--noheader", "--array", "--format=%i %T", f"--jobs={','.join(job_ids)}"]):
        fields = line.split()
        if len(fields) >= 2:
            states[fields[0]] = fields[1]
    missing = [job_id for job_id in job_ids if job_id not in states]
    if missing:
        for line in _run(["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State",
                          f"--jobs={','.join(missing)}"]):
            fields = line.split("|")
            if len(fields) >= 2 and fields[1]:
                states.setdefault(fields[0], fields[1].split()[0])  # "CANCELLED by 1234" -> CANCELLED
    return states


def with_slurm_states(statuses: Mapping[Job, Status], study_dir: Path) -> dict[Job, Status]:
    """`statuses` with each started-but-unfinished job that Slurm still holds marked queued or running."""
    ids = {}
    for job, status in statuses.items():
        if status is Status.INTERRUPTED:
            state = read_json(study_dir / job.name / STATE_FILE) or {}
            if state.get("slurm_job_id"):
                ids[job] = str(state["slurm_job_id"])
    if not ids:
        return dict(statuses)
    states = slurm_states(sorted(set(ids.values())))
    result = dict(statuses)
    for job, job_id in ids.items():
        state = states.get(job_id, "")
        if state in QUEUED_STATES:
            result[job] = Status.QUEUED
        elif state in RUNNING_STATES:
            result[job] = Status.RUNNING
    return result


def status_lines(statuses: Mapping[Job, Status], study_dir: Path) -> list[str]:
    """One line per job: its status, its Slurm job id (if it was submitted) and its name."""
    lines = []
    for job, status in statuses.items():
        state = read_json(study_dir / job.name / STATE_FILE) or {}
        lines.append(f"  {status.value:11s} {str(state.get('slurm_job_id') or '-'):>12s} {job.name}")
    return lines


def _run(command: list[str]) -> list[str]:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        log.warning("%s failed (%s): the Slurm state of the study's jobs is unknown", command[0], error)
        return []
    return result.stdout.splitlines()
