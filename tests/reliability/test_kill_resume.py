"""A training run killed with SIGKILL mid-epoch and started again with the same command resumes from its
last checkpoint and ends with exactly the metrics of a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from tests.reliability.conftest import REPO, RUN, cli_env, run_cli

from biqa.engine import train

pytestmark = pytest.mark.slow

# 4 training references x 6 images in batches of 4: 6 steps per epoch, 12 in all; last.ckpt every 4 steps.
# Dropout makes the result depend on the random generators' state too, not only on the data order.
SETTING = RUN + [
    "model.net.dropout=0.3",
    "trainer.max_epochs=2",
    "trainer.deterministic=true",
    "callbacks=resumable",
    "callbacks.step_checkpoint.every_n_train_steps=4",
]
KILLED_AFTER_STEP = 8  # the second epoch's third batch


@pytest.mark.parametrize("data_path", [
    [],
    # Training the top stage over the stored trunk: the loader of the store resumes mid-epoch as well.
    ["+feature_cache=frozen_trunk", "feature_cache.views=4"],
], ids=["images", "trunk cache"])
def test_run_killed_mid_epoch_resumes_to_the_uninterrupted_metrics(compose_config, shared_cache, tmp_path, data_path):
    setting = [*SETTING, *data_path]
    reference = train(compose_config("train", setting))

    marker = tmp_path / "paused"
    command = [*setting, f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={shared_cache}",
               "+callbacks.pause._target_=tests.reliability.pause.PauseOnce",
               f"+callbacks.pause.after_step={KILLED_AFTER_STEP}", f"+callbacks.pause.marker={marker}"]
    killed = subprocess.Popen([sys.executable, "-m", "biqa.cli.train", *command], cwd=REPO, env=cli_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert killed.poll() is None, f"the run ended before it was killed:\n{killed.stderr.read()}"
            assert time.monotonic() < deadline, "the run never reached the step where it is killed"
            time.sleep(0.2)
        os.kill(killed.pid, signal.SIGKILL)
        assert killed.wait(timeout=60) == -signal.SIGKILL
    finally:
        if killed.poll() is None:
            killed.kill()
        killed.stderr.close()

    (run_dir,) = (tmp_path / "logs" / "train").iterdir()
    last = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["global_step"] == KILLED_AFTER_STEP and saved["epoch"] == 1
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches_served": 2}]
    assert not (run_dir / "result.json").exists()

    resumed = run_cli("train", *command)
    assert f"resuming from {last}" in resumed.stdout + resumed.stderr
    record = json.loads((run_dir / "result.json").read_text())
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 12
    assert set(record["metrics"]) == set(reference) and any(k.startswith("test/") for k in reference)
    for name, value in reference.items():
        assert record["metrics"][name] == pytest.approx(value, rel=0, abs=1e-7), name
