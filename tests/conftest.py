"""Shared fixtures: compose biqa's Hydra configs as the CLI would, with every output in a temp folder."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from biqa.config import CONFIG_DIR


def load_script(path: Path, name: str) -> ModuleType:
    """A script that is not part of the package (benchmarks/, experiments/), loaded as module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Two test processes share two cores: more threads per process only thrash.
torch.set_num_threads(1)

# A tiny but real setting: 4 references x 3 distortions x 2 levels of 48 px, a random tiny backbone.
TINY = [
    "model/backbone=test_efficientnet",
    "data.dataset.num_references=6",
    "data.dataset.image_size=48",
    "data.dataset.distortions=[gaussian_blur,gaussian_noise,jpeg]",
    "data.dataset.levels=2",
    "data.train_crops.size=32",
    "data.eval_crops.size=32",
    "data.eval_crops.count=2",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.persistent_workers=false",
    "trainer.max_epochs=1",
    "++trainer.enable_progress_bar=false",
    "++trainer.enable_model_summary=false",
    "callbacks.progress_bar=null",
]


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One synthetic-data cache for the whole session (generation is deterministic)."""
    return tmp_path_factory.mktemp("cache")


def compose_in(folder: Path, cache: Path, config_name: str = "train", overrides: list[str] | None = None) -> DictConfig:
    """The config the CLI would run, every output under `folder` (the run itself in folder/run)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=overrides or [], return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.root_dir = str(folder)
        cfg.paths.output_dir = str(folder / "run")
        cfg.paths.log_dir = str(folder / "logs")
        cfg.paths.cache_dir = str(cache)
        cfg.hydra.runtime.output_dir = str(folder / "run")
    HydraConfig.instance().set_config(cfg)
    (folder / "run").mkdir(parents=True, exist_ok=True)
    return cfg


@pytest.fixture
def compose_config(tmp_path: Path, shared_cache: Path) -> Callable[..., DictConfig]:
    def make(config_name: str = "train", overrides: list[str] | None = None) -> DictConfig:
        return compose_in(tmp_path, shared_cache, config_name, overrides)

    yield make
    GlobalHydra.instance().clear()
