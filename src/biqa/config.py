"""What every layer shares about configs: where conf/ is, biqa's OmegaConf resolvers (registered on import)
and helpers that read or rewrite a composed config. Imports nothing else of biqa."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
BACKBONE_TARGET = "biqa.models.backbones.Backbone"


def run_name(override_dirname: str) -> str:
    """A run folder name from the command's overrides: stable, filesystem-safe, at most ~100 characters."""
    if not override_dirname:
        return "default"
    name = re.sub(r"[^A-Za-z0-9=,._+-]", "-", override_dirname.replace("/", "-"))
    if len(name) <= 100:
        return name
    return f"{name[:80]}..{hashlib.sha1(override_dirname.encode()).hexdigest()[:10]}"


OmegaConf.register_new_resolver("run_name", run_name, replace=True)


def without_pretrained_weights(net_cfg: DictConfig) -> DictConfig:
    """A copy of a model config whose backbones and pretrained encoders start from random weights (a
    checkpoint overwrites them): evaluation and cost reports must not need a hub or the weight files."""
    net_cfg = OmegaConf.create(OmegaConf.to_container(net_cfg, resolve=True))

    def strip(node: Any) -> None:
        if isinstance(node, DictConfig):
            if node.get("_target_") == BACKBONE_TARGET:
                node.weights = "none"
            if node.get("distortion_checkpoint") is not None:
                node.distortion_checkpoint = None
                node.allow_untrained_encoder = True
            for value in node.values():
                strip(value)

    strip(net_cfg)
    return net_cfg


def backbone_nodes(node: Any) -> list[DictConfig]:
    """Every backbone config inside a model config (RGB, depth, ...)."""
    if not isinstance(node, DictConfig):
        return []
    found = [node] if node.get("_target_") == BACKBONE_TARGET else []
    return found + [n for value in node.values() for n in backbone_nodes(value)]
