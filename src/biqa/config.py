"""What every layer shares about configs: where conf/ is, biqa's OmegaConf resolvers (registered on import)
and helpers that read or rewrite a composed config. Imports only the other floor module, run_folder."""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from biqa.run_folder import WANDB_ID_FILE

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


def _hydra_config() -> DictConfig | None:
    return HydraConfig.get() if HydraConfig.initialized() else None


def run_group(_root_: DictConfig) -> str | None:
    """A W&B group: the study id for a study's jobs, the sweep folder (relative to the log folder) for the jobs
    of any other multirun (plain, Optuna), none for a single run."""
    study = OmegaConf.select(_root_, "study_job.study")
    if study:
        return str(study)
    hydra = _hydra_config()
    if hydra is None or hydra.mode != RunMode.MULTIRUN:
        return None
    sweep_dir = Path(str(hydra.sweep.dir))
    log_dir = OmegaConf.select(_root_, "paths.log_dir", default=None)
    if log_dir is not None and sweep_dir.is_relative_to(str(log_dir)):
        return str(sweep_dir.relative_to(str(log_dir)))
    return sweep_dir.name


def run_tags(_root_: DictConfig) -> list[str]:
    """W&B tags: the config groups picked (model, data, ablation, experiment), the study job's coordinates
    (variant, dataset, split seed, grid point, test dataset), and in any multirun the job's own overrides."""
    hydra = _hydra_config()
    tags = []
    if hydra is not None:
        choices = hydra.runtime.choices
        tags += [f"{group}:{choices[group]}" for group in ("model", "data", "ablation", "experiment")
                 if choices.get(group)]
    job = OmegaConf.select(_root_, "study_job")
    if job is not None:
        tags += [f"variant:{job.variant}", f"dataset:{job.dataset}", f"split:{job.seed}"]
        if job.get("grid"):
            tags.append(f"grid:{job.grid}")
        if job.get("kind") == "cross_eval":
            tags.append(f"test_dataset:{job.test_dataset}")
    elif hydra is not None and hydra.mode == RunMode.MULTIRUN:
        tags += [str(o) for o in hydra.overrides.task if not str(o).startswith("paths.")]
    return [tag[:64] for tag in dict.fromkeys(tags)]  # W&B refuses tags over 64 characters


def run_id(folder: str) -> str:
    """The W&B run id of the run in `folder`, kept there: a resumed or requeued job continues its own run."""
    path = Path(folder) / WANDB_ID_FILE
    try:
        return path.read_text().strip()
    except OSError:
        run = secrets.token_hex(4)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run)
        return run


def stage_count(last_stage: int) -> int:
    """Stages 0..last_stage: `model.backbone.freeze` that freezes exactly the trunk a feature cache stores."""
    return int(last_stage) + 1


OmegaConf.register_new_resolver("run_group", run_group, replace=True)
OmegaConf.register_new_resolver("stage_count", stage_count, replace=True)
OmegaConf.register_new_resolver("run_tags", run_tags, replace=True)
OmegaConf.register_new_resolver("run_id", run_id, replace=True)
