"""DDP ranks that Slurm starts, on the real cluster: `srun --ntasks-per-node=2 biqa-train trainer=ddp_cpu
trainer.devices=2`, and a study job through the launcher with `tasks_per_node=2`. Lightning joins the two
Slurm tasks (no children of its own): two gloo ranks, ending with the same parameters, and one result record.
(`srun --ntasks=2` is refused by Lightning's SLURM environment, which asks for --ntasks-per-node.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.conftest import TINY
from tests.reliability.conftest import REPO

from biqa.cli.sweep import main
from biqa.study.launch import load

pytestmark = pytest.mark.slurm

DDP = ["trainer=ddp_cpu", "trainer.devices=2", "threads=1", "+callbacks.ranks._target_=tests.slurm.callbacks.SaveParameters"]


def assert_two_slurm_ranks_with_the_same_parameters(folder: Path) -> None:
    ranks = [torch.load(folder / f"rank{rank}.pt", weights_only=False) for rank in (0, 1)]
    assert [(r["world_size"], r["backend"]) for r in ranks] == [(2, "gloo"), (2, "gloo")]
    assert sorted(r["slurm_procid"] for r in ranks) == ["0", "1"], "each rank is a Slurm task"
    first, second = (r["parameters"] for r in ranks)
    assert first.keys() == second.keys() and first
    for name, value in first.items():
        assert torch.equal(value, second[name]), name


def test_srun_starts_two_ranks_that_train_as_one_run(tmp_path, slurm_cache, slurm_env):
    logs = tmp_path / "logs"
    command = ["srun", "--ntasks-per-node=2", "--cpus-per-task=1", sys.executable, "-m", "biqa.cli.train", *TINY, *DDP,
               f"+callbacks.ranks.folder={tmp_path / 'ranks'}", f"paths.log_dir={logs}",
               f"paths.cache_dir={slurm_cache}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert_two_slurm_ranks_with_the_same_parameters(tmp_path / "ranks")
    assert len(list(logs.rglob("result.json"))) == 1, "rank zero alone writes the run's record"


def test_the_launcher_with_two_tasks_per_node_runs_a_ddp_study_job(tmp_path, slurm_cache, slurm_env):
    args = ["study=smoke", "~study.variants.mlp", "study.seeds=[0]", f"paths.root_dir={tmp_path}",
            f"paths.cache_dir={slurm_cache}", *TINY, *DDP, f"+callbacks.ranks.folder={tmp_path / 'ranks'}",
            "hydra/launcher=slurm_cpu", "hydra.launcher.tasks_per_node=2"]
    assert main(args) == 0
    study = load(args)
    (job,) = study.jobs
    assert_two_slurm_ranks_with_the_same_parameters(tmp_path / "ranks")
    assert (study.study_dir / job.name / "result.json").exists()
    assert len(list(study.study_dir.rglob("result.json"))) == 1
