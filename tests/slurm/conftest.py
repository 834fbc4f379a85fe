"""The real-cluster tests: every test here submits to the Slurm cluster this machine runs (`make slurm-up`,
scripts/slurm_cluster.sh: partitions `low`, the default, whose jobs a `high` job pre-empts, and `high`).

Without a cluster they skip, saying how to start one; under CI (CI=true) a missing cluster is a failure. Jobs
run the repository's code with one torch thread, and may load test callbacks (`tests.slurm.callbacks`)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from tests.reliability.conftest import REPO

START_ONE = "start a one-node Slurm cluster with `make slurm-up` (scripts/slurm_cluster.sh, docs/cluster.md)"


def cluster_problem() -> str | None:
    """Why no cluster answers here, or None when slurmctld does and its node takes jobs."""
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
        node = subprocess.run(["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        return f"Slurm's commands do not run here ({error})"
    if "UP" not in ping.stdout:
        last_line = ((ping.stdout + ping.stderr).strip().splitlines() or ["no answer"])[-1]
        return f"slurmctld does not answer (scontrol ping: {last_line})"
    if not {"idle", "mix", "alloc"} & set(node.stdout.split()):
        return f"the cluster's node takes no jobs (sinfo: {node.stdout.strip() or node.stderr.strip()})"
    return None


@pytest.fixture(scope="session")
def cluster() -> None:
    problem = cluster_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI runs the Slurm tests on a real cluster, and there is none: {problem}; .ci/run must "
                    f"{START_ONE}")
    pytest.skip(f"no Slurm cluster: {problem}; {START_ONE}")


@pytest.fixture
def slurm_env(cluster, monkeypatch) -> dict[str, str]:
    """What this process and the jobs it submits (sbatch exports the environment) run with: one torch thread,
    the repository's tests importable, Hydra's full errors. Jobs the test leaves in Slurm are cancelled."""
    before = squeue_ids(arrays=False)
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")]),
           "HYDRA_FULL_ERROR": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield {**os.environ}
    GlobalHydra.instance().clear()
    left = squeue_ids(arrays=False) - before
    if left:
        subprocess.run(["scancel", *sorted(left)], check=False, capture_output=True)


@pytest.fixture(scope="session")
def slurm_cache(tmp_path_factory) -> Path:
    """One synthetic-data cache for every job of the session."""
    return tmp_path_factory.mktemp("slurm_cache")


def wait_until(condition: Callable[[], object], timeout: float, what: str, every: float = 1.0,
               state: Callable[[], object] = lambda: "") -> object:
    """Polls `condition` until it returns something true, which it returns; fails after `timeout` seconds,
    saying what `state` says then."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"waited {timeout:.0f} s for {what}: {state()}"
        time.sleep(every)


def job_fields(job_id: str) -> dict[str, str]:
    """`scontrol show job` of one job (empty once slurmctld has forgotten it)."""
    result = subprocess.run(["scontrol", "show", "job", "--oneliner", job_id], capture_output=True, text=True)
    return dict(field.split("=", 1) for field in result.stdout.split() if "=" in field)


def squeue_ids(arrays: bool = True) -> set[str]:
    """Every job id Slurm holds: array tasks as `ARRAY_TASK`, or (arrays=False) arrays by their job id."""
    result = subprocess.run(["squeue", "--noheader", *(["--array", "--format=%i"] if arrays else ["--format=%F"])],
                            capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def sacct_state(job_id: str) -> str:
    """How accounting (slurmdbd) records the job's allocation: COMPLETED, CANCELLED, RUNNING, ..."""
    result = subprocess.run(["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State",
                             f"--jobs={job_id}"], capture_output=True, text=True, check=True)
    states = [line.split("|")[1].split()[0] for line in result.stdout.splitlines() if line.startswith(job_id + "|")]
    return states[-1] if states else ""


def wait_for_accounting(job_id: str, state: str, timeout: float = 60) -> None:
    """Until sacct records the job's allocation in `state` (slurmdbd hears of a job's end after squeue does)."""
    wait_until(lambda: sacct_state(job_id) == state, timeout, f"sacct to record job {job_id} {state}",
               state=lambda: sacct_state(job_id))


def follow(job_id: str, run_dir: Callable[[], Path | None], timeout: float,
           on_requeue: Callable[[], None] = lambda: None) -> tuple[list[str], int]:
    """Until the job has left squeue: every status its state file passed through (in order) and how often
    Slurm restarted it. `on_requeue` runs once, when Slurm first reports a restart."""
    seen: list[str] = []
    restarts = 0
    deadline = time.monotonic() + timeout
    while job_id in squeue_ids() or job_fields(job_id).get("JobState") in ("COMPLETING", "RUNNING"):
        assert time.monotonic() < deadline, f"job {job_id} still in Slurm after {timeout:.0f} s: {seen}"
        folder = run_dir()
        state = json.loads((folder / "job.json").read_text()) if folder and (folder / "job.json").exists() else {}
        if state.get("status") and (not seen or seen[-1] != state["status"]):
            seen.append(state["status"])
        count = int(job_fields(job_id).get("Restarts", 0))
        if count > restarts and restarts == 0:
            on_requeue()
        restarts = max(restarts, count)
        time.sleep(0.3)
    return seen, restarts


def sbatch(*arguments: str) -> str:
    result = subprocess.run(["sbatch", "--parsable", *arguments], capture_output=True, text=True, check=True)
    return result.stdout.strip().split(";")[0]
