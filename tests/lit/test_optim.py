"""The optimizer is a `_partial_` config like every other part: any torch optimizer, biqa adding the groups."""

import torch

from biqa.lit.optim import OptimConfig, build_optimizer


def groups() -> list[dict]:
    return [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.2, "weight_decay": 0.0}]


def test_the_default_config_builds_adamw_with_its_betas(compose_config):
    cfg = compose_config("train", ["optim.optimizer.betas=[0.8,0.9]"])
    optimizer = build_optimizer(groups(), OptimConfig(**dict(cfg.optim)))
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["betas"] == (0.8, 0.9)
    assert optimizer.param_groups[0]["lr"] == 0.2, "each group keeps its own lr"


def test_any_torch_optimizer_is_one_override_away(compose_config):
    cfg = compose_config("train", ["optim.optimizer._target_=torch.optim.SGD", "+optim.optimizer.momentum=0.5",
                                   "~optim.optimizer.betas"])
    optimizer = build_optimizer(groups(), OptimConfig(**dict(cfg.optim)))
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.5


def test_a_stored_plain_dict_config_builds_the_same():
    stored = {"_target_": "torch.optim.Adam", "_partial_": True, "betas": [0.5, 0.6]}
    optimizer = build_optimizer(groups(), OptimConfig(optimizer=stored, lr=1e-3))
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["betas"] == (0.5, 0.6)
