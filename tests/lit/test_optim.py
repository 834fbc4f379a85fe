"""The lr schedule and the weight-decay groups, including the Life-IQA authors' variants; the optimizer is a
`_partial_` config like every other part: any torch optimizer, biqa adding the groups."""

import pytest
import torch
from torch import nn

from biqa.lit.optim import OptimConfig, build_optimizer, lr_factor, parameter_groups
from biqa.models.lifeiqa import ScaledMoE

STEPS_PER_EPOCH = 10


def factors(cfg: OptimConfig, epochs: int = 30) -> list[float]:
    total = epochs * STEPS_PER_EPOCH
    return [lr_factor(step, total, STEPS_PER_EPOCH, cfg) for step in range(total)]


def test_step_decay_counted_from_the_warmup_end_or_from_the_start():
    ours = factors(OptimConfig(schedule="step", warmup_epochs=2, step_epochs=10))
    theirs = factors(OptimConfig(schedule="step", warmup_epochs=2, step_epochs=10, decay_from="start"))
    first_drop = {name: next(s for s in range(20, 300) if f[s] < 1.0) // STEPS_PER_EPOCH
                  for name, f in (("ours", ours), ("theirs", theirs))}
    assert first_drop == {"ours": 12, "theirs": 10}
    # The authors' decays fall at absolute epochs 10 and 20.
    assert theirs[199] == pytest.approx(0.1) and theirs[200] == pytest.approx(0.01)


def test_cosine_from_the_start_spans_all_steps_down_to_the_floor():
    cfg = OptimConfig(schedule="cosine", warmup_epochs=2, decay_from="start", min_lr_ratio=0.0333)
    values = factors(cfg)
    assert values[20] < 1.0  # already partway down the cosine when the warm-up ends
    assert values[-1] == pytest.approx(0.0333, abs=1e-3)


def test_warmup_starts_at_the_configured_fraction_of_the_lr():
    cfg = OptimConfig(schedule="constant", warmup_epochs=2, warmup_start_ratio=10.0)
    values = factors(cfg)
    assert values[0] == pytest.approx(10.0)  # KADID: WARMUP_LR 2e-4 above BASE_LR 2e-5
    assert values[10] == pytest.approx(5.5) and values[20] == 1.0


class WithGamma(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.moe = ScaledMoE(8, num_experts=2, top_k=1, dropout=0.0, gamma_init=0.1, pre_norm=True)

    def backbone_parameter_ids(self) -> set[int]:
        return set()


@pytest.mark.parametrize(("rule", "gamma_decayed"), [("below_2d", False), ("vectors_and_biases", True)])
def test_scalar_gamma_gets_weight_decay_only_under_the_authors_grouping(rule, gamma_decayed):
    net = WithGamma()
    groups = parameter_groups(net, OptimConfig(weight_decay=0.01, no_decay=rule))
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert (id(net.moe.gamma) in decayed) is gamma_decayed
    biases = [p for name, p in net.named_parameters() if name.endswith(".bias")]
    assert biases and not any(id(p) in decayed for p in biases)


def test_unknown_rules_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="optim.no_decay 'x' is unknown; choose one of below_2d"):
        parameter_groups(WithGamma(), OptimConfig(no_decay="x"))
    with pytest.raises(ValueError, match="optim.decay_from 'end' is unknown"):
        lr_factor(0, 10, 1, OptimConfig(decay_from="end"))


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
