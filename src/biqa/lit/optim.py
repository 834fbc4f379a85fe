"""Optimizer parameter groups and the warm-up + decay schedule shared by every decoder."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from biqa.models.base import QualityModel


@dataclass
class OptimConfig:
    optimizer: Any = None
    """A torch optimizer partially applied (`_partial_: true` config or a callable) that takes the parameter
    groups and `lr`; None: AdamW with torch's defaults."""
    lr: float = 1e-4
    backbone_lr_mult: float = 1.0
    """Backbone learning rate = lr * backbone_lr_mult (fine-tuned backbones usually want < 1)."""
    weight_decay: float = 0.01
    warmup_epochs: float = 0.0
    schedule: str = "cosine"
    """cosine | step | constant, applied per optimisation step after the warm-up."""
    step_epochs: float = 10.0
    step_gamma: float = 0.1
    min_lr_ratio: float = 0.0
    decay_from: str = "warmup_end"
    """Where the decay's epochs are counted from: "warmup_end" (the step decays at warm-up + k * step_epochs,
    the cosine spans the steps after the warm-up) or "start" (absolute epochs: at k * step_epochs, the
    cosine over all steps; timm's schedulers, as the Life-IQA authors' Swin code uses them)."""
    warmup_start_ratio: float | None = None
    """The warm-up's first lr as a fraction of lr, rising linearly to lr (the authors' WARMUP_LR / BASE_LR);
    None: from lr / warm-up steps."""
    no_decay: str = "below_2d"
    """Parameters without weight decay: "below_2d" (norm weights, biases and scalars such as Life-IQA's
    gamma) or "vectors_and_biases" (1-D tensors and `.bias` only: a 0-dim scalar is decayed, the Swin/DeiT
    grouping the Life-IQA authors train with)."""


SCHEDULES = ("cosine", "step", "constant")
DECAY_ORIGINS = ("warmup_end", "start")
NO_DECAY_RULES = ("below_2d", "vectors_and_biases")


def parameter_groups(net: QualityModel, cfg: OptimConfig) -> list[dict]:
    """Four groups: backbone/decoder x decayed/not. What is not decayed: see `OptimConfig.no_decay`."""
    if cfg.no_decay not in NO_DECAY_RULES:
        raise ValueError(f"optim.no_decay '{cfg.no_decay}' is unknown; choose one of {', '.join(NO_DECAY_RULES)}")
    backbone_ids = net.backbone_parameter_ids()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        if cfg.no_decay == "below_2d":
            decayed = param.ndim > 1
        else:
            decayed = param.ndim != 1 and not name.endswith(".bias")
        key = (id(param) in backbone_ids, decayed)
        groups.setdefault(key, []).append(param)
    return [
        {
            "params": params,
            "lr": cfg.lr * (cfg.backbone_lr_mult if in_backbone else 1.0),
            "weight_decay": cfg.weight_decay if decayed else 0.0,
            "name": f"{'backbone' if in_backbone else 'decoder'}{'' if decayed else '_no_decay'}",
        }
        for (in_backbone, decayed), params in sorted(groups.items())
    ]


def build_optimizer(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    factory = cfg.optimizer
    if factory is None:
        factory = torch.optim.AdamW
    elif isinstance(factory, Mapping):
        factory = instantiate(factory, _partial_=True, _convert_="all")
    return factory(groups, lr=cfg.lr)


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, cfg: OptimConfig) -> float:
    """Multiplier of each group's base lr at optimisation step `step` (linear warm-up, then the schedule)."""
    if cfg.decay_from not in DECAY_ORIGINS:
        raise ValueError(f"optim.decay_from '{cfg.decay_from}' is unknown; choose one of {', '.join(DECAY_ORIGINS)}")
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        if cfg.warmup_start_ratio is None:
            return (step + 1) / warmup
        return cfg.warmup_start_ratio + (1 - cfg.warmup_start_ratio) * step / warmup
    origin = warmup if cfg.decay_from == "warmup_end" else 0
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        return cfg.step_gamma ** int((step - origin) / max(1, cfg.step_epochs * steps_per_epoch))
    if cfg.schedule == "cosine":
        progress = min(1.0, (step - origin) / max(1, total_steps - origin))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"optim.schedule '{cfg.schedule}' is unknown; choose one of {', '.join(SCHEDULES)}")
