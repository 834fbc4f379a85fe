"""The probe's closed-form fits (ridge, RBF kernel ridge), end to end through the engine: one pass, a
solution picked on the validation part, a checkpoint that tests (and re-evaluates) like any decoder's."""

import json
from pathlib import Path

import pytest
import torch
from tests.conftest import TINY

from biqa.engine import evaluate, train
from biqa.lit.ridge import RidgeProbeRegressor, solve
from biqa.models.backbones import Backbone
from biqa.models.blocks.heads import RBFKernelHead
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
    ((solutions, mean, scale),) = module._solve()
    torch.testing.assert_close(solutions.weights[:, 0], true_weights, atol=1e-3, rtol=0)
    assert solutions.weights[:, 1].abs().sum() < 0.5 * true_weights.abs().sum()   # a large penalty shrinks
    assert solutions.intercept == pytest.approx(0.4)
    assert solutions.settings == [{"alpha": 1e-3}, {"alpha": 1e3}]
    torch.testing.assert_close(mean, x.mean(0))


def test_kernel_ridge_solves_the_regularized_system_and_the_head_reproduces_it():
    torch.manual_seed(0)
    x = torch.randn(120, 5, dtype=torch.float64) * 2 + 1
    y = torch.sin(x[:, 0]) + x[:, 1] ** 2 / 4
    solutions, mean, scale = solve(x, y, kernel=True, alphas=[0.1, 10.0], gammas=[0.5, 2.0])
    assert solutions.settings[3] == {"gamma": 2.0, "alpha": 10.0}
    z = (x - mean) / scale
    anchors = z.half().double()
    kernel = torch.exp(-2.0 / 5 * torch.cdist(anchors, anchors).square())
    dual = torch.linalg.solve(kernel + 10.0 * torch.eye(120, dtype=kernel.dtype), y - y.mean())
    torch.testing.assert_close(solutions.duals[3][1], dual)
    fitted = solutions.predict(z)
    # A non-linear target: the least-penalized kernel fit follows it far closer than the mean does.
    assert (fitted[:, 0] - y).square().mean() < 0.1 * (y - y.mean()).square().mean()

    head = RBFKernelHead(5)
    solutions.install(head, 3)
    with torch.no_grad():
        head_scores = head(((x - mean) / scale).float()).squeeze(-1)
    torch.testing.assert_close(head_scores.double(), fitted[:, 3], atol=1e-4, rtol=0)

    reloaded = RBFKernelHead(5)   # empty anchors: a checkpoint's shapes are taken on loading
    reloaded.load_state_dict(head.state_dict())
    assert reloaded.anchors.shape == (120, 5) and reloaded.anchors.dtype == torch.float16


def test_an_unknown_head_lists_the_choices():
    with pytest.raises(ValueError, match="model.net.head=mlp is unknown; choose one of linear, rbf_kernel"):
        StageStatisticsProbe(Backbone("test_efficientnet", out_indices=(0, 1, 2, 3, 4), freeze="all"), head="mlp")


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


@pytest.mark.slow
def test_the_kernel_probe_picks_a_width_and_penalty_and_its_checkpoint_reevaluates(compose_config):
    cfg = compose_config("train", [*PROBE, "model.net.head=rbf_kernel", "model.module.alphas=[1.0,10.0,100.0]",
                                   "model.module.gammas=[0.25,1.0]"])
    metrics = train(cfg)
    record = json.loads((Path(cfg.paths.output_dir) / "result.json").read_text())
    assert record["metrics"]["val/ridge_gamma"] in (0.25, 1.0) and record["metrics"]["val/ridge_alpha"] in (1.0, 10.0, 100.0)
    assert record["metrics"]["val/srcc"] > 0.3
    state = torch.load(record["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    assert state["net.head.anchors"].shape[0] == state["net.head.dual_weights"].shape[0] > 0

    eval_cfg = compose_config("eval", [f"ckpt_path={record['checkpoint']}", "trainer.enable_progress_bar=false"])
    assert evaluate(eval_cfg)["test/srcc"] == pytest.approx(metrics["test/srcc"], abs=1e-6)


@pytest.mark.slow
def test_two_backbones_with_a_kernel_head_each_fit_apart_and_reevaluate(compose_config):
    extra = "{_target_: biqa.models.backbones.Backbone, name: test_resnet, freeze: all}"
    cfg = compose_config("train", [*PROBE, "model.net.head=rbf_kernel", f"model.net.extra_backbones=[{extra}]",
                                   "model.net.combine=mean", "model.module.alphas=[1.0,10.0]",
                                   "model.module.gammas=[0.25,1.0]"])
    metrics = train(cfg)
    record = json.loads((Path(cfg.paths.output_dir) / "result.json").read_text())
    assert {"val/ridge_gamma", "val/ridge_alpha", "val/ridge_gamma_1", "val/ridge_alpha_1"} <= set(record["metrics"])
    state = torch.load(record["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    assert state["net.head.anchors"].shape[1] + state["net.extra_heads.0.anchors"].shape[1] == \
        state["net.feature_mean"].shape[0]
    eval_cfg = compose_config("eval", [f"ckpt_path={record['checkpoint']}", "trainer.enable_progress_bar=false"])
    assert evaluate(eval_cfg)["test/srcc"] == pytest.approx(metrics["test/srcc"], abs=1e-6)
