"""The ridge probe's closed-form fit, end to end through the engine: one pass, a penalty picked on the
validation part, a checkpoint that tests (and re-evaluates) like any decoder's."""

import json
from pathlib import Path

import pytest
import torch
from tests.conftest import TINY

from biqa.engine import evaluate, train
from biqa.lit.ridge import RidgeProbeRegressor
from biqa.models.backbones import Backbone
from biqa.models.probe import StageStatisticsProbe

PROBE = [*TINY, "model=ridge_probe", "model/backbone=test_efficientnet", "model.backbone.out_indices=[0,1,2,3,4]",
         "model.backbone.freeze=all", "trainer.max_epochs=3"]


def test_the_solution_is_ridge_regression_on_scaled_statistics():
    torch.manual_seed(0)
    probe = StageStatisticsProbe(Backbone("test_efficientnet", out_indices=(0, 1, 2, 3, 4), freeze="all"))
    module = RidgeProbeRegressor(probe, {"score": torch.nn.Identity()}, alphas=[1e-3, 1e3])
    x = torch.randn(200, 6, dtype=torch.float64) * torch.arange(1, 7) + 3
    true_weights = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.0, 1.0], dtype=torch.float64)
    y = ((x - x.mean(0)) / x.std(0)) @ true_weights + 0.4
    module._train = [(x, y)]
    weights, intercept, mean, scale = module._solve()
    torch.testing.assert_close(weights[:, 0], true_weights, atol=1e-3, rtol=0)
    assert weights[:, 1].abs().sum() < 0.5 * true_weights.abs().sum()   # a large penalty shrinks
    assert intercept == pytest.approx(0.4)
    torch.testing.assert_close(mean, x.mean(0))


@pytest.mark.slow
def test_one_pass_fits_picks_a_penalty_and_its_checkpoint_reevaluates(compose_config):
    cfg = compose_config("train", PROBE)
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    record = json.loads((run / "result.json").read_text())
    assert record["metrics"]["val/ridge_alpha"] in cfg.model.module.alphas
    assert record["metrics"]["val/srcc"] > 0.3          # synthetic blur/noise/JPEG levels are easy to rank
    checkpoint = torch.load(record["checkpoint"], map_location="cpu", weights_only=False)
    assert checkpoint["epoch"] == 0                      # the fit stopped after its one pass
    assert checkpoint["state_dict"]["net.head.weight"].abs().sum() > 0

    eval_cfg = compose_config("eval", [f"ckpt_path={record['checkpoint']}", "trainer.enable_progress_bar=false"])
    reproduced = evaluate(eval_cfg)
    assert reproduced["test/srcc"] == pytest.approx(metrics["test/srcc"], abs=1e-6)
