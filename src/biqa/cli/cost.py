from pathlib import Path

import hydra
from hydra import compose
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from biqa.config import CONFIG_DIR


def model_configs(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """(name, model config) per requested model; composed again with each model's own overrides."""
    from hydra.core.hydra_config import HydraConfig

    choices = HydraConfig.get().runtime.choices
    if cfg.models is None and cfg.setting != "paper":
        return [(choices["model"], cfg.model)]  # as composed, with every model.* override of the command
    names = [choices["model"]] if cfg.models is None else cfg.models
    if names == "all":
        names = list(cfg.paper_backbones)
    configs = []
    for name in names:
        overrides = [f"model={name}", *cfg.model_overrides.get(name, [])]
        if cfg.setting == "paper":
            overrides.append(f"model/backbone={cfg.paper_backbones[name]}")
        configs.append((name, compose("cost", overrides=overrides).model))
    return configs


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="cost")
def main(cfg: DictConfig) -> None:
    from biqa.config import without_pretrained_weights
    from biqa.cost import format_table, measure, to_json

    rows = []
    for name, model_cfg in model_configs(cfg):
        net = instantiate(without_pretrained_weights(model_cfg.net))
        backbone = OmegaConf.select(model_cfg, "backbone.name")
        rows.append(measure(net, name, backbone, cfg.batch_size, cfg.crop_size, cfg.warmup, cfg.repeats, cfg.device))
        del net
    print(format_table(rows), flush=True)
    if cfg.json:
        Path(cfg.json).write_text(to_json(rows))
    print(to_json(rows), flush=True)


if __name__ == "__main__":
    main()
