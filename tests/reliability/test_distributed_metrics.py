"""Evaluation metrics do not depend on the number of processes: two DDP ranks (gloo, CPU) report what one
process reports on the same checkpoint, for a test part whose size does not divide by two (the distributed
sampler pads it with a repeated image), with K crops averaged per image before the correlations."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from tests.reliability.conftest import RUN, run_cli

from biqa.engine import evaluate, train
from biqa.lit.losses import ScoreLoss
from biqa.lit.regression import QualityRegressor
from biqa.metrics import correlation_metrics
from biqa.models.base import QualityModel, QualityOutput

# 9 images per reference (3 distortions x 3 levels); one test reference: 9 test images, 5 + 5 on two ranks.
# Evaluation batches of 2 images x 2 crops, so each rank updates the metric several times.
ODD_TEST_PART = RUN + ["++data.dataset.levels=3", "++data.eval_batch_size=2"]


@pytest.mark.slow
def test_two_ddp_processes_report_the_single_process_metrics(compose_config, tmp_path):
    cfg = compose_config("train", ODD_TEST_PART)
    trained = train(cfg)
    record = json.loads((Path(cfg.paths.output_dir) / "result.json").read_text())
    assert record["num_images"]["test"] % 2 == 1
    checkpoint = record["checkpoint"]

    single = evaluate(compose_config("eval", [f"ckpt_path={checkpoint}", "++trainer.enable_progress_bar=false"]))
    assert single == pytest.approx({k: v for k, v in trained.items() if k.startswith("test/")}, abs=1e-6)

    logs = tmp_path / "logs"
    result = run_cli("evaluate", f"ckpt_path={checkpoint}", "trainer=ddp_cpu", "logger=csv", f"paths.log_dir={logs}",
            "++trainer.enable_progress_bar=false", timeout=400)
    assert "Starting with 2 processes" in result.stdout + result.stderr
    (metrics_file,) = logs.glob("eval/*/csv/metrics.csv")
    (row,) = [r for r in csv.DictReader(metrics_file.open()) if r.get("test/srcc")]
    distributed = {name: float(row[name]) for name in single}
    assert distributed == pytest.approx(single, abs=1e-6)


class MeanPixel(QualityModel):
    """Scores a crop by its mean pixel value: crop predictions a test can compute by hand."""

    def forward(self, images, depth=None):
        return QualityOutput(score=images.mean(dim=(1, 2, 3)))

    def decoder_parameters(self):
        return iter(())


def test_crops_are_averaged_per_image_and_repeated_images_counted_once():
    module = QualityRegressor(MeanPixel(), {"score": ScoreLoss()})
    # 4 images x 3 crops; crop c of image i is filled with (10 * i + c) / 255.
    values = torch.tensor([[10.0 * i + c for c in range(3)] for i in range(4)])
    images = values[:, :, None, None, None].expand(4, 3, 3, 4, 4).to(torch.uint8)
    scores = torch.tensor([0.4, 0.1, 0.9, 0.3])
    batch = {"images": images, "score": scores, "index": torch.tensor([7, 3, 5, 1])}
    module.test_step(module.on_after_batch_transfer(batch, 0), 0)
    # A padded shard repeats image 5 (index 5) in a later batch.
    repeat = {key: value[2:3] for key, value in batch.items()}
    module.test_step(module.on_after_batch_transfer(repeat, 0), 1)

    preds, target, index = module.metrics["test"].gathered()
    assert index.tolist() == [1, 3, 5, 7]
    per_image_mean = (values.mean(dim=1) / 255)[[3, 1, 2, 0]]
    assert torch.allclose(preds, per_image_mean)
    assert torch.equal(target, scores[[3, 1, 2, 0]])
    computed = {k: float(v) for k, v in module.metrics["test"].compute().items()}
    assert computed == pytest.approx(correlation_metrics(per_image_mean, scores[[3, 1, 2, 0]]), abs=1e-6)
