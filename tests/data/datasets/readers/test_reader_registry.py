from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from biqa.config import CONFIG_DIR
from biqa.data.datasets.readers import READERS, reader_class

FILE_READERS = [name for name in READERS if name != "synthetic"]


def test_unknown_name_lists_choices_and_suggests():
    with pytest.raises(ValueError, match=r"Unknown dataset 'koniq'\. Did you mean 'koniq10k'\?.*biq2021"):
        reader_class("koniq")


@pytest.mark.parametrize("name", FILE_READERS)
def test_registry_and_config_name_the_same_reader(name):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose(overrides=[f"+data={name}"])
    dataset = cfg.data.dataset
    assert get_class(dataset._target_) is reader_class(name)
    assert OmegaConf.is_missing(dataset, "root")
    assert cfg.data._target_ == "biqa.data.loading.datamodule.IQADataModule" and "split" in cfg.data


def test_config_instantiates_a_reader(tmp_path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose(overrides=["+data=biq2021", f"data.dataset.root={tmp_path}"])
    reader = instantiate(cfg.data.dataset)
    assert set(cfg.data.dataset) == {"_target_", "root", "image_folder"}
    assert Path(reader.root) == tmp_path and callable(reader)
