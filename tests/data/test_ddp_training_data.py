"""The training data under DDP (two gloo processes, trainer=ddp_cpu, Lightning's own launcher): each rank draws a
disjoint shard of the training part every epoch and together they cover it; the order and the crops (positions
and flips, seen in the crops' bytes) change from epoch to epoch and repeat for the same seed; a run killed
mid-epoch resumes with exactly the batches each rank had not reached."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import lightning as L
import pytest
from tests.reliability.conftest import REPO, RUN, cli_env, run_cli, wait_for_marker

pytestmark = pytest.mark.slow

# 4 training references x 6 images = 24 images, 12 per rank: 3 batches of 4 per rank and epoch, 6 steps in all.
SETTING = RUN + ["trainer=ddp_cpu", "trainer.max_epochs=2", "trainer.deterministic=true", "test=false",
                 "callbacks=resumable", "callbacks.step_checkpoint.every_n_train_steps=2",
                 "callbacks.model_checkpoint.save_top_k=0"]
KILLED_AFTER_STEP = 4  # the second epoch's second batch is the first one not trained


class BatchLog(L.Callback):
    """Appends each training batch a rank starts (epoch, step, images, a digest of every crop) to
    folder/rank<R>.jsonl."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        crops = batch["images"].flatten(0, 1)
        entry = {"epoch": trainer.current_epoch, "step": trainer.global_step, "index": batch["index"].tolist(),
                 "crops": [hashlib.sha1(crop.cpu().numpy().tobytes()).hexdigest() for crop in crops]}
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / f"rank{trainer.global_rank}.jsonl").open("a") as stream:
            stream.write(json.dumps(entry) + "\n")


def command(tmp_path: Path, shared_cache: Path, name: str) -> list[str]:
    return [*SETTING, f"paths.log_dir={tmp_path / name}", f"paths.cache_dir={shared_cache}",
            "+callbacks.batch_log._target_=tests.data.test_ddp_training_data.BatchLog",
            f"+callbacks.batch_log.folder={tmp_path / name / 'batches'}"]


def batches(folder: Path) -> dict[int, list[dict]]:
    return {rank: [json.loads(line) for line in (folder / f"rank{rank}.jsonl").read_text().splitlines()]
            for rank in (0, 1)}


def test_ddp_training_data_shards_reshuffles_repeats_and_resumes(tmp_path, shared_cache):
    run_cli("train", *command(tmp_path, shared_cache, "reference"), timeout=600)
    reference = batches(tmp_path / "reference" / "batches")
    (run_dir,) = (tmp_path / "reference" / "train").iterdir()
    train_part = json.loads((run_dir / "split.json").read_text())["train"]

    by_epoch: dict[int, dict[int, list[dict]]] = defaultdict(dict)
    for rank, entries in reference.items():
        assert [e["step"] for e in entries] == list(range(6))
        for epoch in (0, 1):
            by_epoch[epoch][rank] = [e for e in entries if e["epoch"] == epoch]
    for epoch, ranks in by_epoch.items():
        shards = [{i for e in ranks[rank] for i in e["index"]} for rank in (0, 1)]
        assert not shards[0] & shards[1], f"epoch {epoch}: the ranks share images"
        assert len(shards[0]) == len(shards[1]) == 12 and len(shards[0] | shards[1]) == len(train_part)
    for rank in (0, 1):
        first, second = by_epoch[0][rank], by_epoch[1][rank]
        assert [e["index"] for e in first] != [e["index"] for e in second], "the order did not change"
        crops = [{i: c for e in epoch for i, c in zip(e["index"], e["crops"], strict=True)} for epoch in (first, second)]
        common = crops[0].keys() & crops[1].keys()
        assert common and all(crops[0][i] != crops[1][i] for i in common), "an image got the same crop twice"

    # The same command again, killed (both processes) before the second epoch's second batch.
    marker = tmp_path / "paused"
    killed_command = [*command(tmp_path, shared_cache, "killed"),
                      "+callbacks.pause._target_=tests.reliability.pause.PauseOnce",
                      f"+callbacks.pause.after_step={KILLED_AFTER_STEP}", f"+callbacks.pause.marker={marker}"]
    killed = subprocess.Popen([sys.executable, "-m", "biqa.cli.train", *killed_command], cwd=REPO, env=cli_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_marker(marker, killed, timeout=600)
        time.sleep(1)  # the other rank reaches the same batch and waits for this one
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=60)
    finally:
        if killed.poll() is None:
            os.killpg(killed.pid, signal.SIGKILL)
        killed.stderr.close()
    before_kill = batches(tmp_path / "killed" / "batches")
    for rank in (0, 1):  # the same seed: the same batches and crops, up to the kill
        assert before_kill[rank] == reference[rank][:len(before_kill[rank])]
        assert len(before_kill[rank]) >= KILLED_AFTER_STEP

    for log in (tmp_path / "killed" / "batches").iterdir():
        log.rename(log.with_suffix(".before_kill"))
    resumed = run_cli("train", *killed_command, timeout=600)
    assert "resuming from" in resumed.stdout + resumed.stderr
    after_resume = batches(tmp_path / "killed" / "batches")
    for rank in (0, 1):
        assert after_resume[rank] == reference[rank][KILLED_AFTER_STEP:], f"rank {rank} resumed elsewhere"
