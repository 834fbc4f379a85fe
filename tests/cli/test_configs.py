"""Every option of every config group composes, and a typo lists the valid choices."""

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from biqa.config import CONFIG_DIR, run_name

CONF = Path(CONFIG_DIR)
GROUPS = ["model", "model/backbone", "data", "data/depth", "optim", "trainer", "callbacks", "logger", "debug",
          "experiment", "ablation"]


def options(group: str) -> list[str]:
    folder = CONF / group
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml")
                  if group not in ("model", "data") or p.parent == folder)


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_composes(group, compose_config):
    choices = options(group)
    assert choices or group in ("experiment", "ablation"), f"conf/{group} is empty"
    for choice in choices:
        cfg = compose_config("train", [f"{group}={choice}"])
        OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("config_name", ["train", "eval", "predict"])
def test_primary_configs_compose(config_name, compose_config):
    overrides = {"eval": ["ckpt_path=x.ckpt"], "predict": ["input_dir=."]}.get(config_name, [])
    cfg = compose_config(config_name, overrides)
    OmegaConf.to_container(cfg, resolve=True)


def test_unknown_model_lists_the_valid_choices(compose_config):
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("train", ["model=lifeiqaa"])
    assert "lifeiqa" in str(error.value) and "pooled" in str(error.value)


def test_unknown_dataset_lists_the_valid_choices(compose_config):
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("train", ["data=koniq"])
    assert "synthetic" in str(error.value)


def test_run_name_is_stable_and_safe():
    assert run_name("") == "default"
    assert run_name("model=lifeiqa,seed=1") == "model=lifeiqa,seed=1"
    assert run_name("model/backbone=swin_base") == "model-backbone=swin_base"
    long = ",".join(f"key{i}=value{i}" for i in range(40))
    assert run_name(long) == run_name(long) and len(run_name(long)) <= 100
    assert run_name(long) != run_name(long + ",x=1")
