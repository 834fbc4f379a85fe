"""A launcher config the cluster cannot run is refused before anything is submitted, against the real
cluster's `scontrol show partition|node`: one message naming each `hydra.launcher.*` key to change and what
the partition offers, no traceback, no job."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tests.reliability.conftest import REPO
from tests.slurm.conftest import squeue_ids

pytestmark = pytest.mark.slurm


@pytest.mark.parametrize(("launcher", "expected"), [
    (["hydra/launcher=slurm", "hydra.launcher.partition=low"],  # the GPU preset on a CPU-only partition
     ["Slurm partition low cannot run these jobs", "hydra.launcher.gpus_per_node=1: its nodes have no GPUs",
      "hydra.launcher.cpus_per_task=8 x tasks_per_node=1: its nodes have", "hydra.launcher.mem_gb=64: its nodes"]),
    (["hydra/launcher=slurm_cpu", "hydra.launcher.mem_gb=100000", "hydra.launcher.cpus_per_task=64"],
     ["Slurm partition low cannot run", "hydra.launcher.mem_gb=100000: its nodes have",
      "hydra.launcher.cpus_per_task=64 x tasks_per_node=1"]),
    (["hydra/launcher=slurm_cpu", "hydra.launcher.partition=gpu"],
     ["hydra.launcher.partition=gpu: the cluster has no such partition; it has low, high"]),
], ids=["gpus-on-a-cpu-partition", "more-cpus-and-memory-than-a-node", "unknown-partition"])
def test_a_launcher_config_the_cluster_cannot_run_is_refused_before_submission(tmp_path, slurm_env, launcher,
                                                                               expected):
    env = {key: value for key, value in slurm_env.items() if key != "HYDRA_FULL_ERROR"}
    before = squeue_ids()
    result = subprocess.run([sys.executable, "-m", "biqa.cli.sweep", "study=smoke", f"paths.root_dir={tmp_path}",
                             *launcher, "--no-wait"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "FailedJobError" not in result.stderr, result.stderr
    assert not squeue_ids() - before and not list(tmp_path.rglob(".submitit")), "nothing was submitted"
