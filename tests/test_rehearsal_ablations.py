"""Every ablation study's variants under its model's paper recipe (the README's paper-setting ablation
command, one variant per run): each composes with `debug=rehearsal`, passes the checks and builds its net at
full size on the meta device (no memory, no weights). Their full-size CPU rehearsal:
`python benchmarks/rehearsal.py --part ablations`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from biqa.checks import check_config
from biqa.config import CONFIG_DIR, without_pretrained_weights
from biqa.engine import rehearsal_config

sys.path.insert(0, str(Path(CONFIG_DIR).parent / "benchmarks"))
from rehearsal import ablation_runs  # noqa: E402

ABLATIONS = ablation_runs()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "overrides"), ABLATIONS, ids=[name for name, _ in ABLATIONS])
def test_every_ablation_variant_builds_at_full_size_under_its_recipe(compose_config, name, overrides):
    cfg = compose_config("train", [*overrides, "debug=rehearsal"])
    check_config(cfg, cfg.hydra.runtime.choices)
    with open_dict(cfg):
        cfg.data.dataset.root = "unused"  # the data path is rehearsed per experiment (tests/test_rehearsal.py)
    cfg = rehearsal_config(cfg)
    with torch.device("meta"):
        net = instantiate(without_pretrained_weights(cfg.model.net))
    assert sum(p.numel() for p in net.parameters()) > 10_000_000  # the paper's size, not a test model
    instantiate(cfg.model.losses)
