"""Pre-emption on the real cluster, both ways Slurm stops a running job that it will start again, each ending
with exactly the test metrics of the same job run without interruption:

- the time limit: a job with `--time=1 --signal=USR1@10` gets SIGUSR1 while it trains, checkpoints at the end
  of its batch, requeues itself (`scontrol requeue`, Lightning's auto-requeue) and resumes from that checkpoint;
- partition pre-emption: a study job on the `low` partition is pre-empted by a job on `high` (SIGTERM, then
  SIGKILL after the partition's GraceTime) and requeued by Slurm; it resumes from its last step checkpoint
  (callbacks=resumable).

Both run with two loader workers: their state file never says failed, and their output holds no traceback."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import TINY, compose_in
from tests.reliability.conftest import REPO
from tests.slurm.conftest import follow, job_fields, sbatch, wait_for_accounting, wait_until

from biqa.cli.sweep import main
from biqa.engine import train
from biqa.study.launch import load

pytestmark = pytest.mark.slurm

WORKERS = ["data.num_workers=2", "data.persistent_workers=false"]
# 6 steps per epoch, 12 in all; dropout makes the result depend on the random generators' state too.
SETTING = [o for o in TINY if not o.startswith("data.num_workers")] + WORKERS + [
    "model.net.dropout=0.3", "trainer.max_epochs=2", "trainer.deterministic=true", "threads=1"]


def assert_same_metrics(metrics: dict[str, float], reference: dict[str, float]) -> None:
    assert set(metrics) == set(reference) and any(k.startswith("test/") for k in reference)
    for name, value in reference.items():
        assert metrics[name] == pytest.approx(value, rel=0, abs=1e-7), name


def test_the_time_limit_signal_requeues_and_the_job_resumes_to_the_uninterrupted_metrics(
        tmp_path, slurm_cache, slurm_env):
    reference = train(compose_in(tmp_path / "reference", slurm_cache, "train", SETTING))

    logs, output, marker = tmp_path / "logs", tmp_path / "job.out", tmp_path / "training"
    command = [sys.executable, "-m", "biqa.cli.train", *SETTING, f"paths.log_dir={logs}",
               f"paths.cache_dir={slurm_cache}", "+callbacks.pace._target_=tests.slurm.callbacks.SlowFirstAttempt",
               "+callbacks.pace.seconds=5", f"+callbacks.pace.marker={marker}"]
    # slurmctld looks at time limits every 30 s and sends the warning at the first look that is less than 30 s
    # before the warning time (50 s here): 20 to 50 s after the start, while the first attempt trains (5 s a
    # step, 12 steps, over a minute) and after its start-up (a warning before the trainer handles it kills).
    job_id = sbatch("--time=1", "--signal=USR1@10", "--cpus-per-task=1", "--open-mode=append",
                    f"--output={output}", f"--chdir={REPO}", f"--wrap=srun {shlex.join(command)}")

    def run_dir() -> Path | None:
        folders = list((logs / "train").glob("*")) if (logs / "train").exists() else []
        return folders[0] if folders else None

    # Slurm gives the requeued job the same limit: a longer one lets the resumed run end without a warning.
    seen, restarts = follow(job_id, run_dir, timeout=420, on_requeue=lambda: subprocess.run(
        ["scontrol", "update", f"JobId={job_id}", "TimeLimit=10"], check=True))

    text = output.read_text()
    assert restarts == 1, text
    wait_for_accounting(job_id, "COMPLETED")
    assert "failed" not in seen and "requeued" in seen and seen[-1] == "finished", seen
    assert text.count("SIGUSR1: checkpoint and requeue at the end of this training batch") == 1, \
        "the main process alone handles the warning, not its loader workers"
    assert "Traceback" not in text and "DataLoader worker" not in text, text
    folder = run_dir()
    assert [p.name for p in folder.glob("hpc_ckpt_*.ckpt")] == ["hpc_ckpt_1.ckpt"]
    # From that checkpoint, or from the epoch's last.ckpt when the warning came in an epoch's last batch.
    assert re.search(rf"resuming from {re.escape(str(folder))}/(hpc_ckpt_1|checkpoints/last)\.ckpt", text)
    assert_same_metrics(json.loads((folder / "result.json").read_text())["metrics"], reference)


def test_a_study_job_preempted_by_the_high_partition_resumes_to_the_uninterrupted_metrics(
        tmp_path, slurm_cache, slurm_env, capsys):
    study = ["study=smoke", "~study.variants.mlp", "study.seeds=[0]", f"paths.cache_dir={slurm_cache}", *SETTING,
             "model.net.dropout=0.0", "callbacks=resumable", "callbacks.step_checkpoint.every_n_train_steps=1",
             "+callbacks.pace._target_=tests.slurm.callbacks.SlowFirstAttempt", "+callbacks.pace.seconds=5",
             f"+callbacks.pace.marker={tmp_path / 'training'}", "+callbacks.pace.after_step=2"]
    reference_args = [*study, f"paths.root_dir={tmp_path / 'reference'}"]
    assert main(reference_args) == 0, "the same job, uninterrupted, in this process"
    (reference_job,) = load(reference_args).jobs
    reference = json.loads((load(reference_args).study_dir / reference_job.name / "result.json").read_text())

    args = [*study, f"paths.root_dir={tmp_path / 'slurm'}", "hydra/launcher=slurm_cpu", "hydra.launcher.partition=low"]
    assert main([*args, "--no-wait"]) == 0
    capsys.readouterr()
    job_dir = load(args).study_dir / reference_job.name
    job_id = json.loads((job_dir / "job.json").read_text())["slurm_job_id"]
    wait_until((tmp_path / "training").exists, 180, "the low job to train past step 2",
               state=lambda: job_fields(job_id).get("JobState"))

    high = sbatch("--partition=high", "--cpus-per-task=2", "--output=/dev/null", "--wrap=sleep 1")
    seen, restarts = follow(job_id, lambda: job_dir, timeout=420)

    assert restarts >= 1
    wait_for_accounting(high, "COMPLETED")
    wait_for_accounting(job_id, "COMPLETED")
    assert "failed" not in seen and "preempted" in seen and seen[-1] == "finished", seen
    logs = "".join(p.read_text() for p in (load(args).study_dir / ".submitit").rglob("*.err"))
    assert "Traceback" not in logs and "DataLoader worker" not in logs, logs
    record = json.loads((job_dir / "result.json").read_text())
    assert_same_metrics(record["metrics"], reference["metrics"])
