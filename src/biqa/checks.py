"""Impossible run configurations, caught before training starts, each named with the change that fixes it.

`check_config` reads the composed config alone, before anything is built; `check_compatibility` looks at
the built model, data and loss terms. Each raises one `ConfigError` listing every problem it found.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from hydra.utils import get_class
from omegaconf import DictConfig

from biqa.lit.losses import DistortionTypeLoss, LossTerm
from biqa.models.backbones import DEFAULT_OUT_INDICES
from biqa.models.base import QualityModel

log = logging.getLogger(__name__)

class ConfigError(ValueError):
    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("this run cannot work as configured:\n" + "\n".join(f"  - {p}" for p in self.problems))


def check_config(cfg: DictConfig, choices: Mapping[str, str | None] | None = None) -> None:
    """`choices`: the config groups picked for the run (Hydra's runtime choices, read from the running Hydra
    app when not given; without one, the ablation check is skipped)."""
    if choices is None:
        choices = _hydra_choices()
    problems = (_ablation_problems(choices) + _recipe_problems(cfg, choices) + _stage_problems(cfg.model)
                + _multirun_ddp_problems(cfg))
    if problems:
        raise ConfigError(problems)


def check_compatibility(net, datamodule, losses: Mapping[str, LossTerm], model_cfg: DictConfig) -> None:
    """The built model, data and loss terms against each other. Loads the dataset's records only when a
    loss term needs to know its labels."""
    problems = _depth_problems(net, datamodule)
    type_losses = [name for name, term in losses.items() if isinstance(term, DistortionTypeLoss)]
    if type_losses:
        problems += _distortion_label_problems(type_losses, losses, datamodule, model_cfg)
    if problems:
        raise ConfigError(problems)


# -- ablations ----------------------------------------------------------------------------------------------

def _ablation_problems(choices: Mapping[str, str | None]) -> list[str]:
    ablation, model = choices.get("ablation"), choices.get("model")
    if not ablation or not model or "/" not in ablation:
        return []
    owner = ablation.split("/")[0]
    if owner == model:
        return []
    return [f"ablation={ablation} is an ablation of model={owner}, but the run's model is model={model}: drop "
            f"model={model} (each conf/ablation/{owner}/ file selects {owner} itself), or pick an ablation "
            f"from conf/ablation/{model}/"]


def _recipe_problems(cfg: DictConfig, choices: Mapping[str, str | None]) -> list[str]:
    # A paper recipe sets model keys (depth, loss scale, ...) that only some models take.
    fits = list((cfg.get("recipe") or {}).get("models") or [])
    experiment, model = choices.get("experiment"), choices.get("model")
    if not fits or not model or model in fits:
        return []
    return [f"experiment={experiment} is a recipe for model={' | '.join(fits)} (its model keys fit those), but the "
            f"run's model is model={model}: drop model={model}, pick a {', '.join(fits)} model, or use the "
            f"experiment written for {model} (conf/experiment/{model}_*.yaml)"]


def _hydra_choices() -> Mapping[str, str | None]:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}


# -- DDP inside a multirun ------------------------------------------------------------------------------------

def _multirun_ddp_problems(cfg: DictConfig) -> list[str]:
    """Lightning's own DDP launcher starts the other ranks by running the command line again: inside a Hydra
    multirun (`-m`, a sweep, a study) each of them would run the whole sweep. Ranks that Slurm or torchrun
    start are joined instead, and those are fine."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    trainer = cfg.get("trainer") or {}
    strategy, devices = str(trainer.get("strategy") or ""), trainer.get("devices", 1)
    if not strategy.startswith("ddp") or "spawn" in strategy or str(devices) == "1":
        return []
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return []
    if SLURMEnvironment.detect() or TorchElasticEnvironment.detect():
        return []
    return [f"trainer.strategy={strategy} with trainer.devices={devices} inside a multirun (-m, biqa-sweep): "
            "Lightning starts the other DDP processes by running this command line again, so each would run the "
            "whole sweep. Run the jobs one at a time without -m (e.g. for s in 0 1; do biqa-train seed=$s "
            f"trainer.strategy={strategy}; done), or on Slurm with one task per device (hydra/launcher=slurm "
            "hydra.launcher.tasks_per_node=<trainer.devices>), where Lightning joins the tasks Slurm starts"]


# -- backbone stages a decoder taps (each model states its own rule) -----------------------------------------

def _stage_problems(model: DictConfig) -> list[str]:
    net = model.get("net")
    if net is None or net.get("_target_") is None:
        return []
    try:
        model_class = get_class(net.get("_target_"))
    except (ImportError, ValueError):  # an unimportable target is Hydra's to report, at instantiation
        return []
    if not isinstance(model_class, type) or not issubclass(model_class, QualityModel):
        return []
    backbones = {"model.backbone": net.get("backbone")}
    if net.get("depth_backbone") is not None:
        backbones["model.depth_backbone"] = net.get("depth_backbone")
    problems = []
    for where, backbone in backbones.items():
        if backbone is None:
            continue
        out_indices = list(backbone.get("out_indices") or DEFAULT_OUT_INDICES)
        problem = model_class.stage_problem(net, where, out_indices)
        if problem:
            problems.append(problem)
    return problems


# -- what the model needs from the data ----------------------------------------------------------------------

def _depth_problems(net, datamodule) -> list[str]:
    if not getattr(net, "uses_depth", False) or datamodule.depth_provider is not None:
        return []
    return [f"{type(net).__name__} needs depth maps but no depth provider is configured: add "
            "data/depth=depth_anything (learned depth, needs transformers and the model weights), "
            "data/depth=folder data.depth.root=DIR (precomputed maps), or data/depth=not_learned_blur_proxy "
            "(an offline proxy, not learned depth)"]


def _distortion_label_problems(names: list[str], losses: Mapping[str, LossTerm], datamodule,
                               model_cfg: DictConfig) -> list[str]:
    records = datamodule.load_records()
    if not records.has_distortion_labels:
        required = [name for name in names if losses[name].required]
        for name in set(names) - set(required):
            log.warning("%s has no distortion-type labels: the model.losses.%s term is skipped", records.name, name)
        return [f"model.losses.{name} is required (required: true) but dataset {records.name} has no "
                "distortion-type labels: train on a dataset that has them (synthetic, kadid10k, tid2013, csiq, "
                f"live) or set model.losses.{name}.required=false to skip the term where labels are missing"
                for name in required]
    classes = model_cfg.net.get("num_distortion_types")
    labels = max(record.distortion_type for record in records.records if record.distortion_type is not None)
    if classes is None or labels < classes:
        return []
    count = max(labels + 1, len(records.distortion_types or []))
    return [f"dataset {records.name} has {count} distortion types (labels up to {labels}) but the model "
            f"classifies {classes}: set model.net.num_distortion_types={count}"]
