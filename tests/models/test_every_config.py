"""Every shipped model config and every ablation builds and trains: a forward and a backward pass of each, on
the tiny test backbone (the decoders keep their configured sizes)."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from biqa.config import CONFIG_DIR, without_pretrained_weights

CONF = Path(CONFIG_DIR)
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
ABLATIONS = sorted(str(p.relative_to(CONF / "ablation").with_suffix("")) for p in (CONF / "ablation").rglob("*.yaml"))
TINY_BACKBONE = ["model/backbone=test_efficientnet", "data.train_crops.size=96"]


def forward_backward(compose_config, overrides: list[str]) -> None:
    cfg = compose_config("train", overrides)
    depth_backbone = cfg.model.get("depth_backbone")
    if depth_backbone is not None and depth_backbone.name != "test_efficientnet":  # a depth-encoder ablation's
        cfg = compose_config("train", [*overrides, "model/backbone@model.depth_backbone=test_efficientnet"])  # own
    torch.manual_seed(0)
    net = instantiate(without_pretrained_weights(cfg.model.net))
    net.train()
    images = torch.rand(2, 3, 96, 96)
    depth = torch.rand(2, 1, 96, 96) if net.uses_depth else None
    output = net(images, depth=depth) if net.uses_depth else net(images)
    assert output.score.shape == (2,) and torch.isfinite(output.score).all()
    trainable = [p for p in net.parameters() if p.requires_grad]
    if not trainable:  # a closed-form model (the ridge probe) has nothing to back-propagate into
        return
    loss = output.score.sum() + sum(output.aux_losses.values()) + sum(
        extra.float().sum() for extra in output.extras.values())
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable), "no parameter got a gradient"


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_builds_and_trains(compose_config, model):
    forward_backward(compose_config, [f"model={model}", *TINY_BACKBONE])


@pytest.mark.slow
@pytest.mark.parametrize("ablation", ABLATIONS)
def test_every_ablation_builds_and_trains(compose_config, ablation):
    forward_backward(compose_config, [f"ablation={ablation}", *TINY_BACKBONE])


def test_the_lists_are_not_empty():
    assert {"lifeiqa", "dgiqa", "bfrd", "mfenet", "pooled"} <= set(MODELS) and len(ABLATIONS) > 40
