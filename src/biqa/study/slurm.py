"""A study's jobs on Slurm: the launcher's request checked against the cluster before anything is submitted;
without a waiting sweeper, submit and return, ask Slurm where each job is, and never submit a job again while
Slurm still holds it.

Each job's state file records its Slurm job id (`slurm_job_id`), written at submission and again by the job
itself when it starts (a requeued job keeps its id). A job that has neither finished nor failed is looked up
in `squeue` (queued or running now) and, when squeue no longer lists it, in `sacct` (how it ended)."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException

from biqa.lit.slurm import oneliner_fields
from biqa.run_folder import STATE_FILE, read_json, write_state
from biqa.study.records import Status
from biqa.study.spec import Job

log = logging.getLogger(__name__)


class SlurmConfigError(CompactHydraException, ValueError):
    """A launcher config the cluster cannot run: Hydra prints its message alone, without a traceback."""


QUEUED_STATES = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


def check_cluster_fits(launcher: Mapping[str, Any]) -> None:
    """Refuses a launcher config (`hydra.launcher`) that the cluster cannot run, before sbatch would: an unknown
    partition, or more GPUs, CPUs, memory, nodes or time than the partition's nodes have. Asks `scontrol`."""
    if shutil.which("scontrol") is None:
        raise SlurmConfigError("hydra/launcher=slurm submits to Slurm, but its commands (scontrol, sbatch) are not "
                               "on PATH: run on a Slurm login node, or start a one-node cluster with `make slurm-up` "
                               "(docs/cluster.md)")
    partitions = {fields["PartitionName"]: fields for fields in _scontrol_show("partition")}
    name = launcher.get("partition")
    if name is None:
        defaults = [p for p, fields in partitions.items() if fields.get("Default") == "YES"]
        if not defaults:
            raise SlurmConfigError("hydra.launcher.partition is unset and the cluster has no default partition: "
                                   f"set it to one of {', '.join(partitions)}")
        name = defaults[0]
    if name not in partitions:
        raise SlurmConfigError(f"hydra.launcher.partition={name}: the cluster has no such partition; it has "
                               f"{', '.join(partitions) or 'none'}")
    nodes = [n for n in _scontrol_show("node") if name in n.get("Partitions", "").split(",")]
    offers = {"gpus": max((_gpus(n.get("Gres", "")) for n in nodes), default=0),
              "cpus": max((int(n.get("CPUTot", 0)) for n in nodes), default=0),
              "mem_gb": max((int(n.get("RealMemory", 0)) for n in nodes), default=0) / 1024,
              "nodes": len(nodes)}
    tasks, cpus = int(launcher.get("tasks_per_node") or 1), int(launcher.get("cpus_per_task") or 1)
    gpus, mem_gb = int(launcher.get("gpus_per_node") or 0), launcher.get("mem_gb")
    problems = []
    if gpus > offers["gpus"]:
        problems.append(f"hydra.launcher.gpus_per_node={gpus}: its nodes have "
                        f"{offers['gpus'] or 'no'} GPUs (set gpus_per_node={offers['gpus']}: hydra/launcher=slurm_cpu asks for none)")
    if tasks * cpus > offers["cpus"]:
        problems.append(f"hydra.launcher.cpus_per_task={cpus} x tasks_per_node={tasks}: its nodes have "
                        f"{offers['cpus']} CPUs")
    if mem_gb is not None and float(mem_gb) > offers["mem_gb"]:
        problems.append(f"hydra.launcher.mem_gb={mem_gb}: its nodes have {offers['mem_gb']:.1f} GB")
    if int(launcher.get("nodes") or 1) > offers["nodes"]:
        problems.append(f"hydra.launcher.nodes={launcher.get('nodes')}: it has {offers['nodes']} node(s)")
    max_minutes = _minutes(partitions[name].get("MaxTime", "UNLIMITED"))
    timeout = launcher.get("timeout_min")
    if max_minutes is not None and timeout is not None and int(timeout) > max_minutes:
        problems.append(f"hydra.launcher.timeout_min={timeout}: its time limit is {max_minutes} minutes")
    if problems:
        raise SlurmConfigError(f"Slurm partition {name} cannot run these jobs, nothing was submitted:\n  "
                               + "\n  ".join(problems))


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


def _scontrol_show(entity: str) -> list[dict[str, str]]:
    """`scontrol show partition|node`, one dict of KEY=VALUE fields per entry."""
    try:
        result = subprocess.run(["scontrol", "show", entity, "--oneliner"], capture_output=True, text=True,
                                timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", "") or error
        raise SlurmConfigError(f"hydra/launcher=slurm: `scontrol show {entity}` failed ({detail}); is the cluster "
                               "up? (a local one: `make slurm-up`, docs/cluster.md)") from error
    return [oneliner_fields(line) for line in result.stdout.splitlines() if line.strip()]


def _gpus(gres: str) -> int:
    """GPUs in a node's `Gres` (`gpu:4`, `gpu:a100:4(S:0-1)`, `(null)`)."""
    return sum(int(count) for count in re.findall(r"gpu(?::[\w.-]+)?:(\d+)", gres))


def _minutes(max_time: str) -> int | None:
    """Slurm's `MaxTime` (`UNLIMITED`, `MM`, `HH:MM:SS`, `D-HH:MM:SS`) in whole minutes; None if unlimited."""
    if max_time in ("UNLIMITED", "INFINITE", "NONE"):
        return None
    days, _, clock = max_time.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    hours, minutes, seconds = ([0] * (3 - len(parts)) + parts) if len(parts) > 1 else (0, parts[0], 0)
    return int(days or 0) * 1440 + hours * 60 + minutes + (seconds > 0)


def _run(command: list[str]) -> list[str]:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        log.warning("%s failed (%s): the Slurm state of the study's jobs is unknown", command[0], error)
        return []
    return result.stdout.splitlines()
