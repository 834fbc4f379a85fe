"""Slurm pre-emption on a CPU run: Slurm's warning signal (a real SIGUSR1) makes the run checkpoint at the end
of its training batch and call `scontrol requeue <job id>` (a fake `scontrol` on PATH records its arguments and
then stops the job, as Slurm does when it requeues one); the requeued job, the same command, resumes from that
checkpoint and ends with exactly the metrics of a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from tests.reliability.conftest import REPO, RUN, cli_env, wait_for_marker

from biqa.config import CONFIG_DIR
from biqa.engine import train

# 6 steps per epoch, 12 in all; dropout makes the result depend on the random generators' state too.
SETTING = RUN + ["model.net.dropout=0.3", "trainer.max_epochs=2", "trainer.deterministic=true"]
SIGNALLED_AT_STEP = 8  # while the second epoch's third batch starts: checkpointed when it ends, at step 9
JOB_ID = "4242"

FAKE_SCONTROL = """#!/bin/sh
# Records its arguments; then stops the job, as Slurm does when it requeues a running one.
echo "$@" >> "{record}"
kill -KILL $PPID
"""


class PauseUntilGo(L.Callback):
    """Before the first batch after `after_step` optimizer steps, writes `marker` and waits for `go` to exist
    (the test signals the process in between); a run that finds the marker (the requeued job) goes on."""

    def __init__(self, after_step: int, marker: str, go: str) -> None:
        self.after_step, self.marker, self.go = after_step, Path(marker), Path(go)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step >= self.after_step and not self.marker.exists():
            self.marker.write_text(f"step {trainer.global_step}\n")
            deadline = time.monotonic() + 300
            while not self.go.exists() and time.monotonic() < deadline:
                time.sleep(0.05)


def slurm_env(fake_bin: Path) -> dict[str, str]:
    """A one-task batch job as Slurm describes it to the process."""
    return {**cli_env(), "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": JOB_ID,
            "SLURM_JOB_NAME": "biqa-train", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "1",
            "SLURM_NODELIST": "localhost", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}


def test_the_slurm_launcher_asks_for_the_warning_signal():
    launcher = yaml.safe_load(Path(CONFIG_DIR, "hydra", "launcher", "slurm.yaml").read_text())
    assert launcher["additional_parameters"]["signal"] == "USR1@90"


@pytest.mark.slow
def test_sigusr1_checkpoints_requeues_and_the_requeued_job_resumes_to_the_uninterrupted_metrics(
        compose_config, shared_cache, tmp_path):
    reference = train(compose_config("train", SETTING))

    fake_bin, record = tmp_path / "bin", tmp_path / "scontrol_calls"
    fake_bin.mkdir()
    (fake_bin / "scontrol").write_text(FAKE_SCONTROL.format(record=record))
    (fake_bin / "scontrol").chmod(0o755)
    marker, go = tmp_path / "paused", tmp_path / "go"
    command = [sys.executable, "-m", "biqa.cli.train", *SETTING, f"paths.log_dir={tmp_path / 'logs'}",
               f"paths.cache_dir={shared_cache}", "+callbacks.pause._target_=tests.lit.test_slurm_requeue.PauseUntilGo",
               f"+callbacks.pause.after_step={SIGNALLED_AT_STEP}", f"+callbacks.pause.marker={marker}",
               f"+callbacks.pause.go={go}"]
    job = subprocess.Popen(command, cwd=REPO, env=slurm_env(fake_bin), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_for_marker(marker, job)
        os.kill(job.pid, signal.SIGUSR1)
        go.write_text("")
        assert job.wait(timeout=120) == -signal.SIGKILL, job.stderr.read()
    finally:
        if job.poll() is None:
            job.kill()
        job.stderr.close()

    assert record.read_text().split() == ["requeue", JOB_ID]
    (run_dir,) = (tmp_path / "logs" / "train").iterdir()
    (checkpoint,) = run_dir.glob("hpc_ckpt_*.ckpt")
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert saved["global_step"] == SIGNALLED_AT_STEP + 1 and saved["epoch"] == 1
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches_served": 3}]
    assert not (run_dir / "result.json").exists()

    requeued = subprocess.run(command, cwd=REPO, env=slurm_env(fake_bin), capture_output=True, text=True,
                              timeout=300)
    assert requeued.returncode == 0, requeued.stderr
    assert f"resuming from {checkpoint}" in requeued.stdout + requeued.stderr
    assert record.read_text().split() == ["requeue", JOB_ID]  # not requeued again
    metrics = json.loads((run_dir / "result.json").read_text())["metrics"]
    assert set(metrics) == set(reference) and any(k.startswith("test/") for k in reference)
    for name, value in reference.items():
        assert metrics[name] == pytest.approx(value, rel=0, abs=1e-7), name
