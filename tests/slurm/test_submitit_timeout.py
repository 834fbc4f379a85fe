"""submitit's own time-limit path on the real cluster: with the launcher's signal left to submitit (SIGUSR2
`signal_delay_s` before the limit, no USR1 override), a study job that reaches its time limit is checkpointed
by submitit and requeued while `hydra.launcher.max_num_timeout` allows, and the requeued job resumes from its
last step checkpoint (callbacks=resumable) and finishes."""

from __future__ import annotations

import json
import subprocess

import pytest
from tests.conftest import TINY
from tests.slurm.conftest import follow, wait_for_accounting, wait_until

from biqa.cli.sweep import main
from biqa.study.launch import load

pytestmark = pytest.mark.slurm


def test_a_job_at_its_time_limit_is_requeued_by_submitit_and_finishes(tmp_path, slurm_cache, slurm_env, capsys):
    marker = tmp_path / "training"
    args = ["study=smoke", "~study.variants.mlp", "study.seeds=[0]", f"paths.root_dir={tmp_path}",
            f"paths.cache_dir={slurm_cache}", *TINY, "threads=1", "trainer.max_epochs=2",
            "callbacks=resumable", "callbacks.step_checkpoint.every_n_train_steps=1",
            "+callbacks.pace._target_=tests.slurm.callbacks.SlowFirstAttempt", "+callbacks.pace.seconds=5",
            f"+callbacks.pace.marker={marker}",
            "hydra/launcher=slurm_cpu", "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=10",
            "hydra.launcher.max_num_timeout=1", "~hydra.launcher.additional_parameters.signal"]
    assert main([*args, "--no-wait"]) == 0
    capsys.readouterr()
    study = load(args)
    (job,) = study.jobs
    job_dir = study.study_dir / job.name
    job_id = json.loads((job_dir / "job.json").read_text())["slurm_job_id"]
    script = next((study.study_dir / ".submitit").rglob("*_submission.sh")).read_text()
    assert "#SBATCH --signal=USR2@10" in script and "#SBATCH --time=1" in script
    wait_until(marker.exists, 180, "the job to start training")

    # The requeued job gets a longer limit, so that it finishes instead of timing out a second time.
    seen, restarts = follow(job_id, lambda: job_dir, timeout=420, on_requeue=lambda: subprocess.run(
        ["scontrol", "update", f"JobId={job_id}", "TimeLimit=10"], check=True))

    assert restarts == 1
    wait_for_accounting(job_id, "COMPLETED")
    logs = "".join(p.read_text() for p in (study.study_dir / ".submitit").rglob("*_log.err"))
    assert "this job is timed-out" in logs, logs
    assert "failed" not in seen and seen[-1] == "finished", seen
    assert json.loads((job_dir / "result.json").read_text())["metrics"]["test/srcc"] is not None
